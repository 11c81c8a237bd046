"""Starting a `tandem serve` process for the scripts: wait for its `listening on` line."""
import re
import subprocess
import sys
import threading
import time


def start(args, env=None, timeout=180):
    """Starts `args` (a `tandem serve … --port 0` command line); returns (process, base URL).
    Exits with a message when no `listening on http://…` line comes within `timeout` seconds.
    The rest of its standard output is read in the background so that it never blocks."""
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=env)
    deadline = time.time() + timeout
    while time.time() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        m = re.search(r"listening on (http://\S+)", line)
        if m:
            threading.Thread(target=proc.stdout.read, daemon=True).start()
            return proc, m.group(1)
    proc.kill()
    sys.exit("tandem serve did not start")
