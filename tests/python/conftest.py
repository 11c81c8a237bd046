"""Starts a real `tandem serve` process (SmolLM2-135M + MiniLM) for the SDK tests."""
import os
import re
import subprocess
import time

import pytest


def _binary():
    b = os.environ.get("TANDEM_BIN")
    if b:
        return b
    home = os.environ.get("TANDEM_HOME", os.path.expanduser("~/.cache/tandem"))
    target = os.environ.get("CARGO_TARGET_DIR", os.path.join(home, "target"))
    return os.path.join(target, "release", "tandem")


@pytest.fixture(scope="session")
def server():
    threads = os.environ.get("TANDEM_TEST_THREADS", "2")
    proc = subprocess.Popen(
        [_binary(), "serve", "--port", "0", "--model", "smollm2-135m", "--model", "minilm-l6",
         "--threads", threads, "--parallel", "4"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    url = None
    deadline = time.time() + 120
    while time.time() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        m = re.search(r"listening on (http://\S+)", line)
        if m:
            url = m.group(1)
            break
    if url is None:
        proc.kill()
        err = proc.stderr.read()
        raise RuntimeError(f"tandem serve did not start:\n{err}")
    yield url
    proc.terminate()
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()


@pytest.fixture(scope="session")
def client(server):
    import openai

    return openai.OpenAI(base_url=server + "/v1", api_key="not-needed", max_retries=0)
