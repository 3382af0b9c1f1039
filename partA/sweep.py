"""Q2: hyperparameter sweeps of the Part A CNN — online with wandb or offline with a local controller.

    python partA/sweep.py --config partA/sweep.yaml --count 30              # backend auto
    python partA/sweep.py --backend local --agents 2 --name my-sweep        # 2 agents, one folder
    python partA/sweep.py --backend local --name my-sweep                   # continue an interrupted sweep
    python partA/sweep.py --join <wandb-sweep-id>                           # another machine joins (make agent)
    python partA/sweep.py --backend local --name s --storage postgresql://me@db/sweeps   # several machines, no wandb

auto = wandb when wandb has credentials and its server answers, else local (Optuna; docs/design.md, "Local sweeps").
Every run is a `train.py` run on the validation split; the test folder is never opened.
"""
import multiprocessing
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import common  # noqa: E402,F401 (first: without the project's environment it says how to start)

import click
import torch

from common.cli import DEVICE_OPTION, OneLineErrors, PLAIN_NAME, python_command
from common.data import load_train_val
from common.errors import UserError
from partA.sweep_config import load_sweep_config, validate_sweep_config
from partA.sweep_engine import LocalSweep, run_agent
from partA.sweep_wandb import run_wandb_sweep, sweep_runs
from common.tracking import PROBE_SECONDS, wandb_host, wandb_online, wandb_reachable
from partA.sweep_storage import masked


def _agent_process(folder, count, runs_dir, gpu):
    if gpu is not None:  # one GPU per agent: set before this fresh process first touches CUDA
        os.environ["CUDA_VISIBLE_DEVICES"] = str(gpu)
    run_agent(LocalSweep(folder), count, runs_dir)


@click.command(cls=OneLineErrors, context_settings={"show_default": True})
@click.option("--config", "config_path", default="partA/sweep.yaml", help="wandb sweep YAML.")
@click.option("--count", type=int, default=30, help="Runs in the whole sweep (local) or for this agent (wandb).")
@click.option("--backend", type=click.Choice(["auto", "wandb", "local"]), default="auto")
@click.option("--name", type=PLAIN_NAME, default=None, help="Local sweep name [default: the config file's stem].")
@click.option("--agents", type=int, default=1, help="Local agent processes working on the sweep at once.")
@click.option("--join", default=None, metavar="SWEEP_ID", help="Join an existing wandb sweep as one more agent.")
@click.option("--storage", default=None, metavar="URL",
              help="Local backend: keep the study in this PostgreSQL database (postgresql://user@host/db; the password "
                   "from PGPASSWORD or ~/.pgpass) so agents on other machines can join [default: the folder's journal].")
@click.option("--data-dir", default="data")
@click.option("--seed", type=int, default=42)
@click.option("--cache-dir", default="cache")
@click.option("--runs-dir", default="runs")
@click.option("--wandb-project", default="inat-lab")
@click.option("--wandb", "wandb_mode", type=click.Choice(["auto", "offline", "disabled"]), default="auto",
              help="How each local run logs to wandb.")
@DEVICE_OPTION
def main(config_path, count, backend, name, agents, join, storage, data_dir, seed, cache_dir, runs_dir, wandb_project,
         wandb_mode, device):
    """Run (or continue, or join) a hyperparameter sweep of the Part A CNN."""
    if count < 1 or agents < 1:
        raise UserError("--count and --agents must be >= 1")
    base = {"data_dir": data_dir, "seed": seed, "cache_dir": cache_dir, "wandb_project": wandb_project,
            "device": device, "wandb": wandb_mode}
    if backend == "auto":
        backend = "wandb" if (join or (not storage and wandb_online())) else "local"
    if storage and backend == "wandb":
        raise UserError("--storage is for the local backend (a wandb sweep lives on the wandb server): use --backend "
                        "local with it")
    if (backend == "wandb" or join) and not wandb_reachable():
        raise UserError(f"cannot reach the W&B server {wandb_host()} (no answer within {PROBE_SECONDS:g} s): use "
                        f"--backend local, or check your network")
    if join:
        run_wandb_sweep(None, base, count, wandb_project, sweep_id=join, runs_dir=runs_dir)
        return
    config = load_sweep_config(config_path)
    validate_sweep_config(config, config_path, base)
    folder = Path(runs_dir) / "sweeps" / (name or Path(config_path).stem)
    if backend == "wandb":  # its runs' records name the sweep as a local one's do, and it keeps the same folder
        run_wandb_sweep(config, base, count, wandb_project, runs_dir=runs_dir, name=folder.name)
        say_outcome(folder)
        return
    # Decode the cache and write the split once, before agents start, so they share them — and so that a
    # wrong --data-dir fails here, before the sweep folder stores it.
    first_image_size = config["parameters"].get("image_size", {}).get("value", 128)
    load_train_val(data_dir, first_image_size, seed=seed, cache_dir=cache_dir)
    sweep = LocalSweep.create_or_open(folder, config, base, log=click.echo, storage=storage)
    where = f"study in {masked(sweep.storage)}" if sweep.storage else f"state and resume: {folder}/"
    click.echo(f"local sweep {folder} ({config['method']}, {count} runs, {agents} agent(s)); {where}")
    if agents == 1:
        run_agent(sweep, count, runs_dir)
    else:
        gpus = torch.cuda.device_count() if device != "cpu" else 0
        workers = [multiprocessing.get_context("spawn").Process(
            target=_agent_process, args=(folder, count, runs_dir, i % gpus if gpus > 1 else None))
            for i in range(agents)]
        for w in workers:
            w.start()
        for w in workers:
            w.join()
    say_outcome(folder)


def say_outcome(folder):
    """The sweep's runs by state, its best run and the report's command; an error (exit 1) when every run failed."""
    runs = sweep_runs(folder)
    states = {s: sum(r["state"] == s for r in runs) for s in ("finished", "stopped", "failed", "running")}
    best = max((r for r in runs if r["summary"]), key=lambda r: r["summary"].get("best_val_acc", -1), default=None)
    click.echo(f"sweep {folder.name}: {len(runs)} runs ({', '.join(f'{v} {k}' for k, v in states.items() if v)})")
    if best:
        click.echo(f"best: run {best['id']} val acc {best['summary']['best_val_acc']:.4f} with {best['params']}")
    if runs and states["failed"] == len(runs):
        error = (runs[-1].get("error") or "no message").splitlines()[0]
        raise UserError(f"all {len(runs)} runs of sweep {folder.name} failed, the last with {error}; fix the cause, then "
                        f"continue the sweep or remove {folder} to start it over")
    click.echo(f"report: {python_command()} handin/report.py --sweep {folder.name}")


if __name__ == "__main__":
    main()
