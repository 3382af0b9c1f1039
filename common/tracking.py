"""Run tracking: a local run record that always exists (`runs/<name>/record.json`, rewritten atomically after every
epoch; reports and sweeps read it), plus wandb when it can — online with a login and an answering server, else
offline or disabled; the record says which mode was used (docs/design.md, "Training on the GPUs people have").
"""
import datetime
import functools
import os
import platform
import socket
import urllib.error
import urllib.request
from pathlib import Path

import torch

from common.errors import describe, say_once
from common.io import save_json

WANDB_MODES = ("auto", "online", "offline", "disabled")


PROBE_SECONDS = 3.0  # an API key without network used to stall every run ~100 s inside wandb.init
SYNC_COMMAND = ".venv/bin/wandb sync runs/<run>/wandb/offline-run-*"


def wandb_host() -> str:
    """The W&B server the installed wandb talks to: WANDB_BASE_URL, its settings file, else its default
    (since wandb 0.2x not api.wandb.ai, which is why the host is asked, never assumed)."""
    import wandb

    return str(wandb.setup().settings.base_url).rstrip("/")


@functools.cache
def wandb_logged_in() -> bool:
    """Does the installed wandb find an API key (by its own rules)? Asked once per process, with no prompt, silently
    (why: docs/design.md, "Training on the GPUs people have")."""
    import wandb

    silent = wandb.setup().settings.silent
    wandb.setup(wandb.Settings(silent=True))
    try:
        return wandb.login(prompt=False, verify=False)
    finally:
        wandb.setup(wandb.Settings(silent=silent))


def wandb_reachable(host=None, timeout=PROBE_SECONDS) -> bool:
    """Does the W&B server answer HTTP within `timeout` seconds? (Any HTTP status counts as an answer; why a probe:
    docs/design.md.)"""
    try:
        urllib.request.urlopen(urllib.request.Request(host or wandb_host(), method="HEAD"), timeout=timeout).close()
        return True
    except urllib.error.HTTPError:
        return True
    except Exception:  # refused, unresolvable, timed out, TLS failure: not reachable now
        return False


def mode_from_environment():
    """WANDB_MODE as a mode of ours (dryrun is wandb's old name for offline), or None when it says nothing."""
    env = os.environ.get("WANDB_MODE")
    return "offline" if env == "dryrun" else env if env in ("online", "offline", "disabled") else None


def wandb_online() -> bool:
    """Would a run log online now: WANDB_MODE does not say otherwise, wandb finds a login, its server answers."""
    return mode_from_environment() in (None, "online") and wandb_logged_in() and wandb_reachable()


def resolve_wandb_mode(mode: str) -> str:
    """auto → WANDB_MODE if set, else online when wandb finds a login, else offline (sync later). Online falls
    back to offline, with one line, when the server does not answer within a few seconds."""
    if mode == "auto":
        mode = mode_from_environment() or ("online" if wandb_logged_in() else "offline")
        if mode == "offline" and not mode_from_environment():
            say_once(f"wandb: no login here, logging offline (to upload: wandb login, then {SYNC_COMMAND})")
    if mode == "online" and not wandb_reachable():
        say_once(f"wandb: {wandb_host()} did not answer within {PROBE_SECONDS:g} s; logging offline instead "
                 f"(upload later: {SYNC_COMMAND})")
        mode = "offline"
    return mode


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
        self.path = Path(run_dir) / "record.json"
        self.data = data if data is not None else {"created": now_iso(), "status": "created", "epochs": [], "summary": {}}

    def save(self):
        self.data["updated"] = now_iso()
        save_json(self.path, self.data)


class WandbRun:
    """A thin wrapper: every call is a no-op when wandb is disabled or fails to start."""

    def __init__(self, mode, project, name, config, run_dir, run_id=None, group=None):
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
        import wandb

        start = functools.partial(wandb.init, project=project, name=name, config=config, dir=str(run_dir), id=run_id,
                                  resume="allow" if run_id else None, group=group, reinit="finish_previous")
        if self.mode == "online":
            try:
                self.run = start(mode="online")
                return
            except Exception as err:  # a key the server refuses, a server error: log offline, to upload later
                say_once(f"wandb could not start online ({describe(err)}); logging offline instead (upload later: "
                         f"{SYNC_COMMAND})")
                self.mode = "offline"
        try:
            # offline, wandb's own banner says to run `wandb online`, which cannot work here: it stays silent, and
            # the lines above say what does
            self.run = start(mode="offline", settings=wandb.Settings(silent=True))
        except Exception as err:  # tracking must never kill training: the local record has it all
            say_once(f"wandb could not start ({describe(err)}); the run continues with its local record")

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
