"""Run tracking: a local run record that always exists, plus wandb when it can.

The local record (`runs/<name>/record.json`, rewritten atomically after every epoch) holds the
resolved config, per-epoch metrics, summary, timings and environment; reports and sweeps read
it, so everything works offline. wandb is `online` when credentials exist, `offline`
otherwise (sync later with `wandb sync`), or `disabled`.
"""
import datetime
import netrc
import os
import platform
import socket
import warnings
from pathlib import Path

import torch

from common.io import load_json, save_json

WANDB_MODES = ("auto", "online", "offline", "disabled")


def wandb_credentials_present() -> bool:
    if os.environ.get("WANDB_API_KEY"):
        return True
    try:
        return netrc.netrc().authenticators("api.wandb.ai") is not None
    except (FileNotFoundError, netrc.NetrcParseError, OSError):
        return False


def resolve_wandb_mode(mode: str) -> str:
    """auto → WANDB_MODE if set, else online with credentials, else offline."""
    if mode != "auto":
        return mode
    env = os.environ.get("WANDB_MODE")
    if env in ("online", "offline", "disabled"):
        return env
    if env == "dryrun":
        return "offline"
    return "online" if wandb_credentials_present() else "offline"


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

    @classmethod
    def load(cls, run_dir):
        return cls(run_dir, load_json(Path(run_dir) / "record.json"))

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
            return
        try:
            import wandb

            self.run = wandb.init(
                project=project, name=name, config=config, dir=str(run_dir), mode=self.mode,
                id=run_id, resume="allow" if run_id else None, group=group, tags=tags, reinit="finish_previous",
            )
        except Exception as err:  # tracking must never kill training: the local record has it all
            warnings.warn(f"wandb could not start ({err}); continuing with the local run record only")
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
