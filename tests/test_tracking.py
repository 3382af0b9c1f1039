"""wandb as a student meets it: `wandb login` detected for the installed wandb's own host, and a key
without network falls back to offline within seconds instead of stalling every run."""
import os
import socket
import subprocess
import sys
import threading
import time

import pytest

from conftest import ROOT

DETECT = ("from common.tracking import wandb_credentials, wandb_host; "
          "print(wandb_host()); print(wandb_credentials())")


def run_python(code, home, **env):
    clean = {k: v for k, v in os.environ.items() if not k.startswith("WANDB_")}
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT,
                          env={**clean, "HOME": str(home), **env}, timeout=120)


def test_a_wandb_login_for_the_installed_wandbs_default_host_is_detected(tmp_path):
    # what `wandb login` does: store the key in ~/.netrc under the host the installed wandb uses
    login = ("import wandb; from wandb.sdk.lib.wbauth import write_netrc_auth; "
             "write_netrc_auth(host=wandb.setup().settings.base_url, api_key='k' * 40)")
    assert run_python(login, tmp_path).returncode == 0
    host, source = run_python(DETECT, tmp_path).stdout.split()
    assert source == "netrc" and "api.wandb.ai" not in host  # wandb 0.31's default host is not api.wandb.ai


def test_credentials_are_what_wandb_itself_would_use(tmp_path):
    netrc = tmp_path / ".netrc"
    netrc.write_text("machine example.org\n  login user\n  password " + "k" * 40 + "\n")
    netrc.chmod(0o600)
    assert run_python(DETECT, tmp_path).stdout.split()[1] == "None"  # a key for another server is no W&B login
    # a key saved by an older wandb under api.wandb.ai: the installed wandb maps its host to that upstream
    netrc.write_text("machine api.wandb.ai\n  login user\n  password " + "k" * 40 + "\n")
    assert run_python(DETECT, tmp_path).stdout.split()[1] == "netrc"
    assert run_python(DETECT, tmp_path / "nohome", WANDB_API_KEY="k" * 40).stdout.split()[1] == "WANDB_API_KEY"


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
    result = run_python(code, tmp_path, WANDB_API_KEY="k" * 40, WANDB_BASE_URL=silent_server)
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
                            env={**os.environ, "HOME": str(tmp_path), "WANDB_API_KEY": "k" * 40,
                                 "WANDB_BASE_URL": silent_server, "WANDB_MODE": ""})
    assert result.returncode != 0 and "use --backend local, or check your network" in result.stderr
    assert "Traceback" not in result.stderr and len(result.stderr.strip().splitlines()) == 1
