"""SIGTERM during traffic, on a real `tandem serve` process: new requests get 503 while the
stream in flight runs to its end, then the process exits by itself and the ledger holds the
stream's record."""
import http.client
import json
import os
import signal
import sqlite3
import tempfile
import urllib.parse

from conftest import _serve


def _post(url, path, body):
    u = urllib.parse.urlparse(url)
    c = http.client.HTTPConnection(u.hostname, u.port, timeout=60)
    c.request("POST", path, body=json.dumps(body), headers={"content-type": "application/json"})
    return c, c.getresponse()


def test_sigterm_drains_in_flight_streams_and_refuses_new_requests():
    ledger = os.path.join(tempfile.mkdtemp(), "ledger.sqlite")
    proc, url = _serve(["smollm2-135m"], 2, ["--ledger", ledger, "--drain-timeout", "120"])
    try:
        c, r = _post(url, "/v1/chat/completions", {
            "model": "smollm2-135m", "stream": True, "max_tokens": 400,
            "messages": [{"role": "user", "content": "Write a long story about a river."}]})
        assert r.status == 200
        while b'"content":"' not in r.readline():
            pass
        proc.send_signal(signal.SIGTERM)
        # New requests are refused with a 503 and Retry-After while the stream drains. The
        # signal is handled asynchronously: the first request may still be let in.
        statuses = []
        for _ in range(50):
            c2, r2 = _post(url, "/v1/embeddings", {"model": "smollm2-135m", "input": "x"})
            statuses.append(r2.status)
            headers = dict(r2.getheaders())
            body = json.loads(r2.read() or b"{}")
            c2.close()
            if r2.status == 503:
                assert "retry-after" in {k.lower() for k in headers}
                assert body["error"]["message"]
                break
        assert statuses[-1] == 503, statuses
        rest = r.read().decode()
        assert "data: [DONE]" in rest
        c.close()
        assert proc.wait(timeout=60) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
    con = sqlite3.connect(ledger)
    rows = con.execute("SELECT status, answered_by FROM requests").fetchall()
    assert (200, "smollm2-135m") in rows, rows
