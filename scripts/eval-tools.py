#!/usr/bin/env python3
"""Function-calling accuracy over eval/tools/cases.jsonl through any OpenAI-compatible
server: a `tandem serve` it starts itself (--tandem BIN --model NAME) or one already running
(--base URL, e.g. llama.cpp's llama-server --jinja on the same GGUF).

A case is right when the calls match exactly: the same function names (in order; for
`parallel` cases as a multiset) with the same argument values (strings compared after
trimming and case-folding, numbers by value), and no call at all for `none` cases. Greedy
decoding, tool_choice auto. Prints a table, or --json for one JSON object."""
import argparse
import collections
import json
import os
import re
import subprocess
import sys
import time

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
    args = [binary, "serve", "--port", "0", "--model", model, "--parallel", "1"]
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    deadline = time.time() + 180
    while time.time() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        m = re.search(r"listening on (http://\S+)", line)
        if m:
            return proc, m.group(1)
    proc.kill()
    sys.exit("tandem serve did not start")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--tandem", help="tandem binary to start")
    ap.add_argument("--base", help="an already running server's base URL")
    ap.add_argument("--model", default="qwen2.5-coder-0.5b")
    ap.add_argument("--cases", default=os.path.join(ROOT, "eval/tools/cases.jsonl"))
    ap.add_argument("--tools", default=os.path.join(ROOT, "eval/tools/tools.json"))
    ap.add_argument("--limit", type=int, default=0, help="only the first N cases (CI's short run)")
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args()
    import openai

    proc = None
    if a.tandem:
        proc, base = start_tandem(a.tandem, a.model)
    elif a.base:
        base = a.base.rstrip("/")
    else:
        sys.exit("give --tandem BIN or --base URL")
    client = openai.OpenAI(base_url=base + "/v1", api_key="none", max_retries=0, timeout=300)
    library = json.load(open(a.tools, encoding="utf-8"))
    cases = [json.loads(l) for l in open(a.cases, encoding="utf-8") if l.strip()]
    if a.limit:
        cases = cases[: a.limit]
    rows = []
    t0 = time.time()
    try:
        for c in cases:
            tools = [{"type": "function", "function": {"name": n, **library[n]}} for n in c["tools"]]
            calls, error = [], None
            try:
                r = client.chat.completions.create(model=a.model, messages=c["messages"], tools=tools,
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
    finally:
        if proc:
            proc.terminate()
            proc.wait(timeout=30)
    by = collections.defaultdict(lambda: [0, 0])
    for r in rows:
        for k in ("all", r["kind"], r["lang"]):
            by[k][0] += r["ok"]
            by[k][1] += 1
    report = {"model": a.model, "server": "tandem" if a.tandem else base, "cases": len(rows),
              "seconds": round(time.time() - t0, 1),
              "accuracy": {k: {"right": v[0], "n": v[1], "share": round(v[0] / v[1], 3)} for k, v in sorted(by.items())},
              "wrong": [r for r in rows if not r["ok"]]}
    if a.json:
        print(json.dumps(report, ensure_ascii=False, indent=1))
    else:
        print(f"{a.model} via {report['server']}: {len(rows)} cases in {report['seconds']} s")
        for k, v in report["accuracy"].items():
            print(f"  {k:<9} {v['right']:>3}/{v['n']:<3} {v['share']:.3f}")


if __name__ == "__main__":
    main()
