"""`make recipe-check`: the default recipe against the seed's best recipe, same code, same data, at 15 and 30 epochs.

    python bench/recipe_check.py --data-dir data/demo --image-size 64 --epochs 15,30

The seed's recipe (the public implementations' best) is SEED_RECIPE; the default is what `partA/train.py` runs
with no options. Both train on the same split (the test folder is never read). Results: docs/measurements.md,
"The default recipe at short and long budgets".
"""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import common  # noqa: E402,F401 (first: without the project's environment it says how to start)

import click

from common.checkpoints import read_record
from common.cli import OneLineErrors
from common.data import load_train_val
from common.io import save_json
from common.recipe import TrainConfig, augmentation_strength
from partA.from_scratch import run_scratch

SEED_RECIPE = dict(filters="16,32,64,128,256", dense_units=256, dropout=0.1, batch_norm=True, activation="gelu",
                   optimizer="adamw", lr=1e-3, weight_decay=0.5, augment=False, label_smoothing=0.0, warmup_epochs=0.0,
                   grad_clip=0.0, batch_size=64)


@click.command(cls=OneLineErrors, context_settings={"show_default": True})
@click.option("--data-dir", default="data/demo")
@click.option("--image-size", type=int, default=64)
@click.option("--epochs", "epochs_list", default="15,30", help="Comma-separated budgets.")
@click.option("--seed", type=int, default=42)
@click.option("--runs-dir", default="runs/recipe-check")
@click.option("--cache-dir", default="cache")
@click.option("--out", default="outputs/recipe-check/recipe_check.json")
def main(data_dir, image_size, epochs_list, seed, runs_dir, cache_dir, out):
    """Train the seed's recipe and the default recipe at each budget; print both accuracies."""
    data = load_train_val(data_dir, image_size, seed=seed, cache_dir=cache_dir, progress=False)
    rows = []
    for epochs in [int(e) for e in epochs_list.split(",")]:
        for name, recipe in (("seed", SEED_RECIPE), ("default", {})):
            run_name = f"{name}-{Path(data_dir).name}-{image_size}px-{epochs}ep-s{seed}"
            record = read_record(Path(runs_dir) / run_name)
            if (record or {}).get("status") != "finished":  # else measured before: not trained again
                record = run_scratch({"image_size": image_size, "epochs": epochs, "seed": seed, "wandb": "disabled",
                                      "quiet": True, "runs_dir": runs_dir, "run_name": run_name, "cache_dir": cache_dir,
                                      **recipe}, data=data)
            last = record["epochs"][-1]
            aug = augmentation_strength(TrainConfig(epochs=epochs)) if name == "default" else 0.0
            rows.append({"recipe": name, "epochs": epochs, "best_val_acc": record["summary"]["best_val_acc"],
                         "final_train_acc": last["train_acc"], "aug_strength": aug, "run": run_name})
            click.echo(f"{epochs:3d} epochs  {name:<8} best val acc {rows[-1]['best_val_acc']:.3f}  "
                       f"(final train acc {last['train_acc']:.3f}, augmentation {aug:g})")
    save_json(out, {"data_dir": data_dir, "image_size": image_size, "seed": seed, "rows": rows})
    click.echo(f"wrote {out}")


if __name__ == "__main__":
    main()
