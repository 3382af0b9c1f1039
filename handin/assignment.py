"""`make assignment`: the whole assignment in one command — sweep, test evaluation, filters, guided
backprop, fine-tuning, comparison, detection, the camera trap and the hand-in report.

    python handin/assignment.py --data-dir data                     # plan, estimate, then run
    python handin/assignment.py --data-dir data/demo --budget 10    # the demo data on a CPU
    python handin/assignment.py --data-dir data --plan-only          # print the plan and the estimate

Each step is one of the project's own commands, run as a subprocess. A step that finished is
skipped on the next call (a marker is written only after its command succeeded); an interrupted
step continues where it stopped (the sweep continues its sweep folder, runs resume from their
checkpoints). Before anything runs, a short warm-up measures training images/s on this machine
and the plan is printed with a time per step; when the total exceeds --budget minutes the
command stops and says so, unless --go-on is given.
"""
import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import List

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import click

from common.cli import OneLineErrors
from common.errors import UserError

PY = sys.executable


@dataclass
class Step:
    name: str
    title: str
    commands: List[List[str]]
    estimate_s: float
    note: str = ""
    outputs: List[str] = field(default_factory=list)  # must exist after the commands for the step to count as done


def measure_images_per_s(data_dir, image_size, device, cache_dir):
    """(training images/s of the default CNN at `image_size` on this machine, training images in the data set),
    from a 2-epoch warm-up on up to 512 images — which also decodes the cache the sweep then reuses."""
    import tempfile

    import torch

    from common.data import load_train_val
    from common.from_scratch import run_scratch

    data = load_train_val(data_dir, image_size, cache_dir=cache_dir, progress=False)
    train_images = len(data.train)
    subset = min(train_images, 512)
    data.train.images, data.train.labels = data.train.images[:subset], data.train.labels[:subset]
    data.train.paths = data.train.paths[:subset]
    with tempfile.TemporaryDirectory() as tmp:
        torch.manual_seed(0)
        record = run_scratch({"image_size": image_size, "epochs": 2, "wandb": "disabled", "quiet": True,
                              "device": device, "runs_dir": tmp, "run_name": "warmup", "cache_dir": str(cache_dir)},
                             data=data)
    return record["epochs"][-1]["images_per_s"], train_images


def finetune_command(base, runs_dir, run_name):
    """A new fine-tuning run, or the resume of one that was interrupted (None when it already finished)."""
    run_dir = Path(runs_dir) / run_name
    record = run_dir / "record.json"
    if record.is_file() and json.loads(record.read_text()).get("status") == "finished":
        return None
    if (run_dir / "last.pt").is_file():
        return [PY, "partB/finetune.py", "--resume", run_name, "--runs-dir", str(runs_dir), "--quiet"]
    return base


def plan(args, measured_rate, train_images, gpus, finetune_model):
    """The steps, with time estimates in seconds from the measured rate (basis printed with the plan)."""
    out, runs = args["out"], args["runs_dir"]
    data = ["--data-dir", args["data_dir"]]
    common = ["--runs-dir", runs, "--cache-dir", args["cache_dir"]]
    epochs, count = args["sweep_epochs"], args["count"]
    # hyperband stops runs that trail at epoch 3: with eta 3 (it keeps the best third) bayes + hyperband spent 0.6
    # of the full-length epochs in make sweep-bench (seed 0: 144 of 12 × 20); eta 4 now keeps the best quarter,
    # so 0.6 is an upper estimate
    sweep_s = 0.6 * count * epochs * train_images / measured_rate / max(1, gpus)
    eval_s = 15 + 0.004 * train_images  # measured: ~5 s for 300 demo test images on 2 CPU cores
    ft_epochs = args["finetune_epochs"]
    ft_rate = measured_rate * args["finetune_rate_factor"]
    inputs = args["inputs"]
    sweep_cmd = [PY, "partA/sweep.py", "--config", args["sweep_config"], "--count", str(count), "--name",
                 args["sweep_name"], "--backend", args["backend"], *data, *common]
    if gpus > 1:
        sweep_cmd += ["--agents", str(gpus)]
    own = ["--sweep", args["sweep_name"]]  # this assignment's own sweep runs, never another command's
    import yaml

    sweep_yaml = yaml.safe_load(Path(args["sweep_config"]).read_text())
    search = sweep_yaml["method"] + (" + hyperband" if sweep_yaml.get("early_terminate") else "")
    steps = [
        Step("sweep", f"Q2: sweep, {count} runs ({search})", [sweep_cmd], sweep_s,
             outputs=[f"{runs}/sweeps/{args['sweep_name']}/config.yaml"]),
        Step("test-eval", "Q4: best from-scratch run on the test set",
             [[PY, "partA/evaluate.py", "--kind", "scratch", *own, "--out", f"{out}/test-eval", *common]], eval_s),
        Step("interpret", "Q4: filters and guided backprop of that run",
             [[PY, "partA/filters.py", *own, "--out", f"{out}/interpret", *common],
              [PY, "partA/guided_backprop.py", *own, "--out", f"{out}/interpret", *common]], 2 * eval_s),
        Step("finetune", f"Part B: fine-tune {finetune_model['model']} ({finetune_model['freeze']}, {ft_epochs} epochs)",
             [lambda: finetune_command(
                 [PY, "partB/finetune.py", *data, "--model", finetune_model["model"], "--freeze", finetune_model["freeze"],
                  "--epochs", str(ft_epochs), "--run-name", "assignment-finetune", "--quiet", *finetune_model["extra"],
                  *common], runs, "assignment-finetune")], ft_epochs * train_images / ft_rate + 60),
        Step("finetune-eval", "Part B: the fine-tuned run on the test set, and the comparison",
             [[PY, "partA/evaluate.py", "--run", "assignment-finetune", "--out", f"{out}/test-eval", *common],
              [PY, "partB/compare.py", "--runs-dir", runs, "--eval-dir", f"{out}/test-eval", "--out", f"{out}/compare"]],
             2 * eval_s),
        Step("detect", "Part C: YOLOv3 on the photos", [[PY, "partC/detect.py", *inputs, "--out", f"{out}/detect"]], 30),
        Step("watch", "Part C: the camera-trap watcher on a clip",
             [[PY, "partC/camera_trap.py", "--demo-clip", "--cooldown", "3", "--out", f"{out}/camera_trap", "--quiet"]],
             40),
        Step("report", "the hand-in report", [[PY, "handin/report.py", "--sweep", args["sweep_name"], "--runs-dir", runs,
                                               "--out", f"{out}/report", "--include", out]], 30),
    ]
    return steps


def marker(out, step):
    return Path(out) / "steps" / f"{step.name}.done"


def run_step(step, out, env, log):
    """Run a step's commands; write its marker only when all succeeded and its outputs exist."""
    started = time.time()
    for command in step.commands:
        command = command() if callable(command) else command
        if command is None:
            continue
        log(f"  $ {' '.join(command[1:])}")
        result = subprocess.run(command, env=env)
        if result.returncode != 0:
            raise UserError(f"step '{step.name}' failed (exit {result.returncode}) in: {' '.join(command[1:])}; fix "
                            f"the cause and run the same command again: finished steps are skipped")
    missing = [o for o in step.outputs if not Path(o).exists()]
    if missing:
        raise UserError(f"step '{step.name}' ran but {missing[0]} is missing")
    path = marker(out, step)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"seconds": round(time.time() - started, 1), "finished": time.ctime()}))


STEP_NAMES = ["sweep", "test-eval", "interpret", "finetune", "finetune-eval", "detect", "watch", "report"]


def make_plan(data_dir, budget, count, sweep_config, backend, inputs, device, finetune_image_size, out, runs_dir,
              cache_dir):
    """Measure, size and describe the run: everything the steps need, saved as plan.json."""
    import torch
    import yaml

    from common.data import locate_dataset
    from common.demo_data import CLASSES as DEMO_CLASSES
    from common.device import resolve_device

    plan_file = Path(out) / "plan.json"
    if plan_file.is_file():  # a rerun after an interruption keeps the plan (and the sweep size) it started with
        saved = json.loads(plan_file.read_text())
        same = (saved["args"]["data_dir"], saved["budget"], saved["args"]["backend"]) == (data_dir, budget, backend)
        if same and count in (None, saved["args"]["count"]) and sweep_config in (None, saved["args"]["sweep_config"]):
            click.echo(f"continuing the plan in {plan_file} (delete it to measure and plan again)")
            return saved
    dev = resolve_device(device)
    dataset = locate_dataset(data_dir, download=True)
    demo = sorted(p.name for p in dataset.train_dir.iterdir() if p.is_dir()) == sorted(DEMO_CLASSES)
    sweep_config = sweep_config or ("partA/sweep_demo.yaml" if demo else "partA/sweep.yaml")
    params = yaml.safe_load(Path(sweep_config).read_text())["parameters"]
    image_size = params.get("image_size", {}).get("value", 128)
    sweep_epochs = params.get("epochs", {}).get("value", 15)
    click.echo(f"warm-up: measuring training speed at {image_size} px on {dev} ...")
    rate, train_images = measure_images_per_s(data_dir, image_size, str(dev), cache_dir)
    gpus = torch.cuda.device_count() if dev.type == "cuda" else 0
    # Part B: on a GPU, EfficientNetV2-S fine-tuned whole (docs/design.md); on a CPU, the offline Lite0 with a frozen
    # backbone, trained on features computed once.
    if dev.type == "cuda" and not demo:
        finetune_model = {"model": "efficientnet_v2_s", "freeze": "none", "extra": []}
        ft_factor, ft_epochs = 0.12, 8
    else:
        finetune_model = {"model": "efficientnet_lite0", "freeze": "all-but-last", "extra": ["--no-augment"]}
        ft_factor, ft_epochs = 0.5, 3 if demo else 10
    if finetune_image_size:
        finetune_model["extra"] = finetune_model["extra"] + ["--image-size", str(finetune_image_size)]
    per_run = 0.6 * sweep_epochs * train_images / rate / max(1, gpus)
    if count is None:  # what fits in ~60 % of the budget, between 4 and 40 runs
        count = int(max(4, min(40, 0.6 * budget * 60 / max(per_run, 1e-9))))
    args = {"data_dir": data_dir, "out": out, "runs_dir": runs_dir, "cache_dir": cache_dir, "count": count,
            "sweep_config": sweep_config, "sweep_epochs": sweep_epochs, "backend": backend,
            "sweep_name": "assignment", "finetune_epochs": ft_epochs, "finetune_rate_factor": ft_factor,
            "inputs": list(inputs) or default_inputs()}
    saved = {"args": args, "rate": rate, "train_images": train_images, "gpus": gpus, "finetune_model": finetune_model,
             "budget": budget, "demo": demo, "device": str(dev), "image_size": image_size,
             "dataset": str(dataset.root)}
    Path(out).mkdir(parents=True, exist_ok=True)
    (Path(out) / "plan.json").write_text(json.dumps(saved, indent=2))
    return saved


def steps_of(saved):
    return plan(saved["args"], saved["rate"], saved["train_images"], saved["gpus"], saved["finetune_model"])


def print_plan(saved):
    steps, out = steps_of(saved), saved["args"]["out"]
    total = sum(s.estimate_s for s in steps if not marker(out, s).exists())
    click.echo(f"plan ({'demo data' if saved['demo'] else saved['dataset']}, {saved['train_images']} training images, "
               f"{saved['rate']:.0f} img/s measured at {saved['image_size']} px on {saved['device']}; estimate = images x "
               f"epochs / that rate, the sweep x0.6 for hyperband's early stops):")
    for i, s in enumerate(steps, 1):
        done = marker(out, s).exists()
        click.echo(f"  {i}. {s.title:<62} {'done' if done else f'~{s.estimate_s / 60:5.1f} min'}")
    click.echo(f"  total still to run: ~{total / 60:.1f} min (budget {saved['budget']:g} min)")
    return total


def run_steps(saved, names, log):
    env = {**os.environ, "WANDB_SILENT": "true"}
    steps = steps_of(saved)
    for i, s in enumerate(steps, 1):
        if s.name not in names:
            continue
        if marker(saved["args"]["out"], s).exists():
            log(f"[{i}/{len(steps)}] {s.title}: done before, skipped")
            continue
        log(f"[{i}/{len(steps)}] {s.title}")
        run_step(s, saved["args"]["out"], env, log)


@click.command(cls=OneLineErrors, context_settings={"show_default": True})
@click.option("--data-dir", default="data", help="Folder with inaturalist_12K/ or nature_12K.zip (downloaded if absent).")
@click.option("--budget", type=float, default=45.0, help="Minutes the whole chain may take.")
@click.option("--go-on", is_flag=True, help="Run even when the estimate exceeds --budget.")
@click.option("--plan-only", is_flag=True, help="Measure, print the plan and the estimate (saved as plan.json), run nothing.")
@click.option("--step", "only_step", type=click.Choice(STEP_NAMES), default=None,
              help="Run one step of the saved plan (what make assignment does, step by step).")
@click.option("--count", type=int, default=None, help="Sweep runs [default: sized to the budget, 4 to 40].")
@click.option("--sweep-config", default=None, help="[default: partA/sweep.yaml; partA/sweep_demo.yaml on the demo data]")
@click.option("--backend", type=click.Choice(["auto", "wandb", "local"]), default="auto")
@click.option("--inputs", multiple=True, help="Photos/videos for Part C [default: Debian darknet's photos].")
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default="auto")
@click.option("--finetune-image-size", type=int, default=None, help="[default: the pretrained weights' own size]")
@click.option("--out", default="outputs/assignment")
@click.option("--runs-dir", default="runs")
@click.option("--cache-dir", default="cache")
def main(data_dir, budget, go_on, plan_only, only_step, count, sweep_config, backend, inputs, device,
         finetune_image_size, out, runs_dir, cache_dir):
    """Plan, estimate and run the whole assignment, resumably."""
    plan_file = Path(out) / "plan.json"
    if only_step:
        if not plan_file.is_file():
            raise UserError(f"no plan in {out}: run without --step first (make assignment plans, then runs each step)")
        run_steps(json.loads(plan_file.read_text()), [only_step], click.echo)
        return
    saved = make_plan(data_dir, budget, count, sweep_config, backend, inputs, device, finetune_image_size, out,
                      runs_dir, cache_dir)
    total = print_plan(saved)
    if total > budget * 60 and not go_on:
        raise UserError(f"the estimate (~{total / 60:.0f} min) exceeds --budget {budget:g} min: raise BUDGET, lower "
                        f"COUNT, or add --go-on (make assignment GO_ON=1) to run anyway")
    if plan_only:
        return
    run_steps(saved, STEP_NAMES, click.echo)
    click.echo(f"assignment done: {out}/report/report.html")


def default_inputs():
    photos = [str(p) for p in sorted(Path("/usr/share/darknet/data").glob("*.jpg"))]
    if photos:
        return photos
    import matplotlib

    return [str(Path(matplotlib.get_data_path()) / "sample_data" / "grace_hopper.jpg")]


if __name__ == "__main__":
    main()
