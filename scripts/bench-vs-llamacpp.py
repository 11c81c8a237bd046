#!/usr/bin/env python3
"""Compare Tandem's throughput with llama.cpp's own benchmark tools.

Runs, strictly one after another (never concurrently - small boxes):
  1. llama-bench          -m MODEL -t N -p PP -n TG -r REPS -o json
  2. llama-batched-bench  -m MODEL -t N -c CTX -b 2048 -ub 512 -npp NPP -ntg NTG
                          -npl 1,4,8 --output-format jsonl
  3. TANDEM bench MODEL --threads N --json

and prints a Markdown table  metric | llama.cpp | Tandem | ratio | goal | status,
then writes every number (plus raw tool output on failure) to --out as JSON.

Goals (ratio = Tandem / llama.cpp):
  * pp  (prompt t/s,   llama-bench pp512 avg_ts)                >= 0.97
  * tg  (generation t/s, llama-bench tg128 avg_ts)              >= 0.97
  * 8-stream aggregate generation t/s vs llama-batched-bench's
    S_TG column for B=8                                          >= 0.95

Why S_TG: llama-batched-bench (without -pps) first prefills NPP tokens for
each of the B sequences (timed as T_PP / S_PP), then decodes NTG tokens for all
B sequences in lock-step, one token per sequence per llama_decode; S_TG =
B*NTG / T_TG is the aggregate *generation* throughput across B concurrent
streams, which is what Tandem's concurrency[].aggregate_tokens_per_s is meant
to be. The S column (t/s over prefill + decode) mixes in prompt processing, so
it is reported for information only, as is B*NTG/T ("gen tokens over total
time"), the right comparator if Tandem's number includes prefill wall time.

Python 3 stdlib only. Exit status: 0 = everything ran (goal misses are
reported, not fatal, unless --strict), 1 = a benchmark command failed or its
output could not be parsed, 2 = usage error, 3 = --strict and a goal missed.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import platform
import re
import shlex
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

GOALS = {"pp": 0.97, "tg": 0.97, "agg8": 0.95}


def log(msg: str) -> None:
    print(f"[bench] {msg}", file=sys.stderr, flush=True)


def tail(text: str | None, n: int = 2000) -> str:
    text = text or ""
    return text[-n:]


def run_cmd(cmd: list[str], timeout: float) -> dict[str, Any]:
    log("running: " + " ".join(shlex.quote(c) for c in cmd))
    t0 = time.monotonic()
    try:
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout,
                           errors="replace")
        rc, out, err = p.returncode, p.stdout, p.stderr
    except FileNotFoundError as e:
        return {"cmd": cmd, "ok": False, "error": f"not found: {e}", "wall_s": 0.0,
                "stdout": "", "stderr": ""}
    except PermissionError as e:
        return {"cmd": cmd, "ok": False, "error": f"not executable: {e}", "wall_s": 0.0,
                "stdout": "", "stderr": ""}
    except subprocess.TimeoutExpired as e:
        def _s(x: Any) -> str:
            return x.decode(errors="replace") if isinstance(x, bytes) else (x or "")
        return {"cmd": cmd, "ok": False, "error": f"timed out after {timeout}s",
                "wall_s": time.monotonic() - t0, "stdout": _s(e.stdout), "stderr": _s(e.stderr)}
    wall = time.monotonic() - t0
    res = {"cmd": cmd, "ok": rc == 0, "rc": rc, "wall_s": round(wall, 2),
           "stdout": out, "stderr": err}
    if rc != 0:
        res["error"] = f"exit status {rc}"
    log(f"  -> rc={rc} in {wall:.1f}s")
    return res


def json_objects_in(text: str) -> list[Any]:
    """Every top-level JSON value ({...} or [...]) found in text, in order."""
    dec = json.JSONDecoder()
    found: list[Any] = []
    i = 0
    while i < len(text):
        ch = text[i]
        if ch in "{[":
            try:
                val, end = dec.raw_decode(text, i)
                found.append(val)
                i = end
                continue
            except ValueError:
                pass
        i += 1
    return found


def fnum(x: Any) -> float | None:
    try:
        v = float(x)
    except (TypeError, ValueError):
        return None
    return v if v == v else None  # drop NaN


# ------------------------------------------------------------------ llama-bench
def parse_llama_bench(out: str, n_prompt: int, n_gen: int) -> dict[str, Any]:
    rows: list[dict] = []
    for val in json_objects_in(out):
        if isinstance(val, list):
            rows.extend(v for v in val if isinstance(v, dict))
        elif isinstance(val, dict):
            rows.append(val)
    res: dict[str, Any] = {}
    for r in rows:
        np_, ng = int(r.get("n_prompt", -1)), int(r.get("n_gen", -1))
        entry = {
            "avg_ts": fnum(r.get("avg_ts")),
            "stddev_ts": fnum(r.get("stddev_ts")),
            "samples_ts": r.get("samples_ts"),
            "n_prompt": np_, "n_gen": ng, "n_threads": r.get("n_threads"),
            "flash_attn": r.get("flash_attn"), "n_batch": r.get("n_batch"),
            "n_ubatch": r.get("n_ubatch"), "type_k": r.get("type_k"),
        }
        if np_ == n_prompt and ng == 0:
            res["pp"] = entry
        elif np_ == 0 and ng == n_gen:
            res["tg"] = entry
        for k in ("build_commit", "build_number", "cpu_info", "model_type",
                  "model_size", "model_n_params", "backends"):
            if k in r:
                res.setdefault("info", {})[k] = r[k]
    return res


# ------------------------------------------------------------ llama-batched-bench
MD_ROW = re.compile(
    r"^\|\s*(\d+)\s*\|\s*(\d+)\s*\|\s*(\d+)\s*\|\s*(\d+)\s*\|\s*([\d.]+)\s*\|\s*([\d.]+)\s*\|"
    r"\s*([\d.]+)\s*\|\s*([\d.]+)\s*\|\s*([\d.]+)\s*\|\s*([\d.]+)\s*\|\s*$")


def parse_batched_bench(text: str) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    for val in json_objects_in(text):
        if isinstance(val, dict) and "pl" in val and "speed_tg" in val:
            rows.append({
                "pp": int(val["pp"]), "tg": int(val["tg"]), "B": int(val["pl"]),
                "n_kv": int(val.get("n_kv", 0)),
                "T_PP_s": fnum(val.get("t_pp")), "S_PP_tps": fnum(val.get("speed_pp")),
                "T_TG_s": fnum(val.get("t_tg")), "S_TG_tps": fnum(val.get("speed_tg")),
                "T_s": fnum(val.get("t")), "S_tps": fnum(val.get("speed")),
            })
    if not rows:  # fall back to the markdown table
        for line in text.splitlines():
            m = MD_ROW.match(line.strip())
            if m:
                g = m.groups()
                rows.append({"pp": int(g[0]), "tg": int(g[1]), "B": int(g[2]), "n_kv": int(g[3]),
                             "T_PP_s": float(g[4]), "S_PP_tps": float(g[5]),
                             "T_TG_s": float(g[6]), "S_TG_tps": float(g[7]),
                             "T_s": float(g[8]), "S_tps": float(g[9])})
    for r in rows:  # generated tokens over total (prefill+decode) time
        if r.get("T_s"):
            r["gen_over_total_tps"] = r["B"] * r["tg"] / r["T_s"]
    return rows


# ---------------------------------------------------------------------- tandem
def _first(d: dict, *keys: str) -> Any:
    for k in keys:
        if k in d and d[k] is not None:
            return d[k]
    return None


def parse_tandem(out: str) -> dict[str, Any] | None:
    """Tolerant parser for `tandem bench ... --json`.

    Expected: {"model":..., "threads":N, "prompt_tokens_per_s":F,
    "gen_tokens_per_s":F, "concurrency":[{"streams":1,"aggregate_tokens_per_s":F},...],
    "rss_idle_bytes":N}. Takes the last JSON object in stdout that looks like
    it (so log lines before/after are fine) and accepts a few key aliases.
    """
    cands = [v for v in json_objects_in(out) if isinstance(v, dict)]
    obj = None
    for v in reversed(cands):
        if any(k in v for k in ("prompt_tokens_per_s", "gen_tokens_per_s", "concurrency",
                                "pp_tokens_per_s", "tg_tokens_per_s")):
            obj = v
            break
    if obj is None:
        return None
    res: dict[str, Any] = {"raw": obj}
    res["pp"] = fnum(_first(obj, "prompt_tokens_per_s", "pp_tokens_per_s", "prompt_tps", "pp"))
    res["tg"] = fnum(_first(obj, "gen_tokens_per_s", "tg_tokens_per_s", "gen_tps", "tg"))
    res["rss_idle_bytes"] = _first(obj, "rss_idle_bytes", "rss_bytes")
    conc: dict[int, float | None] = {}
    raw_conc = obj.get("concurrency") or []
    if isinstance(raw_conc, dict):  # {"8": F} form
        raw_conc = [{"streams": k, "aggregate_tokens_per_s": v} for k, v in raw_conc.items()]
    for c in raw_conc if isinstance(raw_conc, list) else []:
        if not isinstance(c, dict):
            continue
        s = _first(c, "streams", "n_streams", "parallel", "B")
        v = fnum(_first(c, "aggregate_tokens_per_s", "aggregate_gen_tokens_per_s",
                        "tokens_per_s", "tps"))
        try:
            conc[int(s)] = v
        except (TypeError, ValueError):
            continue
    res["concurrency"] = conc
    return res


# ---------------------------------------------------------------------- report
def fmt(v: float | None, digits: int = 1) -> str:
    return "n/a" if v is None else f"{v:,.{digits}f}"


def ratio(t: float | None, l: float | None) -> float | None:
    if t is None or l in (None, 0):
        return None
    return t / l


def main() -> int:
    th = Path(os.environ.get("TANDEM_HOME", Path.home() / ".cache" / "tandem"))
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", required=True, help="GGUF model path")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--tandem", help="path to the tandem binary (omit or --skip-tandem to skip)")
    ap.add_argument("--tools-dir", default=str(th / "llama-tools" / "bin"),
                    help="dir with llama-bench and llama-batched-bench (default: %(default)s)")
    ap.add_argument("--out", help="write all numbers as JSON here "
                    "(default: $TANDEM_HOME/llama-tools/results/bench-<timestamp>.json)")
    ap.add_argument("--pp", type=int, default=512, help="llama-bench prompt length")
    ap.add_argument("--tg", type=int, default=128, help="llama-bench generated tokens")
    ap.add_argument("--reps", type=int, default=3, help="llama-bench repetitions")
    ap.add_argument("--npp", type=int, default=128, help="batched-bench prompt tokens per seq")
    ap.add_argument("--ntg", type=int, default=128, help="batched-bench generated tokens per seq")
    ap.add_argument("--npl", default="1,4,8", help="batched-bench parallel sequence counts")
    ap.add_argument("--ctx", type=int, default=8192, help="batched-bench context size")
    ap.add_argument("--tandem-extra", default="", help="extra args appended to `tandem bench`")
    ap.add_argument("--skip-llamacpp", action="store_true")
    ap.add_argument("--skip-tandem", action="store_true")
    ap.add_argument("--timeout", type=float, default=1800, help="per-command timeout, s")
    ap.add_argument("--strict", action="store_true", help="exit 3 if a goal is missed")
    a = ap.parse_args()

    model = Path(a.model)
    if not model.is_file():
        log(f"model not found: {model}")
        return 2
    npl = [int(x) for x in a.npl.split(",") if x.strip()]
    tools = Path(a.tools_dir)
    failures: list[str] = []
    results: dict[str, Any] = {
        "timestamp": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "host": {"machine": platform.machine(), "cpus": os.cpu_count(),
                 "loadavg_start": os.getloadavg() if hasattr(os, "getloadavg") else None},
        "model": str(model), "threads": a.threads,
        "params": {"pp": a.pp, "tg": a.tg, "reps": a.reps, "npp": a.npp, "ntg": a.ntg,
                   "npl": npl, "ctx": a.ctx},
        "goals": GOALS,
    }
    for f in ("stamp.txt", "build-info.txt"):
        p = tools.parent / f
        if p.is_file():
            results.setdefault("llama_tools_build", {})[f] = p.read_text()

    # ---- 1. llama-bench
    lb: dict[str, Any] = {}
    bb: list[dict[str, Any]] = []
    if not a.skip_llamacpp:
        r = run_cmd([str(tools / "llama-bench"), "-m", str(model), "-t", str(a.threads),
                     "-p", str(a.pp), "-n", str(a.tg), "-r", str(a.reps), "-o", "json"],
                    a.timeout)
        lb = parse_llama_bench(r["stdout"], a.pp, a.tg) if r["ok"] else {}
        if not r["ok"] or "pp" not in lb or "tg" not in lb:
            failures.append(f"llama-bench: {r.get('error', 'could not parse pp/tg from JSON')}")
            lb["error"] = {"msg": failures[-1], "stdout_tail": tail(r["stdout"]),
                           "stderr_tail": tail(r["stderr"])}
        lb["wall_s"] = r["wall_s"]
        results["llama_bench"] = lb

        # ---- 2. llama-batched-bench
        r = run_cmd([str(tools / "llama-batched-bench"), "-m", str(model),
                     "-t", str(a.threads), "-c", str(a.ctx), "-b", "2048", "-ub", "512",
                     "-npp", str(a.npp), "-ntg", str(a.ntg), "-npl", ",".join(map(str, npl)),
                     "--output-format", "jsonl"], a.timeout)
        bb = parse_batched_bench(r["stdout"] + "\n" + r["stderr"]) if r["ok"] else []
        results["batched_bench"] = {"rows": bb, "wall_s": r["wall_s"]}
        if not r["ok"] or not bb:
            failures.append(f"llama-batched-bench: {r.get('error', 'no result rows parsed')}")
            results["batched_bench"]["error"] = {"msg": failures[-1],
                                                 "stdout_tail": tail(r["stdout"]),
                                                 "stderr_tail": tail(r["stderr"])}

    # ---- 3. tandem
    td: dict[str, Any] | None = None
    if a.tandem and not a.skip_tandem:
        cmd = [a.tandem, "bench", str(model), "--threads", str(a.threads), "--json"]
        cmd += shlex.split(a.tandem_extra)
        r = run_cmd(cmd, a.timeout)
        td = parse_tandem(r["stdout"]) if r["ok"] else None
        if td is None:
            why = r.get("error") or "no JSON object with prompt/gen/concurrency keys on stdout"
            failures.append(f"tandem bench: {why}")
            results["tandem"] = {"error": {"msg": failures[-1], "cmd": cmd,
                                           "stdout_tail": tail(r["stdout"]),
                                           "stderr_tail": tail(r["stderr"])},
                                 "wall_s": r["wall_s"]}
        else:
            td["wall_s"] = r["wall_s"]
            results["tandem"] = td
    elif not a.skip_tandem:
        log("no --tandem binary given; Tandem column will be n/a")

    if hasattr(os, "getloadavg"):
        results["host"]["loadavg_end"] = os.getloadavg()

    # ---- table
    lines = [f"### Tandem vs llama.cpp - {model.name}, {a.threads} threads",
             "",
             "| metric | llama.cpp | Tandem | ratio | goal | status |",
             "|---|---:|---:|---:|---:|:---:|"]
    comps: dict[str, Any] = {}

    def row(key: str, label: str, lval: float | None, tval: float | None, goal: float | None):
        rt = ratio(tval, lval)
        status = ("n/a" if rt is None or goal is None else ("PASS" if rt >= goal else "FAIL"))
        comps[key] = {"llamacpp": lval, "tandem": tval, "ratio": rt, "goal": goal,
                      "status": status}
        lines.append(f"| {label} | {fmt(lval)} | {fmt(tval)} | "
                     f"{'n/a' if rt is None else f'{rt:.3f}'} | "
                     f"{'-' if goal is None else f'>= {goal:.2f}'} | {status} |")

    tconc = (td or {}).get("concurrency", {}) or {}
    row("pp", f"pp{a.pp} prompt t/s (llama-bench)", (lb.get("pp") or {}).get("avg_ts"),
        (td or {}).get("pp"), GOALS["pp"])
    row("tg", f"tg{a.tg} gen t/s (llama-bench)", (lb.get("tg") or {}).get("avg_ts"),
        (td or {}).get("tg"), GOALS["tg"])
    by_b = {r["B"]: r for r in bb}
    for b in npl:
        goal = GOALS["agg8"] if b == 8 else None
        row(f"agg{b}", f"{b}-stream aggregate gen t/s (batched-bench S_TG, B={b})",
            (by_b.get(b) or {}).get("S_TG_tps"), tconc.get(b), goal)
    rss = (td or {}).get("rss_idle_bytes")
    lines.append(f"| Tandem idle RSS | - | "
                 f"{'n/a' if rss is None else f'{int(rss) / 2**20:,.1f} MiB'} | - | - | - |")
    results["comparison"] = comps

    out_lines = ["\n".join(lines), ""]
    if bb:
        out_lines += [f"llama-batched-bench (npp={a.npp}, ntg={a.ntg}, ctx={a.ctx}, "
                      "b=2048, ub=512; S_TG = B*TG/T_TG is the column compared above):", "",
                      "| PP | TG | B | N_KV | T_PP s | S_PP t/s | T_TG s | S_TG t/s | T s | S t/s"
                      " | B*TG/T t/s |",
                      "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
        for r in bb:
            out_lines.append(
                f"| {r['pp']} | {r['tg']} | {r['B']} | {r['n_kv']} | {fmt(r['T_PP_s'], 3)} | "
                f"{fmt(r['S_PP_tps'], 2)} | {fmt(r['T_TG_s'], 3)} | {fmt(r['S_TG_tps'], 2)} | "
                f"{fmt(r['T_s'], 3)} | {fmt(r['S_tps'], 2)} | "
                f"{fmt(r.get('gen_over_total_tps'), 2)} |")
        out_lines.append("")
    for k in ("pp", "tg"):
        e = lb.get(k)
        if e and e.get("stddev_ts") is not None:
            out_lines.append(f"llama-bench {k}: {e['avg_ts']:.2f} ± {e['stddev_ts']:.2f} t/s "
                             f"over {a.reps} reps (flash_attn={e.get('flash_attn')})")
    la = results["host"].get("loadavg_start")
    if la and (os.cpu_count() or 1) and la[0] > 0.5 * (os.cpu_count() or 1):
        out_lines.append(f"\nWARNING: load average was {la[0]:.2f} on {os.cpu_count()} CPUs when "
                         "the run started; other processes compete with the benchmark threads "
                         "(OpenMP spin barriers make -t N runs degrade badly when oversubscribed), "
                         "so these numbers are noisy.")
    if failures:
        out_lines += ["", "**FAILED:**"] + [f"- {f}" for f in failures]
        for key in ("llama_bench", "batched_bench", "tandem"):
            err = (results.get(key) or {}).get("error")
            if err:
                cmd = err.get("cmd")
                if cmd:
                    out_lines.append(f"  - {key} command: `{' '.join(shlex.quote(c) for c in cmd)}`")
                for stream in ("stderr_tail", "stdout_tail"):
                    txt = tail(err.get(stream), 800).strip()
                    if txt:
                        out_lines.append(f"  - {key} {stream.replace('_', ' ')}:\n```\n{txt}\n```")
    print("\n".join(out_lines))

    results["failures"] = failures
    out = Path(a.out) if a.out else (th / "llama-tools" / "results" /
                                     f"bench-{time.strftime('%Y%m%d-%H%M%S')}.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2, default=str) + "\n")
    log(f"wrote {out}")

    if failures:
        return 1
    if a.strict and any(c["status"] == "FAIL" for c in comps.values()):
        return 3
    return 0


if __name__ == "__main__":
    sys.exit(main())
