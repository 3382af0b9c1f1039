"""wandb as a student meets it: `wandb login` detected for the installed wandb's own host, and a key
without network falls back to offline within seconds instead of stalling every run."""
import http.server
import os
import socket
import subprocess
import sys
import threading
import time
from urllib.parse import urlparse

import pytest

from conftest import ROOT

DETECT = ("from common.tracking import wandb_host, wandb_logged_in; "
          "print(wandb_host()); print(wandb_logged_in())")
KEY = "k" * 40  # wandb's keys are 40 characters


def run_python(code, home, **env):
    clean = {k: v for k, v in os.environ.items() if not k.startswith("WANDB_")}
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT,
                          env={**clean, "HOME": str(home), **env}, timeout=120)


def test_a_wandb_login_for_the_installed_wandbs_default_host_is_detected(tmp_path):
    assert run_python(DETECT, tmp_path).stdout.split()[1] == "False"  # a fresh home: no login, and no prompt
    login = f"import wandb; wandb.login(key='{KEY}', verify=False)"  # what `wandb login` does: the key into ~/.netrc
    assert run_python(login, tmp_path).returncode == 0
    host, found = run_python(DETECT, tmp_path).stdout.split()
    assert found == "True" and "api.wandb.ai" not in host  # wandb 0.31's default host is not api.wandb.ai
    assert urlparse(host).hostname in (tmp_path / ".netrc").read_text()


def test_credentials_are_what_wandb_itself_would_use(tmp_path):
    netrc = tmp_path / ".netrc"
    netrc.write_text(f"machine example.org\n  login user\n  password {KEY}\n")
    netrc.chmod(0o600)
    assert run_python(DETECT, tmp_path).stdout.split()[1] == "False"  # a key for another server is no W&B login
    # a key saved by an older wandb under api.wandb.ai: the installed wandb maps its host to that upstream
    netrc.write_text(f"machine api.wandb.ai\n  login user\n  password {KEY}\n")
    assert run_python(DETECT, tmp_path).stdout.split()[1] == "True"
    assert run_python(DETECT, tmp_path / "nohome", WANDB_API_KEY=KEY).stdout.split()[1] == "True"
    assert not (tmp_path / "nohome").exists() or not (tmp_path / "nohome" / ".netrc").exists()  # asking wrote nothing


@pytest.fixture
def silent_server():
    """A server on 127.0.0.1 that accepts connections and never answers: a network that hangs."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    held, stop = [], threading.Event()

    def accept():
        listener.settimeout(0.2)
        while not stop.is_set():
            try:
                held.append(listener.accept()[0])
            except OSError:
                pass

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{listener.getsockname()[1]}"
    stop.set()
    thread.join()
    for conn in held:
        conn.close()
    listener.close()


def test_a_key_without_network_falls_back_to_offline_within_seconds(tmp_path, silent_server):
    code = ("import time; from common.tracking import WandbRun; "
            "t = time.time(); run = WandbRun('online', 'p', 'r', {}, '" + str(tmp_path) + "'); "
            "print(run.mode, run.id is not None, round(time.time() - t, 1)); run.finish()")
    started = time.time()
    result = run_python(code, tmp_path, WANDB_API_KEY=KEY, WANDB_BASE_URL=silent_server)
    mode, has_id, seconds = result.stdout.split()[-3:]
    assert (mode, has_id) == ("offline", "True"), result.stderr  # an offline run that can be synced later
    assert float(seconds) < 15 and time.time() - started < 60
    # one line says so and how to upload later; no warning's source line, no wandb banner saying `wandb online`
    said = [line for line in result.stderr.splitlines() if line.strip()]
    assert said[0] == (f"wandb: {silent_server} did not answer within 3 s; logging offline instead (upload later: "
                       f".venv/bin/wandb sync runs/<run>/wandb/offline-run-*)"), result.stderr
    assert len(said) == 1 and "Warning" not in result.stderr and "wandb online" not in result.stderr


def test_the_sweep_says_what_to_do_when_wandb_is_unreachable(tmp_path, silent_server):
    result = subprocess.run([sys.executable, "partA/sweep.py", "--backend", "wandb", "--config",
                             "partA/sweep_demo.yaml"], capture_output=True, text=True, cwd=ROOT, timeout=120,
                            env={**{k: v for k, v in os.environ.items() if k != "WANDB_MODE"}, "HOME": str(tmp_path),
                                 "WANDB_API_KEY": KEY, "WANDB_BASE_URL": silent_server})
    assert result.returncode != 0 and "use --backend local, or check your network" in result.stderr
    assert "Traceback" not in result.stderr and len(result.stderr.strip().splitlines()) == 1


@pytest.fixture
def refusing_server():
    """A W&B server on 127.0.0.1 that answers every request with 401: a key it does not accept. Yields its URL and
    the list of the requests it got (method and path)."""
    requests = []

    class Refuse(http.server.BaseHTTPRequestHandler):
        def refuse(self):
            requests.append(f"{self.command} {self.path}")
            self.rfile.read(int(self.headers.get("Content-Length") or 0))
            self.send_response(401)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"{}")

        do_GET = do_POST = do_HEAD = refuse

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Refuse)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}", requests
    server.shutdown()


def test_asking_whether_there_is_a_login_sends_nothing_to_the_server(tmp_path, refusing_server):
    """wandb.login prints 'logged in as <user>' and asks the server whose key it is: without network that took 5 s,
    and wandb-core then held the process's exit for minutes (3 of 5 tries here). The question is asked silently."""
    url, requests = refusing_server
    result = run_python(DETECT, tmp_path, WANDB_API_KEY=KEY, WANDB_BASE_URL=url)
    assert result.stdout.split() == [url, "True"] and requests == [], (result.stderr, requests)


def test_a_key_the_server_refuses_logs_offline_instead_of_not_at_all(tmp_path, refusing_server):
    # the server answers (so the probe passes), but wandb.init fails: the run keeps a wandb run, offline, to sync
    code = ("from common.tracking import WandbRun; "
            "run = WandbRun('online', 'p', 'r', {}, '" + str(tmp_path) + "'); run.log({'loss': 1.0}); "
            "print('mode', run.mode, run.id is not None); run.finish()")
    result = run_python(code, tmp_path, WANDB_API_KEY=KEY, WANDB_BASE_URL=refusing_server[0])
    said = next(line.split() for line in result.stdout.splitlines() if line.startswith("mode "))  # wandb prints too
    assert said == ["mode", "offline", "True"], result.stderr
    assert "wandb could not start online" in result.stderr and "logging offline instead" in result.stderr
    assert list((tmp_path / "wandb").glob("offline-run-*/run-*.wandb"))  # what `wandb sync` uploads later
