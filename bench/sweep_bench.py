"""`make sweep-bench`: how many epochs does the project's sweep need to find the grid's best config?

    python bench/sweep_bench.py --data-dir data/demo --image-size 32 --epochs 20 --seeds 3

Grid, random and bayes + hyperband run through the real local sweep controller and trainer on one small
space, and again as replays of the grid's recorded histories (--replays proposal seeds per data seed).
Method and results: docs/measurements.md, "Sweep".
"""
import copy
import math
import shutil
import sys
from datetime import date
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import common  # noqa: E402,F401 (first: without the project's environment it says how to start)

import click

from common.cli import OneLineErrors
from common.data import load_train_val
from common.errors import UserError
from common.io import save_json
from partA.sweep_config import load_sweep_config
from partA.sweep_engine import LocalSweep, run_agent, scratch_trainer

# 36 configs, not 12 (why: docs/measurements.md, "Sweep")
SPACE = {"lr": [0.001, 0.003, 0.009], "organisation": ["same", "double", "half"], "dropout": [0.0, 0.3],
         "batch_norm": [True, False]}


def default_early_terminate():
    """partA/sweep.yaml's hyperband as it stands, not rescaled to --epochs: when validation accuracy starts to
    rank configs depends on the one-epoch warm-up, not on the run's length."""
    return load_sweep_config(Path(__file__).resolve().parents[1] / "partA" / "sweep.yaml")["early_terminate"]


def method_config(method, epochs):
    """The sweep YAML of one method over SPACE (fixed architecture and epochs)."""
    parameters = {name: {"values": values} for name, values in SPACE.items()}
    parameters.update({"base_filters": {"value": 16}, "dense_units": {"value": 64}, "epochs": {"value": epochs}})
    config = {"method": "grid" if method == "grid" else method.split("+")[0],
              "metric": {"name": "val_acc", "goal": "maximize"}, "parameters": parameters}
    if method.endswith("+hyperband"):
        config["early_terminate"] = default_early_terminate()
    return config


def run_method(method, epochs, budget_epochs, folder, train, base_options, max_runs, target=None):
    """Run one method until it has spent `budget_epochs` or, given a `target`, until its best validation accuracy
    reaches it (what is left of the budget could not change the epochs it needed); returns
    ([(epochs spent, best val acc so far)], runs)."""
    sweep = LocalSweep.create_or_open(folder, method_config(method, epochs), base_options, log=lambda *_: None)
    curve, spent, best = [], 0, 0.0
    while spent < budget_epochs and len(sweep.runs()) < max_runs and (target is None or best < target):
        before = len(sweep.runs())
        run_agent(sweep, before + 1, str(base_options.get("runs_dir", folder.parent)), train=train, log=lambda *_: None)
        runs = sweep.runs()  # oldest first
        if len(runs) == before:  # a finished grid, or every config tried
            break
        for epoch in runs[-1]["history"]:  # the epochs this run spent, one by one
            spent += 1
            best = max(best, epoch["val_acc"])
            curve.append((spent, best))
    return curve, sweep.runs()


def config_key(params):
    return tuple(params[name] for name in SPACE)


def replay_trainer(histories):
    """A trainer that replays recorded histories {config key: [val acc per epoch]}, stopping where hyperband says."""
    def train(options, should_stop, resume, extra):
        history = histories[config_key(options)]
        for epoch, val_acc in enumerate(history, 1):
            if should_stop(epoch, {"epoch": epoch, "val_acc": val_acc}):
                return {"status": "stopped", "summary": {"best_val_acc": max(history[:epoch])}}
        return {"status": "finished", "summary": {"best_val_acc": max(history)}}

    return train


def mismatches(runs, grid_histories):
    """Runs whose history differs from the grid's run of the same config (over the epochs both have)."""
    bad = 0
    for r in runs:
        grid = grid_histories.get(config_key(r["params"]))
        mine = [h["val_acc"] for h in r["history"]]
        bad += grid is not None and any(abs(a - b) > 1e-9 for a, b in zip(mine, grid))
    return bad


def epochs_to_reach(curve, target):
    return next((spent for spent, best in curve if best >= target), None)


def plot_curves(results, budget, tolerance, path, goal=0.2):
    """Best validation accuracy so far, in points from that seed's grid best, against the fraction of the
    grid's epochs spent: the seeds' targets differ, so each curve is measured against its own."""
    from common.viz import save  # first: it sets matplotlib's Agg backend
    import matplotlib.pyplot as plt

    colours = {"grid": "#444444", "random": "#1b9e77", "bayes+hyperband": "#d95f02"}
    fig, ax = plt.subplots(figsize=(8, 4.5))
    for (method, seed), curve in results.items():
        target = results[("grid", seed)][-1][1]
        xs, ys = zip(*((spent / budget, 100 * (best - target)) for spent, best in curve))
        ax.step(xs, ys, where="post", color=colours[method], alpha=0.8, lw=1.5,
                label=method if seed == min(s for m, s in results if m == method) else None)
    ax.axhline(-100 * tolerance, color="black", ls=":", lw=1, label=f"reached: within {100 * tolerance:g} points")
    ax.axvline(goal, color="#7570b3", ls="--", lw=1, label=f"goal: {goal:g} of the grid's epochs")
    ax.set(xlabel="fraction of the grid's epochs spent", ylabel="best val accuracy so far − grid's best (points)",
           title="sweep efficiency (one line per method and seed; random and bayes stop once they reach it)",
           ylim=(-30, 3))
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right")
    return save(fig, path)


METHODS = ("grid", "random", "bayes+hyperband")
REPLAYED = ("random", "random+hyperband", "bayes+hyperband")


def fraction_needed(curve, target, budget):
    reached = epochs_to_reach(curve, target)
    return None if reached is None else reached / budget


def shown(fraction):
    return "not reached" if fraction is None else f"{fraction:.2f}"


def summarise(fractions, goal=0.2):
    """Median (not reached counts as worse than any number), and the share of tries within the goal."""
    ordered = sorted(fractions, key=lambda f: float("inf") if f is None else f)
    median = ordered[(len(ordered) - 1) // 2]
    return {"median": median, "within_goal": sum(f is not None and f <= goal for f in fractions) / len(fractions),
            "not_reached": sum(f is None for f in fractions) / len(fractions), "tries": len(fractions)}


def replay(method, epochs, budget, histories, seed, replays, folder, tolerance):
    """Fractions of the grid's epochs `method` needed, over `replays` proposal seeds, on one data seed's histories."""
    target = max(max(h) for h in histories.values()) - tolerance
    fractions = []
    for k in range(replays):
        curve, _ = run_method(method, epochs, budget, folder / f"{method.replace('+', '-')}-{seed}-{k}",
                              replay_trainer(histories), {"seed": 10_000 * (seed + 1) + k}, max_runs=4 * len(histories),
                              target=target)
        fractions.append(fraction_needed(curve, target, budget))
    return fractions


@click.command(cls=OneLineErrors, context_settings={"show_default": True})
@click.option("--data-dir", default="data/demo")
@click.option("--image-size", type=int, default=32)
@click.option("--epochs", type=int, default=20, help="Epochs of a full-length run.")
@click.option("--seeds", type=int, default=3)
@click.option("--replays", type=int, default=10, help="Proposal seeds replayed per data seed on the grid's histories.")
@click.option("--tolerance", type=float, default=0.005, help="How close to the grid's best counts as reaching it.")
@click.option("--runs-dir", default="runs/sweep-bench")
@click.option("--cache-dir", default="cache")
@click.option("--out", default="outputs/sweep-bench")
def main(data_dir, image_size, epochs, seeds, replays, tolerance, runs_dir, cache_dir, out):
    """Epochs each sweep method needs to reach the grid's best validation accuracy."""
    if seeds < 1 or epochs < 1 or replays < 0:
        raise UserError("--seeds and --epochs must be >= 1, --replays >= 0")
    runs_dir, out = Path(runs_dir), Path(out)
    if (runs_dir / ".sweep-bench").is_file():  # ours from an earlier call: start the benchmark afresh
        shutil.rmtree(runs_dir)
    runs_dir.mkdir(parents=True, exist_ok=True)
    (runs_dir / ".sweep-bench").write_text("made by bench/sweep_bench.py; removed by its next run\n")
    grid_size = math.prod(len(values) for values in SPACE.values())
    budget = grid_size * epochs
    base = {"data_dir": data_dir, "cache_dir": cache_dir, "wandb": "disabled", "image_size": image_size,
            "batch_size": 32, "runs_dir": str(runs_dir)}
    results, grid_histories, mismatched, replayed = {}, {}, 0, {m: [] for m in REPLAYED}
    for seed in range(seeds):
        data = load_train_val(data_dir, image_size, seed=seed, cache_dir=cache_dir, progress=False)
        mismatched += run_real_methods(seed, data, epochs, budget, runs_dir, {**base, "seed": seed}, grid_size,
                                       tolerance, results, grid_histories)
        for method in REPLAYED if replays else ():
            replayed[method] += replay(method, epochs, budget, grid_histories[seed], seed, replays,
                                       runs_dir / "replays", tolerance)
    table, rows = summary_table(results, replayed, seeds, budget, tolerance, replays)
    plot = plot_curves(results, budget, tolerance, out / "sweep_efficiency.png")
    save_json(out / "sweep_bench.json", {"measured": date.today().isoformat(), "space": SPACE, "epochs": epochs, "budget_epochs": budget, "seeds": seeds,
                                         "replays": replays, "tolerance": tolerance, "image_size": image_size,
                                         "data_dir": data_dir, "early_terminate": default_early_terminate(),
                                         "history_mismatches": mismatched, "table": table,
                                         "curves": {f"{m}/{s}": c for (m, s), c in results.items()}})
    click.echo(f"\nbudget {budget} epochs (the grid's {grid_size} configs x {epochs}); fraction of it each method "
               f"needed to come within {tolerance} of the grid's best (real runs per seed; replays over "
               f"{replays} proposal seeds per data seed):")
    click.echo("| method | real runs, seeds | replayed | best val acc |\n|---|---|---|---|\n" + "\n".join(rows))
    click.echo(f"runs whose history differs from the grid's run of the same config: {mismatched} "
               f"(0: replaying the grid's histories is exact)")
    click.echo(f"wrote {plot}, {out / 'sweep_bench.json'}")


def run_real_methods(seed, data, epochs, budget, runs_dir, options, grid_size, tolerance, results, grid_histories):
    """Train every method of METHODS on one data seed, the grid first (its best is the others' target); fills
    `results` and `grid_histories`, returns how many runs did not reproduce the grid's history of their config."""
    mismatched = 0
    for method in METHODS:
        folder = runs_dir / "sweeps" / f"bench-{method.replace('+', '-')}-{seed}"
        target = None if method == "grid" else results[("grid", seed)][-1][1] - tolerance
        curve, runs = run_method(method, epochs, budget, folder, scratch_trainer(str(runs_dir), data=copy.copy(data)),
                                 options, max_runs=4 * grid_size, target=target)
        results[(method, seed)] = curve
        if method == "grid":
            grid_histories[seed] = {config_key(r["params"]): [h["val_acc"] for h in r["history"]] for r in runs}
        else:
            mismatched += mismatches(runs, grid_histories[seed])
        click.echo(f"seed {seed} {method:<16} {len(curve):3d} epochs, best val acc {curve[-1][1]:.4f}")
    return mismatched


def summary_table(results, replayed, seeds, budget, tolerance, replays):
    """(sweep_bench.json's table, the printed Markdown rows): fractions, replays' summary, best accuracies."""
    table, rows = [], []
    for method in METHODS + tuple(m for m in REPLAYED if m not in METHODS and replays):
        real = method in METHODS
        fractions = [fraction_needed(results[(method, s)], results[("grid", s)][-1][1] - tolerance, budget)
                     for s in range(seeds)] if real else []
        bests = [results[(method, s)][-1][1] for s in range(seeds)] if real else []
        entry = {"method": method, "fraction_of_grid_epochs": fractions, "best_val_acc": bests}
        replay_cell = ""
        if method in replayed and replayed[method]:
            entry["replayed"] = {"fractions": replayed[method], **summarise(replayed[method])}
            r = entry["replayed"]
            replay_cell = (f"median {shown(r['median'])}, ≤ 1/5 in {r['within_goal']:.0%}, not reached in "
                           f"{r['not_reached']:.0%} of {r['tries']}")
        table.append(entry)
        rows.append(f"| {method} | {' / '.join(shown(f) for f in fractions) if real else '(replayed only)'} | "
                    f"{replay_cell} | {' / '.join(f'{b:.3f}' for b in bests)} |")
    return table, rows

if __name__ == "__main__":
    main()
