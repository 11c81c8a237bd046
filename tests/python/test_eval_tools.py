"""The short CI run of `make eval-tools`: two cases of each kind (single call, choice among
functions, parallel calls, no call needed) through a `tandem serve` the script starts, scored
by the same harness as the full run (docs/benchmarks.md)."""
import json
import os
import subprocess
import sys

from conftest import _binary

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def test_short_function_calling_eval():
    done = subprocess.run(
        [sys.executable, os.path.join(ROOT, "scripts", "eval-tools.py"), "--tandem", _binary(),
         "--per-kind", "2", "--json"],
        capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    r = json.loads(done.stdout)
    acc = r["accuracy"]
    assert r["cases"] == 8
    assert {k: acc[k]["n"] for k in ("single", "choice", "parallel", "none")} == \
        {"single": 2, "choice": 2, "parallel": 2, "none": 2}
    # Every request was answered (a wrong call is a score, an HTTP error is a failure).
    assert [w for w in r["wrong"] if w["error"]] == []
    # A single function offered and plainly asked for: the grammar-held call is right.
    assert acc["single"]["right"] == 2, r["wrong"]
