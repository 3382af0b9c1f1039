"""Test evaluation (`make test-eval`): the only command that opens the TEST folder.

    python partA/evaluate.py --run <run-name> --data-dir data
    python partA/evaluate.py                      # the best run (highest validation accuracy)

Writes test_summary.json, confusion_matrix.png and test_grid.png (docs/design.md, "Test evaluation and interpretation").
"""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import common  # noqa: E402,F401 (first: without the project's environment it says how to start)

import click

from common.checkpoints import resolve_run_dir
from common.cli import DEVICE_OPTION, OUTPUT_FOLDER, OneLineErrors
from partA.evaluation import evaluate_on_test
from common.run_records import best_run


@click.command(cls=OneLineErrors, context_settings={"show_default": True})
@click.option("--run", default=None, help="Run name or folder [default: the best run of --kind by validation accuracy].")
@click.option("--runs-dir", default="runs")
@click.option("--sweep", default=None, help="Without --run: the best complete run of this sweep only.")
@click.option("--kind", type=click.Choice(["scratch", "finetune", "any"]), default="scratch",
              help="Without --run: the best run of this kind (Part A's command: from-scratch runs).")
@click.option("--data-dir", default=None, help="Dataset folder [default: the one the run was trained on].")
@click.option("--out", type=OUTPUT_FOLDER, default="outputs/test-eval",
              help="Folder for the PNGs and JSON (a sub-folder per run).")
@click.option("--seed", type=int, default=0, help="Chooses the grid's images.")
@click.option("--per-class", type=click.IntRange(min=1), default=3, help="Grid images per class.")
@DEVICE_OPTION
@click.option("--cache-dir", default="cache")
def main(run, runs_dir, sweep, kind, data_dir, out, seed, per_class, device, cache_dir):
    """Evaluate a run's best checkpoint on the test set."""
    run_dir = resolve_run_dir(run, runs_dir) if run else best_run(runs_dir, kind=None if kind == "any" else kind, sweep=sweep)
    summary = evaluate_on_test(run_dir, data_dir, Path(out) / run_dir.name, seed, per_class, device, cache_dir)
    click.echo(f"run {summary['run']} (epoch {summary['epoch']}, val acc {summary['best_val_acc']:.4f}): "
               f"TEST accuracy {summary['test_acc']:.4f} on {summary['test_images']} images")
    for name, acc in summary["per_class_acc"].items():
        click.echo(f"  {name:<14} {acc:.3f}")
    click.echo(f"wrote {Path(out) / run_dir.name}/test_summary.json, {summary['grid']}, {summary['confusion_plot']}")


if __name__ == "__main__":
    main()
