"""The hand-made RAG question sets stay consistent: every accepted answer occurs in its
sources, tables are read from the documents, and no Simplified character slipped into the
Chinese documents (eval/rag-insurer/check.py)."""

import pathlib
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parents[2]


def test_insurer_set_checks():
    r = subprocess.run(
        [sys.executable, str(ROOT / "eval/rag-insurer/check.py")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert r.returncode == 0, r.stdout + r.stderr
    assert "80 questions" in r.stdout, r.stdout
