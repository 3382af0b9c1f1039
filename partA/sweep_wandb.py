"""The wandb backend of a sweep: create, continue or join a wandb sweep and run its agent here, keeping the local
traces (config, options, the server's sweep id) through which the assignment and the report read its runs as they
read a local sweep's."""
import datetime
from pathlib import Path

import yaml

from common.errors import UserError, describe
from common.io import save_json, save_text
from common.run_records import readable_record
from common.state import WandbSweepFile, read_state
from partA.from_scratch import run_scratch
from partA.sweep_config import stored_config
from partA.sweep_engine import LocalSweep

WANDB_STATES = {"finished": "finished", "stopped": "stopped", "running": "running", "created": "running",
                "interrupted": "running", "diverged": "failed", "failed": "failed"}


def is_wandb_sweep(folder):
    return (Path(folder) / "wandb.json").is_file()


def wandb_sweep_runs(folder):
    """A wandb-backed sweep's runs, from the local records that name it, in the shape `LocalSweep.runs()` gives."""
    folder = Path(folder)
    runs_dir = folder.parent.parent  # <runs>/sweeps/<name>
    metric = stored_config(folder)["metric"]["name"]
    runs = []
    for record_path in sorted(runs_dir.glob("*/record.json")):
        record = readable_record(record_path.parent)
        if not record or record.get("sweep") != folder.name or not record.get("wandb_sweep"):
            continue
        runs.append({"id": record.get("sweep_run") or record["name"], "params": record.get("sweep_params", {}),
                     "state": WANDB_STATES.get(record.get("status"), "running"),
                     "history": [{"epoch": e["epoch"], metric: e[metric]} for e in record.get("epochs", [])
                                 if metric in e],
                     "summary": record.get("summary", {}), "created": record_created(record), "agent": {},
                     "heartbeat": 0.0, "resumed": "resumed_from_epoch" in record, "error": None,
                     "record": record["name"]})
    return sorted(runs, key=lambda r: (r["created"], r["id"]))


def record_created(record):
    try:
        return datetime.datetime.fromisoformat(record["created"]).timestamp()
    except (KeyError, TypeError, ValueError):
        return 0.0


def sweep_runs(folder):
    """Every run of a sweep folder, whichever backend ran it (oldest first)."""
    return wandb_sweep_runs(folder) if is_wandb_sweep(folder) else LocalSweep(folder).runs()


def open_wandb_sweep_folder(folder, config, base_options, project):
    """Write or check a wandb sweep's local folder: the stored sweep id to continue, or None for a new sweep."""
    folder = Path(folder)
    if (folder / "config.yaml").is_file():
        if stored_config(folder) != config:
            raise UserError(f"sweep folder {folder} holds a different config; use another --name to start a new "
                            f"sweep, or the same config to continue this one")
        if not is_wandb_sweep(folder):
            raise UserError(f"sweep {folder.name} is a local sweep; continue it with --backend local, or use another "
                            f"--name for a wandb sweep")
        stored = read_state(folder / "wandb.json", WandbSweepFile,
                            f"it names the wandb sweep {folder.name} stands for; restore it, or use another --name")
        if stored.get("project") == project:
            return stored.get("sweep_id")
    save_text(folder / "config.yaml", yaml.safe_dump(config, sort_keys=False))
    save_json(folder / "options.json", base_options)
    return None


def run_wandb_sweep(config, base_options, count, project, sweep_id=None, runs_dir="runs", name=None):
    """Create (or continue, or join) a wandb sweep and run `count` runs of it in this process."""
    import wandb

    folder = Path(runs_dir) / "sweeps" / name if name else None
    if folder is not None and sweep_id is None:
        sweep_id = open_wandb_sweep_folder(folder, config, base_options, project)
        if sweep_id is not None:
            done = sum(r["state"] in ("finished", "stopped") for r in wandb_sweep_runs(folder))
            count = max(0, count - done)
            print(f"continuing wandb sweep {sweep_id} ({done} runs done, {count} to go)")
    if sweep_id is None:
        try:
            sweep_id = wandb.sweep(sweep=config, project=project)
        except Exception as err:  # bad key, no permission, server error: one line, not wandb's traceback
            raise UserError(f"wandb could not create the sweep ({describe(err)}); check `wandb login`, "
                            f"or use --backend local") from None
        if folder is not None:
            save_json(folder / "wandb.json", {"sweep_id": sweep_id, "project": project})
        print(f"created wandb sweep {sweep_id}; more agents join with: make agent SWEEP={sweep_id}")
    sweep_name = name or sweep_id.split("/")[-1]
    wandb_dir = Path(runs_dir) / "sweeps" / sweep_name
    wandb_dir.mkdir(parents=True, exist_ok=True)

    def train():
        # wandb's own files go to the sweep's folder: the run's folder is named after the id wandb.init gives it
        with wandb.init(group=sweep_name, job_type="sweep", dir=str(wandb_dir)) as active:
            params = dict(active.config)
            run_name = f"{sweep_name}-{active.id}"
            active.name = run_name
            run_scratch({**base_options, **params, "run_name": run_name, "runs_dir": runs_dir, "quiet": True,
                         "wandb": "active", "wandb_project": project, "wandb_group": sweep_name},
                        extra={"sweep": sweep_name, "wandb_sweep": sweep_id, "sweep_run": active.id,
                               "sweep_params": params})

    if count:
        wandb.agent(sweep_id, function=train, count=count, project=project)
    return sweep_id
