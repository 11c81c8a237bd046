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


def _serve(models, parallel, extra=()):
    threads = os.environ.get("TANDEM_TEST_THREADS", "2")
    args = [_binary(), "serve", "--port", "0", "--threads", threads, "--parallel", str(parallel)]
    for m in models:
        args += ["--model", m]
    args += list(extra)
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
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
    return proc, url


def _stop(proc):
    proc.terminate()
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()


@pytest.fixture(scope="session")
def server():
    proc, url = _serve(["smollm2-135m", "minilm-l6"], 4)
    yield url
    _stop(proc)


@pytest.fixture(scope="session")
def slm_server():
    """The bundled SLM (Qwen2.5-Coder-0.5B), whose own chat template renders tools."""
    proc, url = _serve(["qwen2.5-coder-0.5b"], 2)
    yield url
    _stop(proc)


@pytest.fixture(scope="session")
def slm(slm_server):
    import openai

    return openai.OpenAI(base_url=slm_server + "/v1", api_key="not-needed", max_retries=0)


@pytest.fixture(scope="session")
def client(server):
    import openai

    return openai.OpenAI(base_url=server + "/v1", api_key="not-needed", max_retries=0)
