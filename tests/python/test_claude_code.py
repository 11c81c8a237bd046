"""Claude Code itself (the `claude` CLI, installed by scripts/install-deps.sh) pointed at Tandem
with `ANTHROPIC_BASE_URL`, where the policy routes to a remote Anthropic model. The remote model
is a scripted Anthropic upstream in this file: on the first turn it asks Claude Code to run its
`Read` tool on a file, and once the tool result comes back it answers with what it was shown.

What this proves: Claude Code's real requests (its system blocks, its tool definitions, its
streaming, its beta headers and `?beta=true`) pass Tandem's Messages endpoint; the tool_use
Tandem streams back is one Claude Code executes; the tool_result reaches the upstream with the
customer's e-mail masked, and the answer comes back to Claude Code with it restored."""
import json
import os
import shutil
import subprocess
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from conftest import _serve, _stop

EMAIL = "alice.chen@example.com"
ALIAS = "claude-tandem-test"


def _claude():
    exe = os.environ.get("CLAUDE_BIN") or shutil.which("claude")
    if not exe:
        home = os.environ.get("TANDEM_HOME", os.path.expanduser("~/.cache/tandem"))
        exe = os.path.join(home, "npm", "node_modules", ".bin", "claude")
    if not os.path.exists(exe):
        pytest.fail(f"Claude Code is not installed at {exe}: run scripts/install-deps.sh")
    return exe


class Upstream:
    """A scripted Anthropic Messages upstream that records every request it gets."""

    def __init__(self, path):
        self.path = path
        self.requests = []
        up = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *a):
                pass

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["content-length"])))
                up.requests.append({"path": self.path, "headers": dict(self.headers), "body": body})
                blocks, stop = up.answer(body)
                if body.get("stream"):
                    self._stream(body, blocks, stop)
                else:
                    self._json({"id": "msg_up", "type": "message", "role": "assistant",
                                "model": body["model"], "content": blocks, "stop_reason": stop,
                                "stop_sequence": None,
                                "usage": {"input_tokens": 100, "output_tokens": 20}})

            def _json(self, obj, status=200):
                raw = json.dumps(obj).encode()
                self.send_response(status)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(raw)))
                self.end_headers()
                self.wfile.write(raw)

            def _stream(self, body, blocks, stop):
                self.send_response(200)
                self.send_header("content-type", "text/event-stream")
                self.end_headers()

                def ev(kind, data):
                    data["type"] = kind
                    self.wfile.write(f"event: {kind}\ndata: {json.dumps(data)}\n\n".encode())
                    self.wfile.flush()

                ev("message_start", {"message": {
                    "id": "msg_up", "type": "message", "role": "assistant", "model": body["model"],
                    "content": [], "stop_reason": None, "stop_sequence": None,
                    "usage": {"input_tokens": 100, "output_tokens": 1}}})
                for i, b in enumerate(blocks):
                    if b["type"] == "text":
                        ev("content_block_start", {"index": i, "content_block": {"type": "text", "text": ""}})
                        half = len(b["text"]) // 2
                        for part in (b["text"][:half], b["text"][half:]):
                            ev("content_block_delta", {"index": i, "delta": {"type": "text_delta", "text": part}})
                    else:
                        ev("content_block_start", {"index": i, "content_block": {
                            "type": "tool_use", "id": b["id"], "name": b["name"], "input": {}}})
                        raw = json.dumps(b["input"])
                        # Split inside the path so the arguments arrive in pieces.
                        cut = len(raw) // 2
                        for part in (raw[:cut], raw[cut:]):
                            ev("content_block_delta", {"index": i, "delta": {
                                "type": "input_json_delta", "partial_json": part}})
                    ev("content_block_stop", {"index": i})
                ev("message_delta", {"delta": {"stop_reason": stop, "stop_sequence": None},
                                     "usage": {"output_tokens": 20}})
                ev("message_stop", {})

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def answer(self, body):
        """First turn with tools: call Read. After a tool result: say what it contained."""
        results = [b for m in body["messages"] if isinstance(m["content"], list)
                   for b in m["content"] if b.get("type") == "tool_result"]
        if results:
            content = results[-1]["content"]
            if isinstance(content, list):
                content = "".join(c.get("text", "") for c in content)
            return [{"type": "text", "text": f"The file says: {content}"}], "end_turn"
        names = {t.get("name") for t in body.get("tools", [])}
        if "Read" in names:
            return [{"type": "text", "text": "Reading it."},
                    {"type": "tool_use", "id": "toolu_01", "name": "Read",
                     "input": {"file_path": self.path}}], "tool_use"
        # Claude Code's side requests (titles, quota checks) get a plain answer.
        return [{"type": "text", "text": "ok"}], "end_turn"


@pytest.fixture(scope="module")
def gateway(tmp_path_factory):
    work = tmp_path_factory.mktemp("claude-code")
    notes = work / "notes.txt"
    notes.write_text(f"Customer contact: {EMAIL}\n")
    up = Upstream(str(notes))
    cfg = work / "tandem.yaml"
    cfg.write_text(f"""
models:
  - name: claude
    provider: anthropic
    base_url: {up.url}
    api_key: ant-upstream-key-123456
    model: claude-upstream
    retries: 0
aliases:
  {ALIAS}: policy
policy:
  llm_model: claude
  pii:
    action: mask
routes:
  - name: everything-to-claude
    then: {{model: claude}}
""")
    proc, url = _serve([], 1, extra=["--config", str(cfg), "--ledger", str(work / "ledger.sqlite")])
    yield url, up, work
    _stop(proc)
    up.server.shutdown()


def test_claude_code_runs_a_tool_through_tandem(gateway):
    url, up, work = gateway
    home = work / "home"
    home.mkdir()
    env = {
        "PATH": os.environ.get("PATH", ""),
        "HOME": str(home),
        "ANTHROPIC_BASE_URL": url,
        "ANTHROPIC_API_KEY": "tandem-client-key",
        "ANTHROPIC_DEFAULT_HAIKU_MODEL": ALIAS,
        "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1",
        "DISABLE_AUTOUPDATER": "1",
        "DISABLE_TELEMETRY": "1",
    }
    done = subprocess.run(
        [_claude(), "-p", "What does notes.txt say?", "--model", ALIAS,
         "--output-format", "json", "--allowedTools", "Read", "--max-turns", "4"],
        cwd=work, env=env, capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, f"claude failed:\n{done.stdout}\n{done.stderr}"
    out = json.loads(done.stdout)
    assert out.get("is_error") is False, out
    # The answer came from the upstream's second turn, with the e-mail restored by Tandem.
    assert out["result"].startswith("The file says:"), out["result"]
    assert EMAIL in out["result"], out["result"]

    main = [r for r in up.requests if any(t.get("name") == "Read" for t in r["body"].get("tools", []))]
    assert len(main) >= 2, [r["body"].get("messages") for r in up.requests]
    # Claude Code streamed, and its beta header passed through unchanged.
    assert all(r["body"].get("stream") is True for r in main)
    assert all("claude-code" in r["headers"].get("anthropic-beta", "") for r in main), \
        [r["headers"] for r in main]
    assert all(r["body"]["model"] == "claude-upstream" for r in up.requests)
    # The tool call Claude Code made is the one the upstream asked for, and its result went
    # back as a tool_result block for toolu_01 -- with the e-mail masked on the way out.
    last = main[-1]["body"]["messages"]
    results = [b for m in last if isinstance(m["content"], list) for b in m["content"]
               if b.get("type") == "tool_result"]
    assert [b["tool_use_id"] for b in results] == ["toolu_01"]
    assert "Customer contact:" in json.dumps(results)
    for r in up.requests:
        assert EMAIL not in json.dumps(r["body"]), "the e-mail left the machine unmasked"
