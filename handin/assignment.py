"""`make assignment` and `make demo`: the whole assignment in one command — sweep, test evaluation, filters,
guided backprop, fine-tuning, comparison, detection, the camera trap and the hand-in report.

    python handin/assignment.py --data-dir data                          # plan, estimate, then run
    python handin/assignment.py --data-dir data/demo --name demo --budget 10   # what make demo runs
    python handin/assignment.py --data-dir data --plan-only               # print the plan and the estimate

The step list below is the only one. A warm-up measures this machine's speed and the plan is printed with a time per
step; a rerun continues; a failed step skips what needs it (docs/design.md, "The hand-in pipeline").
"""
import hashlib
import shlex
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import common  # noqa: E402,F401 (first: without the project's environment it says how to start)

import click
import torch

from common.cli import OUTPUT_FOLDER, OneLineErrors, PLAIN_NAME, POSITIVE_NUMBER, python_command
from common.data import load_train_val
from common.dataset_zip import locate_dataset
from common.demo_data import CLASSES as DEMO_CLASSES
from common.device import resolve_device
from common.errors import UserError
from common.io import save_json
from common.locks import held_or_refused
from common.run_records import best_run, readable_record
from common.state import Plan, read_state, read_state_or_none
from handin.steps import Step, StepFailed, is_done, marked_outputs, run_step
from handin.sweep_report import MIN_SCORED_RUNS
from partA.from_scratch import run_scratch
from partA.sweep_config import first_rung, load_sweep_config, stored_config
from partA.sweep_wandb import sweep_runs
from partC.darknet_files import offline_photos

PY = sys.executable
MAX_SWEEP_RUNS = 40
FIRST_K = 4  # --freeze first-k: the first 4 stages frozen, about half of EfficientNet's (Lite0: 9, V2-S: 8)


def measure_images_per_s(data_dir, image_size, device, cache_dir):
    """(training images/s of the default CNN at `image_size` on this machine, training images in the data set),
    from a 2-epoch warm-up on up to 512 images — which also decodes the cache the sweep then reuses."""
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


# ----------------------------------------------------------------------------------- what a step depends on

def best_sweep_run(runs_dir, sweep):
    """{run, val_acc} of the sweep's best complete run, or None: what the Q4 steps show."""
    try:
        run_dir = best_run(runs_dir, kind="scratch", sweep=sweep)
    except UserError:
        return None
    return {"run": run_dir.name, "val_acc": readable_record(run_dir)["summary"]["best_val_acc"]}


def run_state(runs_dir, run_name):
    """{status, val_acc, epochs} of one run, or None when it has no record yet."""
    record = readable_record(Path(runs_dir) / run_name) if (Path(runs_dir) / run_name).is_dir() else None
    if record is None:
        return None
    return {"status": record.get("status"), "val_acc": record.get("summary", {}).get("best_val_acc"),
            "epochs": len(record.get("epochs", []))}


def complete_sweep_runs(runs_dir, sweep):
    """Runs of the sweep that ended (trained, stopped by hyperband or failed): what a rerun need not redo."""
    folder = Path(runs_dir) / "sweeps" / sweep
    if not (folder / "config.yaml").is_file():
        return 0
    return sum(r["state"] in ("finished", "stopped") for r in sweep_runs(folder))


def finetune_command(base, runs_dir, run_name):
    """A new fine-tuning run, or the resume of one that was interrupted (None when it already finished)."""
    state = run_state(runs_dir, run_name)
    if state and state["status"] == "finished":
        return None
    if (Path(runs_dir) / run_name / "last.pt").is_file():
        return [PY, "partB/finetune.py", "--resume", run_name, "--runs-dir", str(runs_dir)]
    return base


def needs_best(runs_dir, sweep, command):
    """The command with the sweep's best complete run filled in when the step runs (fails when there is none)."""
    def build():
        best = best_sweep_run(runs_dir, sweep)
        if best is None:
            raise StepFailed(f"sweep {sweep} has no complete run to take (see its runs in {runs_dir}/sweeps/{sweep})")
        return [part.replace("{best}", best["run"]) for part in command]

    return build


# ------------------------------------------------------------------------------------------------ the steps

def sweep_seconds(saved, count, finished=0):
    """Estimated seconds of the sweep's runs still to train."""
    a = saved["args"]
    per_run = a["sweep_epochs"] * saved["train_images"] / saved["rate"] / max(1, saved["gpus"])
    return max(0, count - finished) * hyperband_share(a["early_terminate"], a["sweep_epochs"], count) * per_run


def finetune_runs(finetune_model, epochs, rate_factor, main_run):
    """The plan's fine-tuning run, then one per other freezing strategy (named <main run>-<strategy>)."""
    main = {"run": main_run, "freeze": finetune_model["freeze"], "epochs": epochs, "extra": finetune_model["extra"],
            "rate_factor": rate_factor}
    others = finetune_model.get("others", [])  # a plan.json from before Part B ran several strategies has none
    return [main] + [{**main, **{k: v for k, v in other.items() if v is not None},
                      "run": f"{main_run}-{other.get('suffix') or other['freeze']}"} for other in others]


def part_b_steps(saved, places, eval_s, best):
    """Fine-tuning with each freezing strategy, then the runs on the test set and the comparison."""
    args, finetune_model = saved["args"], saved["finetune_model"]
    runs, out, name = args["runs_dir"], args["out"], args["name"]
    ft_runs = finetune_runs(finetune_model, args["finetune_epochs"], args["finetune_rate_factor"], f"{name}-finetune")

    def finetune(r):
        base = [PY, "partB/finetune.py", "--data-dir", args["data_dir"], "--model", finetune_model["model"],
                "--freeze", r["freeze"], "--epochs", str(r["epochs"]), "--run-name", r["run"], *r["extra"], *places]
        return lambda: finetune_command(base, runs, r["run"])

    compare = [PY, "partB/compare.py", "--run", "{best}", *[a for r in ft_runs for a in ("--run", r["run"])],
               "--runs-dir", runs, "--eval-dir", f"{out}/test-eval", "--out", f"{out}/compare"]
    return [
        Step("finetune", f"Part B: fine-tune {finetune_model['model']}, --freeze "
                         f"{', '.join(r['freeze'] for r in ft_runs)}", [finetune(r) for r in ft_runs],
             sum(r["epochs"] * saved["train_images"] / (saved["rate"] * r["rate_factor"]) + 20 for r in ft_runs) + 40,
             inputs=lambda: {"model": finetune_model, "epochs": args["finetune_epochs"], "run": ft_runs[0]["run"]},
             outputs=[f"{runs}/{r['run']}/{f}" for r in ft_runs for f in ("record.json", "best.pt")]),
        Step("finetune-eval", "Part B: the fine-tuned runs on the test set, and the comparison",
             [[PY, "partA/evaluate.py", "--run", r["run"], "--out", f"{out}/test-eval", *places] for r in ft_runs]
             + [needs_best(runs, name, compare)], (1 + len(ft_runs)) * eval_s,
             inputs=lambda: {"scratch": best(), "finetune": [run_state(runs, r["run"]) for r in ft_runs]},
             needs=("sweep", "finetune"), outputs=[f"{out}/test-eval/{r['run']}" for r in ft_runs] + [f"{out}/compare"]),
    ]


def plan(saved, finished_runs):
    """The steps, with time estimates in seconds from the measured rate; `finished_runs`: the sweep's that ended."""
    args, train_images, gpus = saved["args"], saved["train_images"], saved["gpus"]
    out, runs, name = args["out"], args["runs_dir"], args["name"]
    data = ["--data-dir", args["data_dir"]]
    places = ["--runs-dir", runs, "--cache-dir", args["cache_dir"]]
    count = args["count"]
    # measured on 2 CPU cores (the markers' seconds): test evaluation 4-5 s for 300 demo test images, filters +
    # guided backprop 5-6 s, detection 4 s, the camera trap 8 s, the report 10-11 s; test sets are ~1/4 of train
    eval_s = 4 + 0.004 * train_images
    ft_run = f"{name}-finetune"  # the plan's main run: the one Part B's Q1 and the test section show
    inputs = args["inputs"]
    sweep_cmd = [PY, "partA/sweep.py", "--config", args["sweep_config"], "--count", str(count), "--name", name,
                 "--backend", args["backend"], *data, *places]
    if gpus > 1:
        sweep_cmd += ["--agents", str(gpus)]
    best = lambda: best_sweep_run(runs, name)  # noqa: E731
    steps = [
        Step("sweep", f"Q2: sweep, {count} runs ({args['search']})", [sweep_cmd], sweep_seconds(saved, count, finished_runs),
             inputs=lambda: {"count": count,
                             "config": hashlib.sha256(Path(args["sweep_config"]).read_bytes()).hexdigest()[:16]},
             outputs=[f"{runs}/sweeps/{name}/config.yaml"]),
        Step("test-eval", "Q4: the sweep's best run on the test set",
             [needs_best(runs, name, [PY, "partA/evaluate.py", "--run", "{best}", "--out", f"{out}/test-eval",
                                      *places])], eval_s, inputs=best, needs=("sweep",),
             outputs=[lambda: f"{out}/test-eval/{best()['run']}"]),
        Step("interpret", "Q4: filters and guided backprop of that run",
             [needs_best(runs, name, [PY, "partA/filters.py", "--run", "{best}", "--out", f"{out}/interpret", *places]),
              needs_best(runs, name, [PY, "partA/guided_backprop.py", "--run", "{best}", "--out", f"{out}/interpret",
                                      *places])], 2 * eval_s, inputs=best, needs=("sweep",),
             outputs=[lambda: f"{out}/interpret/{best()['run']}"]),
        *part_b_steps(saved, places, eval_s, best),
        Step("detect", "Part C: YOLOv3 on the photos", [[PY, "partC/detect.py", *inputs, "--out", f"{out}/detect"]], 10,
             inputs=lambda: inputs, outputs=[f"{out}/detect"]),
        Step("watch", "Part C: the camera-trap watcher on a clip",
             [[PY, "partC/camera_trap.py", "--demo-clip", "--cooldown", "3", "--out", f"{out}/camera_trap",
               "--quiet"]], 15, inputs=lambda: "demo-clip", outputs=[f"{out}/camera_trap"]),
    ]
    report = Step("report", "the hand-in report",
                  [[PY, "handin/report.py", "--sweep", name, "--finetune-run", ft_run, "--runs-dir", runs,
                    "--out", f"{out}/report", "--include", out],
                   [PY, "handin/wandb_report.py", "--report", f"{out}/report/report.json", "--runs-dir", runs,
                    "--if-online"]], 15,
                  # what the other steps ran on, and what they left (a step that ran again makes the report stale)
                  inputs=lambda: [[s.inputs(), marked_outputs(out, s)] for s in steps], outputs=[f"{out}/report"])
    return steps + [report]


STEP_NAMES = ["sweep", "test-eval", "interpret", "finetune", "finetune-eval", "detect", "watch", "report"]


def run_steps(saved, names, log):
    """Run the steps named (in plan order) that are not done; returns the names of those that failed."""
    out = saved["args"]["out"]
    steps = steps_of(saved)
    failed = []
    for i, step in enumerate(steps, 1):
        if step.name not in names:
            continue
        heading = f"[{i}/{len(steps)}] {step.title}"
        if is_done(out, step):
            log(f"{heading}: done, its inputs unchanged — skipped")
            continue
        blocked = [n for n in step.needs if n in failed]
        if blocked:
            log(f"{heading}: not run, step {blocked[0]} failed")
            failed.append(step.name)
            continue
        log(heading)
        try:
            run_step(step, out, log)
        except StepFailed as err:
            log(f"  step {step.name} failed: {err}")
            failed.append(step.name)
    return failed


# ------------------------------------------------------------------------------------------------ the plan

def sweep_settings(sweep_config):
    """(search method as the plan names it, image size, epochs per run, early stopping) from the sweep YAML."""
    config = load_sweep_config(sweep_config)
    params = config["parameters"]
    search = config["method"] + (" + hyperband" if config.get("early_terminate") else "")
    return (search, params.get("image_size", {}).get("value", 128), params.get("epochs", {}).get("value", 15),
            config.get("early_terminate"))


def hyperband_share(early_terminate, epochs, count):
    """The expected share of full-length epochs a sweep trains under successive halving: at each rung (min_iter,
    ×eta, ...) all but 1/eta of the runs stop; the first eta runs have no one to trail, so they run to the end."""
    if not early_terminate or count < 1:
        return 1.0
    eta = int(early_terminate.get("eta", 3))
    rungs = [first_rung(early_terminate) * eta ** i for i in range(16)]
    rungs = [r for r in rungs if r < epochs]
    per_run = sum(r * (1 - 1 / eta) / eta ** i for i, r in enumerate(rungs)) + epochs / eta ** len(rungs)
    full = min(count, eta)
    return (full + (count - full) * per_run / epochs) / count


def check_count(count):
    if count is not None and count < MIN_SCORED_RUNS:
        raise UserError(f"COUNT={count} is too small: the report's parameter importance needs at least "
                        f"{MIN_SCORED_RUNS} scored sweep runs; use COUNT={MIN_SCORED_RUNS} or more (or leave COUNT out: "
                        f"it is sized to BUDGET)")


def finetune_choice(dev, demo, image_size, finetune_image_size):
    """(the fine-tuning runs as the plan saves them, the main run's speed as a share of the warm-up's, its epochs)."""
    # Part B: on a GPU, EfficientNetV2-S fine-tuned whole (docs/design.md), and the two cheaper strategies beside it.
    # On a CPU, the offline Lite0 with a frozen backbone at 224 px, trained on features computed once; then all three
    # strategies at the sweep's input size, the same 3 epochs, for a comparison where only the strategy differs:
    # first-k and none train through the backbone, 5-8 s an epoch on the 1,200 demo images at 48 px (2 quiet cores).
    first_k, given = ["--k", str(FIRST_K)], finetune_image_size  # --finetune-image-size: one size for every run
    sized = lambda extra, size: extra + (["--image-size", str(size)] if size else [])  # noqa: E731
    if dev.type == "cuda" and not demo:
        finetune_model = {"model": "efficientnet_v2_s", "freeze": "none", "extra": sized([], given), "others": [
            {"freeze": "all-but-last", "extra": sized([], given), "rate_factor": 0.3},
            {"freeze": "first-k", "extra": sized(first_k, given), "rate_factor": 0.15}]}
        ft_factor, ft_epochs = 0.12, 8
    else:
        size = given or image_size  # a given size, or the weights' own 224: the main run is the matched all-but-last
        matched = [] if given or size == 224 else [{"freeze": "all-but-last", "suffix": f"all-but-last-{size}px",
                                                    "rate_factor": 2.0, "extra": sized(["--no-augment"], size)}]
        finetune_model = {"model": "efficientnet_lite0", "freeze": "all-but-last",
                          "extra": sized(["--no-augment"], given), "others": matched + [
            {"freeze": "first-k", "extra": sized(["--no-augment", *first_k], size), "rate_factor": 0.4},
            {"freeze": "none", "extra": sized(["--no-augment"], size), "rate_factor": 0.4}]}
        ft_factor, ft_epochs = 0.5, 3 if demo else 10
    return finetune_model, ft_factor, ft_epochs


def make_plan(data_dir, budget, count, sweep_config, backend, inputs, device, finetune_image_size, out, runs_dir,
              cache_dir, name):
    """Measure, size and describe the run: everything the steps need, saved as plan.json."""
    check_count(count)
    plan_file = Path(out) / "plan.json"
    # a rerun after an interruption keeps the plan (and the sweep size) it started with; a damaged one is made again
    saved = read_state_or_none(plan_file, Plan, on_damage=click.echo)
    if saved is not None:
        same = (saved["args"]["data_dir"], saved["budget"], saved["args"]["backend"], saved["args"].get("name")) == (
            data_dir, budget, backend, name)
        if same and count in (None, saved["args"]["count"]) and sweep_config in (None, saved["args"]["sweep_config"]):
            click.echo(f"continuing the plan in {plan_file} (delete it to measure and plan again)")
            return saved
    dev = resolve_device(device)
    dataset = locate_dataset(data_dir, download=True)
    demo = sorted(p.name for p in dataset.train_dir.iterdir() if p.is_dir()) == sorted(DEMO_CLASSES)
    sweep_config = sweep_config or ("partA/sweep_demo.yaml" if demo else "partA/sweep.yaml")
    search, image_size, sweep_epochs, early_terminate = sweep_settings(sweep_config)
    click.echo(f"warm-up: measuring training speed at {image_size} px on {dev} ...")
    rate, train_images = measure_images_per_s(data_dir, image_size, str(dev), cache_dir)
    gpus = torch.cuda.device_count() if dev.type == "cuda" else 0
    finetune_model, ft_factor, ft_epochs = finetune_choice(dev, demo, image_size, finetune_image_size)
    args = {"data_dir": data_dir, "out": out, "runs_dir": runs_dir, "cache_dir": cache_dir, "count": count or 0,
            "sweep_config": sweep_config, "sweep_epochs": sweep_epochs, "search": search, "backend": backend,
            "early_terminate": early_terminate,
            "name": name, "finetune_epochs": ft_epochs, "finetune_rate_factor": ft_factor,
            "inputs": list(inputs) or [str(p) for p in offline_photos()]}
    saved = {"args": args, "rate": rate, "train_images": train_images, "gpus": gpus, "finetune_model": finetune_model,
             "budget": budget, "demo": demo, "device": str(dev), "image_size": image_size,
             "dataset": str(dataset.root)}
    if count is None:
        saved = with_count(saved, sized_count(saved))
    save_json(plan_file, saved)
    return saved


def steps_of(saved):
    return plan(saved, complete_sweep_runs(saved["args"]["runs_dir"], saved["args"]["name"]))


def print_plan(saved):
    steps, out, a = steps_of(saved), saved["args"]["out"], saved["args"]
    total = still_to_run(saved)
    share = hyperband_share(a["early_terminate"], a["sweep_epochs"], a["count"])
    click.echo(f"plan ({'demo data' if saved['demo'] else saved['dataset']}, {saved['train_images']} training images, "
               f"{saved['rate']:.0f} img/s measured for the default CNN at {saved['image_size']} px on {saved['device']}; "
               f"estimate = images x epochs / that rate, the sweep x{share:.2f} for "
               f"hyperband's early stops — an upper one: the sweep's smaller models train faster):")
    for i, s in enumerate(steps, 1):
        click.echo(f"  {i}. {s.title:<62} {'done' if is_done(out, s) else f'~{s.estimate_s / 60:5.1f} min'}")
    click.echo(f"  total still to run: ~{total / 60:.1f} min (budget {saved['budget']:g} min)")
    return total


def check_sweep_folder(saved, again):
    """Refuse before anything runs when this assignment's sweep folder holds another config (an edited YAML): the
    sweep would refuse it one step later, and nothing it finished may be overwritten."""
    a = saved["args"]
    stored = Path(a["runs_dir"]) / "sweeps" / a["name"] / "config.yaml"
    if stored.is_file() and stored_config(stored.parent) != load_sweep_config(a["sweep_config"]):
        raise UserError(f"{a['sweep_config']} changed since sweep {a['name']} started ({stored} holds the old one): "
                        f"to keep both, give this assignment another name (ASSIGNMENT_FLAGS='--name NEW', or --name); "
                        f"to start over, remove {stored.parent} (make demo: make clean-demo), then `{again}`")


def with_count(saved, count):
    return {**saved, "args": {**saved["args"], "count": count}}


def still_to_run(saved):
    return sum(s.estimate_s for s in steps_of(saved) if not is_done(saved["args"]["out"], s))


def sizes_that_fit(saved, counts):
    """The sweep sizes among `counts` whose plan stays inside the budget (the other steps' estimates and the
    sweep's finished runs are read once: they do not depend on the size)."""
    a = saved["args"]
    finished = complete_sweep_runs(a["runs_dir"], a["name"])
    others = sum(s.estimate_s for s in plan(saved, finished) if s.name != "sweep" and not is_done(a["out"], s))
    return [n for n in counts if others + sweep_seconds(saved, n, finished) <= saved["budget"] * 60]


def sized_count(saved):
    """The largest sweep that fits in the budget beside the other steps (MIN_SCORED_RUNS when none does)."""
    return max(sizes_that_fit(saved, range(MIN_SCORED_RUNS, MAX_SWEEP_RUNS + 1)), default=MIN_SCORED_RUNS)


def over_budget_advice(saved, total):
    """The one-line refusal, with advice that leads to a plan inside the budget that the report can use."""
    fits = sizes_that_fit(saved, range(MIN_SCORED_RUNS, saved["args"]["count"]))
    if fits:
        advice = f"lower COUNT to {max(fits)}"
    else:  # 15 % above the smallest plan: a new plan measures the speed again, and it varies
        smallest = still_to_run(with_count(saved, MIN_SCORED_RUNS))
        advice = (f"raise BUDGET to {int(smallest * 1.15 / 60) + 1} (the smallest plan the report can use: "
                  f"{MIN_SCORED_RUNS} sweep runs)")
    return (f"the estimate (~{total / 60:.0f} min) exceeds the budget of {saved['budget']:g} min: {advice}, "
            f"or add GO_ON=1 (--go-on) to run it anyway")


@click.command(cls=OneLineErrors, context_settings={"show_default": True})
@click.option("--data-dir", default="data", help="Folder with inaturalist_12K/ or nature_12K.zip (downloaded if absent).")
@click.option("--name", type=PLAIN_NAME, default="assignment",
              help="This assignment's sweep, run-name prefix and output folder (outputs/<name>).")
@click.option("--budget", type=POSITIVE_NUMBER, default=45.0, help="Minutes the whole chain may take.")
@click.option("--go-on", is_flag=True, help="Run even when the estimate exceeds --budget.")
@click.option("--plan-only", is_flag=True, help="Measure, print the plan and the estimate (saved as plan.json), run nothing.")
@click.option("--step", "only_step", type=click.Choice(STEP_NAMES), default=None,
              help="Run one step of the saved plan (and nothing else).")
@click.option("--count", type=int, default=None,
              help=f"Sweep runs [default: sized to the budget, {MIN_SCORED_RUNS} to {MAX_SWEEP_RUNS}].")
@click.option("--sweep-config", default=None, help="[default: partA/sweep.yaml; partA/sweep_demo.yaml on the demo data]")
@click.option("--backend", type=click.Choice(["auto", "wandb", "local"]), default="auto")
@click.option("--inputs", multiple=True, help="Photos/videos for Part C [default: Debian darknet's photos].")
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default="auto")
@click.option("--finetune-image-size", type=int, default=None, help="[default: the pretrained weights' own size]")
@click.option("--out", type=OUTPUT_FOLDER, default=None, help="[default: outputs/<name>]")
@click.option("--runs-dir", default="runs")
@click.option("--cache-dir", default="cache")
@click.option("--again", default=None, help="The command that continues, as the interruption message names it.")
def main(**options):
    """Plan, estimate and run the whole assignment, resumably."""
    name, out = options["name"], options["out"] or f"outputs/{options['name']}"
    check_count(options["count"])
    # one assignment per name at a time: two would warm up, then fight over the sweep and the runs
    with held_or_refused(Path(out) / "assignment.lock", f"assignment {name} is already running (process {{pid}}, "
                         f"--out {out}); wait for it to finish, or give another --name"):
        run_assignment(**{**options, "out": out})


def run_assignment(data_dir, name, budget, go_on, plan_only, only_step, count, sweep_config, backend, inputs, device,
                   finetune_image_size, out, runs_dir, cache_dir, again):
    again = again or shlex.join([python_command(), *sys.argv])
    plan_file = Path(out) / "plan.json"
    if only_step:
        try:
            saved = read_state(plan_file, Plan, "run without --step to plan again")
        except FileNotFoundError:
            raise UserError(f"no plan in {out}: run without --step first") from None
        names = [only_step]
    else:
        saved = make_plan(data_dir, budget, count, sweep_config, backend, inputs, device, finetune_image_size, out,
                          runs_dir, cache_dir, name)
        check_sweep_folder(saved, again)
        total = print_plan(saved)
        if total > budget * 60 and not go_on:
            raise UserError(over_budget_advice(saved, total))
        if total > budget * 60:
            click.echo(f"over budget: the estimate (~{total / 60:.1f} min) exceeds the budget ({budget:g} min); going on "
                       f"as --go-on asks, with the plan unchanged")
        if plan_only:
            return
        names = STEP_NAMES
    try:
        failed = run_steps(saved, names, click.echo)
    except KeyboardInterrupt:
        click.echo(f"\ninterrupted: finished steps, sweep runs and checkpoints are kept in {saved['args']['out']} and "
                   f"{saved['args']['runs_dir']}; `{again}` continues from here", err=True)
        sys.exit(130)
    if failed:
        raise UserError(f"step {failed[0]} failed (see its output above){' and ' + ', '.join(failed[1:]) if failed[1:] else ''}; "
                        f"the report notes what is missing. Fix the cause and run `{again}` again: it continues")
    if not only_step:
        click.echo(f"assignment done: {out}/report/report.html")


if __name__ == "__main__":
    main()
