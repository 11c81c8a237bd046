#!/usr/bin/env python3
"""Soak: mixed traffic against a real `tandem serve` (SmolLM2-135M + MiniLM, a knowledge base)
at a concurrency above the engine's slots and queue (refused clients back off 0.2–0.6 s), for
--seconds (default 600; CI runs 60).

Traffic, drawn at random by each of --workers threads: chat, streamed chat, streams the client
hangs up on after the first token, Anthropic Messages, embeddings, knowledge-base search,
explain, malformed JSON, an unknown model. Checks, and exits 1 when one fails:
  * every request is answered — with its success status, or refused with 429/503 (and 400 /
    404 for the malformed and unknown-model ones) — within --timeout seconds (none hung);
  * the ledger's record count equals the chat-type requests that reached the gateway
    (chat, streams, hang-ups, Messages; waited for, since the ledger writes in the background);
  * the server's resident memory grows by at most --max-rss-growth-mb between the end of the
    warm-up (the first tenth) and the end.
Prints a table of kinds × statuses, p50/p99 latency per kind and the RSS; --json for one object.
Standard library only."""
import argparse, http.client, json, os, random, sqlite3, subprocess, sys, tempfile, threading, time, urllib.parse

import tandem_serve
from collections import Counter, defaultdict

CHAT_KINDS = {"chat", "stream", "hangup", "messages"}
OK = {
    "chat": {200}, "stream": {200}, "hangup": {200}, "messages": {200}, "embeddings": {200},
    "kb_search": {200}, "explain": {200}, "malformed": {400}, "unknown_model": {404},
}
WEIGHTS = {
    "chat": 3, "stream": 3, "hangup": 2, "messages": 2, "embeddings": 2, "kb_search": 2,
    "explain": 2, "malformed": 1, "unknown_model": 1,
}
PROMPTS = ["Say hello.", "What is 2+2?", "請用一句話介紹台北。", "Name a colour.", "Write a haiku about rain.",
           "My email is amy@example.com, please confirm.", "保單理賠需要什麼文件？"]


def start(binary, home):
    ledger = os.path.join(home, "ledger.sqlite")
    kb_dir = os.path.join(home, "kb")
    os.makedirs(kb_dir, exist_ok=True)
    cfg = os.path.join(home, "tandem.yaml")
    with open(cfg, "w") as f:
        f.write("""engine: {parallel: 2, max_queue: 4, ctx_size: 4096}
models:
  - name: slm
    local: smollm2-135m
  - name: minilm-l6
    local: minilm-l6
rag: {embedding_model: minilm-l6}
routes:
  - name: local
    then: {model: slm}
""")
    env = dict(os.environ, TANDEM_KB_DIR=kb_dir)
    args = [binary, "serve", "--config", cfg, "--port", "0", "--ledger", ledger]
    proc, url = tandem_serve.start(args, env=env)
    u = urllib.parse.urlparse(url)
    return proc, u.hostname, u.port, ledger


def rss_mb(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def request(host, port, timeout, method, path, body, stream=False, hangup=False):
    """Returns the status; raises on a timeout (a hung request)."""
    c = http.client.HTTPConnection(host, port, timeout=timeout)
    try:
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        c.request(method, path, body=data, headers={"content-type": "application/json"})
        r = c.getresponse()
        if not stream or r.status != 200:
            r.read()
            return r.status
        while True:
            line = r.readline()
            if not line:
                return r.status
            if hangup and line.startswith(b"data:") and b'"content":"' in line and b'"content":""' not in line:
                return r.status  # hang up mid-stream: the connection closes below
            if line.strip() == b"data: [DONE]":
                return r.status
    finally:
        c.close()


def one(kind, host, port, timeout):
    p = random.choice(PROMPTS)
    msgs = [{"role": "user", "content": p}]
    if kind == "chat":
        return request(host, port, timeout, "POST", "/v1/chat/completions",
                       {"model": "auto", "messages": msgs, "max_tokens": 16})
    if kind in ("stream", "hangup"):
        return request(host, port, timeout, "POST", "/v1/chat/completions",
                       {"model": "auto", "messages": msgs, "max_tokens": 48 if kind == "hangup" else 24,
                        "stream": True}, stream=True, hangup=kind == "hangup")
    if kind == "messages":
        return request(host, port, timeout, "POST", "/v1/messages",
                       {"model": "auto", "messages": msgs, "max_tokens": 16})
    if kind == "embeddings":
        return request(host, port, timeout, "POST", "/v1/embeddings", {"model": "minilm-l6", "input": [p, p[::-1]]})
    if kind == "kb_search":
        return request(host, port, timeout, "POST", "/v1/kb/soak/search", {"query": p, "k": 3})
    if kind == "explain":
        return request(host, port, timeout, "POST", "/v1/route/explain", {"model": "auto", "messages": msgs})
    if kind == "malformed":
        return request(host, port, timeout, "POST", "/v1/chat/completions",
                       random.choice([b'{"model": "auto", "messages": [', b"\xff\xfe", b'{"messages": 3}']))
    if kind == "unknown_model":
        return request(host, port, timeout, "POST", "/v1/chat/completions", {"model": "no-such-model", "messages": msgs})
    raise ValueError(kind)


def ledger_count(path):
    try:
        con = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5)
        try:
            return con.execute("SELECT COUNT(*) FROM requests").fetchone()[0]
        finally:
            con.close()
    except sqlite3.Error:
        return -1


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--tandem", required=True)
    ap.add_argument("--seconds", type=float, default=600)
    ap.add_argument("--workers", type=int, default=8)
    ap.add_argument("--timeout", type=float, default=120)
    ap.add_argument("--max-rss-growth-mb", type=float, default=64)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args()
    random.seed(a.seed)
    home = tempfile.mkdtemp(prefix="tandem-soak-")
    proc, host, port, ledger = start(a.tandem, home)
    failures = []
    try:
        assert request(host, port, 60, "POST", "/v1/kb", {"name": "soak"}) in (200, 201)
        docs = [{"name": f"doc{i}.md", "content": f"# 文件 {i}\n\n理賠需要診斷證明與收據。Claim forms need receipts, case {i}."} for i in range(20)]
        st = request(host, port, 300, "POST", "/v1/kb/soak/ingest", {"files": docs})
        assert st == 200, f"ingest: {st}"
        counts = defaultdict(Counter)
        lat = defaultdict(list)
        lock = threading.Lock()
        kinds = [k for k, w in WEIGHTS.items() for _ in range(w)]
        t0 = time.time()
        stop_at = t0 + a.seconds
        rss = {}

        def worker(i):
            rnd = random.Random(a.seed * 1000 + i)
            while time.time() < stop_at:
                kind = rnd.choice(kinds)
                s = time.time()
                try:
                    status = one(kind, host, port, a.timeout)
                except (TimeoutError, OSError) as e:
                    status = f"error: {type(e).__name__}"
                with lock:
                    counts[kind][status] += 1
                    lat[kind].append(time.time() - s)
                if status in (429, 503):
                    # What a well-behaved client does when refused: back off a little.
                    time.sleep(rnd.uniform(0.2, 0.6))

        threads = [threading.Thread(target=worker, args=(i,)) for i in range(a.workers)]
        for t in threads:
            t.start()
        time.sleep(a.seconds / 10)
        rss["after_warmup"] = rss_mb(proc.pid)
        for t in threads:
            t.join()
        rss["end"] = rss_mb(proc.pid)
        elapsed = time.time() - t0
        # Chat-type requests that reached the gateway (not the malformed or unknown-model ones).
        sent = sum(n for k in CHAT_KINDS for st, n in counts[k].items() if isinstance(st, int) and st != 400)
        deadline = time.time() + 30
        got = ledger_count(ledger)
        while got != sent and time.time() < deadline:
            time.sleep(0.2)  # the ledger's background writer flushes in batches
            got = ledger_count(ledger)
        for k, c in counts.items():
            for st, n in c.items():
                allowed = OK[k] | ({429, 503} if k not in ("malformed", "unknown_model") else set())
                if st not in allowed:
                    failures.append(f"{k}: {n} × {st}")
        if got != sent:
            failures.append(f"ledger has {got} records, {sent} chat-type requests were sent")
        growth = rss["end"] - rss["after_warmup"]
        if growth > a.max_rss_growth_mb:
            failures.append(f"RSS grew {growth:.1f} MB (> {a.max_rss_growth_mb})")
        def pct(v, q):
            v = sorted(v)
            return v[min(len(v) - 1, int(q / 100 * len(v)))] if v else 0.0
        out = {
            "seconds": round(elapsed, 1), "workers": a.workers,
            "requests": sum(sum(c.values()) for c in counts.values()),
            "by_kind": {k: {str(s): n for s, n in c.items()} for k, c in sorted(counts.items())},
            "latency_s": {k: {"p50": round(pct(v, 50), 3), "p99": round(pct(v, 99), 3)} for k, v in sorted(lat.items())},
            "ledger_records": got, "chat_requests": sent,
            "rss_mb": {k: round(v, 1) for k, v in rss.items()}, "rss_growth_mb": round(growth, 1),
            "failures": failures,
        }
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
    if a.json:
        print(json.dumps(out, ensure_ascii=False))
    else:
        print(f"soak: {out['requests']} requests in {out['seconds']} s, {a.workers} workers")
        for k, c in out["by_kind"].items():
            l = out["latency_s"][k]
            print(f"  {k:<14} {json.dumps(c):<40} p50 {l['p50']:.3f} s  p99 {l['p99']:.3f} s")
        print(f"  ledger {got} records for {sent} chat-type requests; RSS {out['rss_mb']} MB (growth {growth:.1f} MB)")
        for f in failures:
            print("FAIL:", f)
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
