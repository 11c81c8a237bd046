"""An ingest killed mid-way (SIGKILL, no chance to clean up) and then run again: every
document committed before the kill is whole (its chunks and their vectors, one transaction
per document), the re-run adds only the rest and leaves the others unchanged, and the base
ends complete and consistent."""
import os
import re
import sqlite3
import subprocess
import tempfile
import time

from conftest import _binary

N = 80


def _docs(root):
    os.makedirs(root)
    for i in range(N):
        with open(os.path.join(root, f"doc{i:03}.md"), "w", encoding="utf-8") as f:
            f.write(f"# 文件 {i}\n\n" + "".join(
                f"第{j}段：理賠申請需要診斷證明、收據與申請書，案件 {i}-{j}。Claims need receipts, case {i}-{j}.\n\n"
                for j in range(12)))


def _counts(db):
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5)
    try:
        docs = con.execute("SELECT COUNT(*) FROM documents").fetchone()[0]
        empty = con.execute(
            "SELECT COUNT(*) FROM documents d WHERE NOT EXISTS (SELECT 1 FROM chunks c WHERE c.doc_id = d.id)"
        ).fetchone()[0]
        chunks = con.execute("SELECT COUNT(*) FROM chunks").fetchone()[0]
        vectors = con.execute("SELECT COUNT(*) FROM vectors").fetchone()[0]
        ok = con.execute("PRAGMA integrity_check").fetchone()[0]
        return docs, empty, chunks, vectors, ok
    finally:
        con.close()


def test_killed_ingest_resumes_without_losing_or_duplicating_documents():
    tmp = tempfile.mkdtemp()
    docs, kb_dir = os.path.join(tmp, "docs"), os.path.join(tmp, "kb")
    _docs(docs)
    env = dict(os.environ, TANDEM_KB_DIR=kb_dir, TANDEM_LOG="error", TANDEM_THREADS="1")
    db = os.path.join(kb_dir, "killed.sqlite")
    proc = subprocess.Popen([_binary(), "ingest", "killed", docs], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    committed = 0
    deadline = time.time() + 120
    while time.time() < deadline and proc.poll() is None:
        if os.path.exists(db):
            try:
                committed = _counts(db)[0]
            except sqlite3.Error:
                committed = 0  # the schema is being created
            if committed >= 5:
                break
        time.sleep(0.02)  # polling the file another process writes; bounded by the deadline
    proc.kill()
    proc.wait(timeout=30)
    assert 5 <= committed < N, f"the ingest was not caught mid-way ({committed} of {N})"
    docs_k, empty, chunks, vectors, ok = _counts(db)
    assert ok == "ok"
    assert empty == 0, "a document without its chunks was committed"
    assert chunks == vectors, "chunks without vectors"
    # The re-run adds the rest; what was committed is recognised as unchanged.
    out = subprocess.run([_binary(), "ingest", "killed", docs], env=env, capture_output=True,
                         text=True, timeout=600)
    assert out.returncode == 0, out.stderr
    m = re.search(r"(\d+) files seen; (\d+) added, (\d+) updated, (\d+) unchanged", out.stdout)
    assert m, out.stdout
    seen, added, updated, unchanged = map(int, m.groups())
    assert (seen, added + unchanged, updated) == (N, N, 0), out.stdout
    assert unchanged >= docs_k
    docs_n, empty, chunks, vectors, ok = _counts(db)
    assert (docs_n, empty, ok) == (N, 0, "ok")
    assert chunks == vectors > 0
