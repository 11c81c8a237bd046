"""The 60-second soak (`make soak` runs 10 minutes): scripts/soak.py against a real
`tandem serve`; it exits non-zero when a request hung or got an unexpected status, when the
ledger misses a record, or when the server's memory grew beyond the bound."""
import json
import os
import subprocess
import sys

from conftest import _binary

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def test_one_minute_soak_answers_everything_and_records_it():
    r = subprocess.run(
        [sys.executable, os.path.join(ROOT, "scripts/soak.py"), "--tandem", _binary(),
         "--seconds", "60", "--json"],
        capture_output=True, text=True, timeout=900,
    )
    out = json.loads(r.stdout)
    assert r.returncode == 0, out["failures"]
    assert out["failures"] == []
    # Every kind of traffic was exercised, and the ledger matched the chat-type requests.
    assert set(out["by_kind"]) >= {"chat", "stream", "hangup", "messages", "embeddings",
                                   "kb_search", "explain", "malformed", "unknown_model"}
    assert out["ledger_records"] == out["chat_requests"] > 0
