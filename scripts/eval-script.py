#!/usr/bin/env python3
"""Answers in the user's script: every prompt of eval/zh-tw/prompts.jsonl (Traditional
Chinese, eight task categories) asked twice of a local SLM through a `tandem serve` this
script starts: once with `answer_script: off` (the tenant `raw`: what the model writes by
itself) and once with the default `auto` (instruction + conversion), streamed. Reports the
share of answers with no Simplified-only character (the set of crates/tandem-zh/data), per
category, before and after, and after outside code (code is never converted). --limit N for the first N prompts; --json for one object."""
import argparse, json, os, re, tempfile
from collections import defaultdict

from openai import OpenAI

import tandem_serve

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def simplified_only():
    with open(os.path.join(ROOT, "crates/tandem-zh/data/simplified_only.txt"), encoding="utf-8") as f:
        return set("".join(l.strip() for l in f if not l.startswith("#")))


def prose(text):
    """The answer without code (fenced blocks, inline spans), which is never converted."""
    text = re.sub(r"```.*?(```|$)", "", text, flags=re.S)
    return re.sub(r"`[^`\n]*`", "", text)


def start(binary, model):
    cfg = f"""models:
  - name: slm
    local: {model}
policy:
  tenants:
    raw: {{answer_script: off}}
routes:
  - name: local
    then: {{model: slm}}
"""
    f = tempfile.NamedTemporaryFile("w", suffix=".yaml", delete=False)
    f.write(cfg)
    f.close()
    return tandem_serve.start(
        [binary, "serve", "--config", f.name, "--port", "0", "--parallel", "1", "--ledger", "off"])


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--tandem", required=True)
    ap.add_argument("--model", default="qwen2.5-coder-0.5b")
    ap.add_argument("--prompts", default=os.path.join(ROOT, "eval/zh-tw/prompts.jsonl"))
    ap.add_argument("--max-tokens", type=int, default=64)
    ap.add_argument("--limit", type=int, default=0)
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args()
    items = [json.loads(l) for l in open(a.prompts, encoding="utf-8") if l.strip()]
    if a.limit:
        items = items[: a.limit]
    simp = simplified_only()
    proc, url = start(a.tandem, a.model)
    client = OpenAI(base_url=f"{url}/v1", api_key="none")
    by_cat = defaultdict(lambda: {"n": 0, "before": 0, "after": 0, "after_prose": 0})
    rows = []
    try:
        for it in items:
            msgs = [{"role": "user", "content": it["prompt"]}]
            raw = client.chat.completions.create(
                model="auto", messages=msgs, max_tokens=a.max_tokens, temperature=0,
                extra_headers={"x-tandem-tenant": "raw"},
            ).choices[0].message.content or ""
            after = ""
            for ch in client.chat.completions.create(
                model="auto", messages=msgs, max_tokens=a.max_tokens, temperature=0, stream=True
            ):
                if ch.choices and ch.choices[0].delta.content:
                    after += ch.choices[0].delta.content
            clean = lambda t: not any(x in simp for x in t)
            b, c, cp = clean(raw), clean(after), clean(prose(after))
            s = by_cat[it["category"]]
            s["n"] += 1
            s["before"] += b
            s["after"] += c
            s["after_prose"] += cp
            rows.append({"id": it["id"], "before_clean": b, "after_clean": c, "after_prose_clean": cp,
                         "before": raw, "after": after})
    finally:
        proc.terminate()
        proc.wait(timeout=20)
    n = len(rows)
    out = {
        "model": a.model, "prompts": n,
        "before": sum(r["before_clean"] for r in rows) / max(n, 1),
        "after": sum(r["after_clean"] for r in rows) / max(n, 1),
        "after_outside_code": sum(r["after_prose_clean"] for r in rows) / max(n, 1),
        "by_category": dict(by_cat),
        "dirty_after": [r for r in rows if not r["after_clean"]],
    }
    if a.json:
        print(json.dumps(out, ensure_ascii=False))
        return
    print(f"{a.model}: {n} Traditional-Chinese prompts; answers with no Simplified-only character")
    print(f"{'category':<20} {'n':>3} {'before':>8} {'after':>8} {'after, outside code':>20}")
    for cat, s in by_cat.items():
        k = s["n"]
        print(f"{cat:<20} {k:>3} {s['before'] / k:>8.2f} {s['after'] / k:>8.2f} {s['after_prose'] / k:>20.2f}")
    print(f"{'all':<20} {n:>3} {out['before']:>8.2f} {out['after']:>8.2f} {out['after_outside_code']:>20.2f}")
    for r in out["dirty_after"]:
        print("still Simplified:", r["id"], r["after"][:80])


if __name__ == "__main__":
    main()
