#!/usr/bin/env python3
"""Function-calling accuracy over eval/tools/cases.jsonl through any OpenAI-compatible
server: a `tandem serve` it starts itself (--tandem BIN --model NAME) or one already running
(--base URL), and/or llama.cpp's own llama-server it starts on the same GGUF (--llama-server
BIN, built by scripts/build-llama-server.sh) in the same run, for the comparison.

A case is right when the calls match exactly: the same function names (in order; for
`parallel` cases as a multiset) with the same argument values (strings compared after
trimming and case-folding, numbers by value), and no call at all for `none` cases. Greedy
decoding, tool_choice auto. Prints a table, or --json for one JSON object."""
import argparse
import collections
import json
import os
import subprocess
import sys
import time

import tandem_serve

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)


def norm(v):
    if isinstance(v, str):
        return v.strip().casefold()
    if isinstance(v, bool):
        return v
    if isinstance(v, (int, float)):
        return float(v)
    if isinstance(v, list):
        return [norm(x) for x in v]
    if isinstance(v, dict):
        return {k: norm(x) for k, x in v.items()}
    return v


def key(c):
    return json.dumps([c["name"], norm(c["arguments"])], sort_keys=True, ensure_ascii=False)


def score(case, calls):
    exp = [key(c) for c in case["expected"]]
    got = [key(c) for c in calls]
    if case["kind"] == "parallel":
        return sorted(exp) == sorted(got)
    return exp == got


def start_tandem(binary, model):
    return tandem_serve.start([binary, "serve", "--port", "0", "--model", model, "--parallel", "1"])


def start_llama_server(binary, model):
    """llama.cpp's own server on the same GGUF Tandem serves, with its Jinja chat templates
    (what llama-server needs for tools), one slot, greedy as every request asks."""
    home = os.environ.get("TANDEM_HOME", os.path.expanduser("~/.cache/tandem"))
    d = os.path.join(home, "models", model)
    ggufs = sorted(f for f in os.listdir(d) if f.endswith(".gguf")) if os.path.isdir(d) else []
    if not ggufs:
        sys.exit(f"no GGUF for {model} under {d} (tandem pull {model})")
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    threads = str(min(4, os.cpu_count() or 2))
    args = [binary, "-m", os.path.join(d, ggufs[0]), "--jinja", "--host", "127.0.0.1", "--port", str(port),
            "-t", threads, "-c", "4096", "-np", "1"]
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}"
    import urllib.request
    deadline = time.time() + 180
    while time.time() < deadline:
        if proc.poll() is not None:
            sys.exit(f"llama-server exited with {proc.returncode}")
        try:
            with urllib.request.urlopen(base + "/health", timeout=2) as r:
                if r.status == 200:
                    return proc, base
        except OSError:
            pass
        time.sleep(0.5)
    proc.kill()
    sys.exit("llama-server did not become healthy")


def run_cases(base, model, cases, library):
    import openai

    client = openai.OpenAI(base_url=base + "/v1", api_key="none", max_retries=0, timeout=300)
    rows = []
    for c in cases:
        tools = [{"type": "function", "function": {"name": n, **library[n]}} for n in c["tools"]]
        calls, error = [], None
        try:
            r = client.chat.completions.create(model=model, messages=c["messages"], tools=tools,
                                               tool_choice="auto", temperature=0, max_tokens=160)
            for t in r.choices[0].message.tool_calls or []:
                try:
                    args = json.loads(t.function.arguments)
                except json.JSONDecodeError:
                    args = {"_unparsable": t.function.arguments}
                calls.append({"name": t.function.name, "arguments": args})
        except openai.APIError as e:
            error = str(e)
        rows.append({"id": c["id"], "kind": c["kind"], "lang": c["lang"], "ok": error is None and score(c, calls),
                     "calls": calls, "error": error})
    return rows


def report_of(server, model, rows, seconds):
    by = collections.defaultdict(lambda: [0, 0])
    for r in rows:
        for k in ("all", r["kind"], r["lang"]):
            by[k][0] += r["ok"]
            by[k][1] += 1
    return {"model": model, "server": server, "cases": len(rows), "seconds": round(seconds, 1),
            "accuracy": {k: {"right": v[0], "n": v[1], "share": round(v[0] / v[1], 3)} for k, v in sorted(by.items())},
            "wrong": [r for r in rows if not r["ok"]]}


def evaluate(label, start, model, cases, library):
    proc, base = start()
    t0 = time.time()
    try:
        rows = run_cases(base, model, cases, library)
    finally:
        if proc:
            proc.terminate()
            proc.wait(timeout=30)
    return report_of(label, model, rows, time.time() - t0)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--tandem", help="tandem binary to start")
    ap.add_argument("--llama-server", help="also run llama.cpp's llama-server binary on the same GGUF, in the same run")
    ap.add_argument("--base", help="an already running server's base URL (instead of --tandem)")
    ap.add_argument("--model", default="qwen2.5-coder-0.5b")
    ap.add_argument("--cases", default=os.path.join(ROOT, "eval/tools/cases.jsonl"))
    ap.add_argument("--tools", default=os.path.join(ROOT, "eval/tools/tools.json"))
    ap.add_argument("--limit", type=int, default=0, help="only the first N cases")
    ap.add_argument("--per-kind", type=int, default=0, help="only the first N cases of each kind (CI's short run)")
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args()
    library = json.load(open(a.tools, encoding="utf-8"))
    cases = [json.loads(l) for l in open(a.cases, encoding="utf-8") if l.strip()]
    if a.per_kind:
        seen = collections.Counter()
        picked = []
        for c in cases:
            seen[c["kind"]] += 1
            if seen[c["kind"]] <= a.per_kind:
                picked.append(c)
        cases = picked
    if a.limit:
        cases = cases[: a.limit]
    reports = []
    if a.llama_server:
        reports.append(evaluate("llama-server", lambda: start_llama_server(a.llama_server, a.model),
                                a.model, cases, library))
    if a.tandem:
        reports.append(evaluate("tandem", lambda: start_tandem(a.tandem, a.model), a.model, cases, library))
    elif a.base:
        reports.append(evaluate(a.base, lambda: (None, a.base.rstrip("/")), a.model, cases, library))
    if not reports:
        sys.exit("give --tandem BIN, --base URL and/or --llama-server BIN")
    if a.json:
        out = reports[0] if len(reports) == 1 else {"runs": reports}
        print(json.dumps(out, ensure_ascii=False, indent=1))
        return
    for rep in reports:
        print(f"{a.model} via {rep['server']}: {rep['cases']} cases in {rep['seconds']} s")
    keys = list(reports[0]["accuracy"])
    print(f"  {'':<9} " + "  ".join(f"{rep['server'][:14]:>14}" for rep in reports))
    for k in keys:
        cells = []
        for rep in reports:
            v = rep["accuracy"][k]
            cells.append(f"{v['right']:>3}/{v['n']:<3} {v['share']:.3f}")
        print(f"  {k:<9} " + "  ".join(f"{c:>14}" for c in cells))
    if len(reports) == 2:
        a0, a1 = (rep["accuracy"]["all"]["right"] for rep in reports)
        print(f"  {reports[1]['server']} - {reports[0]['server']}: {a1 - a0:+d} cases")


if __name__ == "__main__":
    main()
