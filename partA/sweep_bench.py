"""`make sweep-bench`: how many epochs does the project's sweep need to find the grid's best config?

    python partA/sweep_bench.py --data-dir data/demo --image-size 32 --seeds 3

On one small search space (3 learning rates × 2 filter organisations × 2 dropout values = 12
configs, fixed epochs) three methods run through the real local sweep controller and the real
trainer, each with the same total budget of epochs as the full grid:
- grid: every config, full length (the reference: its best validation accuracy is the target);
- random: configs drawn at random, full length;
- bayes + hyperband: the project's default method settings (partA/sweep.yaml: bayes, hyperband
  min_iter 3 and eta 2 — here scaled to the benchmark's epochs).
Random and bayes are repeated over --seeds (their proposals and the runs' initialisation change;
the grid is trained once per seed too). The report: best validation accuracy against epochs spent
(a plot) and the fraction of the grid's epochs each method needed to come within --tolerance of
the grid's best (a table, and sweep_bench.json).
"""
import copy
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import click

from common.cli import OneLineErrors
from common.errors import UserError

SPACE = {"lr": [0.001, 0.003, 0.009], "organisation": ["same", "double"], "dropout": [0.0, 0.3]}


def method_config(method, epochs):
    """The sweep YAML of one method over SPACE (fixed architecture and epochs)."""
    parameters = {
        "lr": {"values": SPACE["lr"]}, "organisation": {"values": SPACE["organisation"]},
        "dropout": {"values": SPACE["dropout"]}, "base_filters": {"value": 16}, "dense_units": {"value": 64},
        "epochs": {"value": epochs},
    }
    config = {"method": "grid" if method == "grid" else method.split("+")[0],
              "metric": {"name": "val_acc", "goal": "maximize"}, "parameters": parameters}
    if method == "bayes+hyperband":
        # the default sweep's hyperband (min_iter 3, eta 2 with 15 epochs: rungs at 3, 6, 12), scaled to `epochs`
        config["early_terminate"] = {"type": "hyperband", "min_iter": max(1, round(3 * epochs / 15)), "eta": 2}
    return config


def run_method(method, epochs, budget_epochs, data, base, runs_dir, seed, max_runs):
    """Run one method until it has spent `budget_epochs`; returns [(epochs spent, best val acc so far)]."""
    from common.sweep import LocalSweep, run_agent, scratch_trainer

    folder = Path(runs_dir) / "sweeps" / f"bench-{method.replace('+', '-')}-{seed}"
    sweep = LocalSweep.create_or_open(folder, method_config(method, epochs), {**base, "seed": seed}, log=lambda *_: None)
    train = scratch_trainer(str(runs_dir), data=data)
    curve, spent, best = [], 0, 0.0
    while spent < budget_epochs and len(sweep.runs()) < max_runs:
        before = len(sweep.runs())
        run_agent(sweep, before + 1, str(runs_dir), train=train, log=lambda *_: None)
        runs = sorted(sweep.runs(), key=lambda r: r["created"])
        if len(runs) == before:  # a finished grid
            break
        for epoch in runs[-1]["history"]:  # the epochs this run spent, one by one
            spent += 1
            best = max(best, epoch["val_acc"])
            curve.append((spent, best))
    return curve


def epochs_to_reach(curve, target):
    return next((spent for spent, best in curve if best >= target), None)


def plot_curves(results, grid_best, tolerance, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from common.viz import save

    colours = {"grid": "#444444", "random": "#1b9e77", "bayes+hyperband": "#d95f02"}
    fig, ax = plt.subplots(figsize=(8, 4.5))
    for (method, seed), curve in results.items():
        xs, ys = zip(*curve)
        ax.step(xs, ys, where="post", color=colours[method], alpha=0.8, lw=1.5,
                label=method if seed == min(s for m, s in results if m == method) else None)
    ax.axhline(grid_best - tolerance, color="black", ls=":", lw=1, label=f"grid best (mean over seeds) − {tolerance:g}")
    ax.set(xlabel="epochs spent", ylabel="best validation accuracy so far",
           title="sweep efficiency: best validation accuracy vs epochs spent (one line per seed)")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    return save(fig, path)


@click.command(cls=OneLineErrors, context_settings={"show_default": True})
@click.option("--data-dir", default="data/demo")
@click.option("--image-size", type=int, default=32)
@click.option("--epochs", type=int, default=8, help="Epochs of a full-length run.")
@click.option("--seeds", type=int, default=3)
@click.option("--tolerance", type=float, default=0.005, help="How close to the grid's best counts as reaching it.")
@click.option("--runs-dir", default="runs/sweep-bench")
@click.option("--cache-dir", default="cache")
@click.option("--out", default="outputs/sweep-bench")
def main(data_dir, image_size, epochs, seeds, tolerance, runs_dir, cache_dir, out):
    """Epochs each sweep method needs to reach the grid's best validation accuracy."""
    import shutil

    from common.data import load_train_val
    from common.io import save_json

    if seeds < 1 or epochs < 1:
        raise UserError("--seeds and --epochs must be >= 1")
    runs_dir, out = Path(runs_dir), Path(out)
    if (runs_dir / ".sweep-bench").is_file():  # ours from an earlier call: start the benchmark afresh
        shutil.rmtree(runs_dir)
    runs_dir.mkdir(parents=True, exist_ok=True)
    (runs_dir / ".sweep-bench").write_text("made by partA/sweep_bench.py; removed by its next run\n")
    grid_size = len(SPACE["lr"]) * len(SPACE["organisation"]) * len(SPACE["dropout"])
    budget = grid_size * epochs
    base = {"data_dir": data_dir, "cache_dir": cache_dir, "wandb": "disabled", "image_size": image_size,
            "batch_size": 32}
    results, rows = {}, []
    for seed in range(seeds):
        data = load_train_val(data_dir, image_size, seed=seed, cache_dir=cache_dir, progress=False)
        for method in ("grid", "random", "bayes+hyperband"):
            curve = run_method(method, epochs, budget, copy.copy(data), base, runs_dir, seed, max_runs=4 * grid_size)
            results[(method, seed)] = curve
            click.echo(f"seed {seed} {method:<16} {len(curve):3d} epochs, best val acc {curve[-1][1]:.4f}")
    table = []
    for method in ("grid", "random", "bayes+hyperband"):
        fractions, bests = [], []
        for seed in range(seeds):
            target = results[("grid", seed)][-1][1] - tolerance
            reached = epochs_to_reach(results[(method, seed)], target)
            fractions.append(None if reached is None else reached / budget)
            bests.append(results[(method, seed)][-1][1])
        table.append({"method": method, "fraction_of_grid_epochs": fractions, "best_val_acc": bests})
        shown = ", ".join("not reached" if f is None else f"{f:.2f}" for f in fractions)
        rows.append(f"| {method} | {shown} | {', '.join(f'{b:.3f}' for b in bests)} |")
    grid_best = sum(results[("grid", s)][-1][1] for s in range(seeds)) / seeds
    plot = plot_curves(results, grid_best, tolerance, out / "sweep_efficiency.png")
    save_json(out / "sweep_bench.json", {"space": SPACE, "epochs": epochs, "budget_epochs": budget, "seeds": seeds,
                                         "tolerance": tolerance, "image_size": image_size, "data_dir": data_dir,
                                         "table": table, "curves": {f"{m}/{s}": c for (m, s), c in results.items()}})
    click.echo(f"\nbudget {budget} epochs (the grid's {grid_size} configs x {epochs}); fraction of it each method "
               f"needed to come within {tolerance} of the grid's best, per seed:")
    click.echo("| method | fraction of grid epochs | best val acc |\n|---|---|---|\n" + "\n".join(rows))
    click.echo(f"wrote {plot}, {out / 'sweep_bench.json'}")


if __name__ == "__main__":
    main()
