"""Run tracking: a local run record that always exists, plus wandb when it can.

The local record (`runs/<name>/record.json`, rewritten atomically after every epoch) holds the
resolved config, per-epoch metrics, summary, timings and environment; reports and sweeps read
it, so everything works offline. wandb is `online` when the installed wandb has credentials for
its configured host and that host answers within a few seconds, `offline` otherwise (sync later
with `wandb sync`), or `disabled`; the record says which mode was actually used.
"""
import datetime
import netrc
import os
import platform
import socket
import sys
from pathlib import Path
from urllib.parse import urlparse

import torch

from common.io import save_json

WANDB_MODES = ("auto", "online", "offline", "disabled")


PROBE_SECONDS = 3.0  # an API key without network used to stall every run ~100 s inside wandb.init


def wandb_host() -> str:
    """The W&B server the installed wandb talks to: WANDB_BASE_URL, its settings file, else its default
    (since wandb 0.2x not api.wandb.ai, which is why the host is asked, never assumed)."""
    if os.environ.get("WANDB_BASE_URL"):
        return os.environ["WANDB_BASE_URL"].rstrip("/")
    try:
        import wandb

        return str(wandb.setup().settings.base_url).rstrip("/")
    except Exception:
        return "https://api.wandb.ai"


def wandb_credentials(host=None):
    """Where wandb would find an API key for `host` ("WANDB_API_KEY", "netrc", "settings"), or None."""
    if os.environ.get("WANDB_API_KEY"):
        return "WANDB_API_KEY"
    host = host or wandb_host()
    # `wandb login` writes the key to netrc under the server's host name; keys saved by older wandb
    # releases for W&B's cloud sit under api.wandb.ai, which the installed wandb still reads for its cloud
    names = {urlparse(host).hostname or host}
    if not os.environ.get("WANDB_BASE_URL"):
        names.add("api.wandb.ai")
    if any(netrc_has_login(name) for name in names):
        return "netrc"
    try:
        import wandb

        settings = wandb.setup().settings
        if settings.api_key and str(settings.base_url).rstrip("/") == host:
            return "settings"
    except Exception:
        pass
    return None


def netrc_has_login(hostname, path=None):
    """Does the netrc file (`$NETRC`, else ~/.netrc) hold a login for `hostname`? Unreadable: no."""
    path = os.path.expanduser(path or os.environ.get("NETRC") or "~/.netrc")
    try:
        return netrc.netrc(path).authenticators(hostname) is not None
    except (OSError, netrc.NetrcParseError):
        return False


def wandb_credentials_present() -> bool:
    return wandb_credentials() is not None


def wandb_reachable(host=None, timeout=PROBE_SECONDS) -> bool:
    """Does the W&B server answer HTTP within `timeout` seconds? (Any HTTP status counts as an answer.)"""
    import urllib.error
    import urllib.request

    try:
        urllib.request.urlopen(urllib.request.Request(host or wandb_host(), method="HEAD"), timeout=timeout).close()
        return True
    except urllib.error.HTTPError:
        return True
    except Exception:  # refused, unresolvable, timed out, TLS failure: not reachable now
        return False


def resolve_wandb_mode(mode: str, probe: bool = True) -> str:
    """auto → WANDB_MODE if set, else online when wandb has credentials and its server answers, else
    offline (sync later). An explicit online falls back to offline, with a warning, when the server
    does not answer within a few seconds."""
    if mode == "auto":
        env = os.environ.get("WANDB_MODE")
        if env in ("online", "offline", "disabled"):
            mode = env
        elif env == "dryrun":
            mode = "offline"
        else:
            mode = "online" if wandb_credentials_present() else "offline"
            if mode == "offline" and probe:
                say_once("wandb: no login here, logging offline (to upload later: wandb login, then "
                         ".venv/bin/wandb sync runs/<run>/wandb/offline-run-*)")
    if mode == "online" and probe and not wandb_reachable():
        say_once(f"wandb: {wandb_host()} did not answer within {PROBE_SECONDS:g} s; logging offline instead (upload "
                 f"later: .venv/bin/wandb sync runs/<run>/wandb/offline-run-*)")
        mode = "offline"
    return mode


_SAID = set()


def say_once(message):
    """One line on stderr, once per process (a sweep starts many runs): not a warning with its source line."""
    if message not in _SAID:
        _SAID.add(message)
        print(message, file=sys.stderr, flush=True)


def environment_info(device) -> dict:
    info = {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "host": socket.gethostname(),
        "platform": platform.platform(),
        "cpu_count": os.cpu_count(),
        "device": str(device),
    }
    if str(device).startswith("cuda") and torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
    return info


def now_iso() -> str:
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")


class RunRecord:
    """The on-disk record of one run; `save()` is atomic."""

    def __init__(self, run_dir, data=None):
        self.run_dir = Path(run_dir)
        self.path = self.run_dir / "record.json"
        self.data = data if data is not None else {"created": now_iso(), "status": "created", "epochs": [], "summary": {}}

    def save(self):
        self.data["updated"] = now_iso()
        save_json(self.path, self.data)

    def log_epoch(self, metrics: dict):
        """Add (or replace) one epoch's metrics in memory; `save()` writes them."""
        self.data["epochs"] = [e for e in self.data["epochs"] if e["epoch"] != metrics["epoch"]] + [metrics]


class WandbRun:
    """A thin wrapper: every call is a no-op when wandb is disabled or fails to start."""

    def __init__(self, mode, project, name, config, run_dir, run_id=None, group=None, tags=None):
        self.run = None
        self.owned = True
        self.mode = resolve_wandb_mode(mode)
        if self.mode == "disabled":
            return
        if self.mode == "active":  # inside a wandb sweep agent: log into the run the agent started
            import wandb

            self.run, self.owned = wandb.run, False
            if self.run is not None:  # the agent set the swept values; the rest of the run's config joins them
                self.run.config.update(config, allow_val_change=True)
            return
        try:
            import wandb

            # offline, wandb's own banner says to run `wandb online`, which cannot work here: it stays silent, and
            # the one line below says what does
            settings = wandb.Settings(silent=True) if self.mode == "offline" else None
            self.run = wandb.init(
                project=project, name=name, config=config, dir=str(run_dir), mode=self.mode,
                id=run_id, resume="allow" if run_id else None, group=group, tags=tags, reinit="finish_previous",
                settings=settings,
            )
        except Exception as err:  # tracking must never kill training: the local record has it all
            first = (str(err).strip().splitlines() or [""])[0]
            say_once(f"wandb could not start ({type(err).__name__}: {first}); the run continues with its local record")
            self.run = None

    @property
    def id(self):
        return self.run.id if self.run is not None else None

    def log(self, metrics: dict, step=None):
        if self.run is not None:
            self.run.log(metrics, step=step)

    def summary(self, values: dict):
        if self.run is not None:
            for key, value in values.items():
                self.run.summary[key] = value

    def finish(self, exit_code=0):
        if self.run is not None and self.owned:
            self.run.finish(exit_code=exit_code)
            self.run = None
