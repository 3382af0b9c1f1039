"""Q4: the first layer's filters, and its feature maps for one test image.

    python partA/filters.py --run <run-name>                 # a seeded random test image
    python partA/filters.py --run <run-name> --image photo.jpg

Writes filters.png and feature_maps.png into --out/<run>/.
"""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import common  # noqa: E402,F401 (first: without the project's environment it says how to start)

import click
import torch

from common.cli import DEVICE_OPTION, OUTPUT_FOLDER, OneLineErrors
from common.device import resolve_device
from common.data import resize_center_crop
from partA.evaluation import load_run_for_inspection
from partA.interpret import feature_map_grid, filter_grid, layer_output
from common.data import read_image
from common.inference import prepare_batch


@click.command(cls=OneLineErrors, context_settings={"show_default": True})
@click.option("--run", default=None, help="Run name or folder [default: the best run].")
@click.option("--runs-dir", default="runs")
@click.option("--sweep", default=None, help="Without --run: the best complete run of this sweep only.")
@click.option("--data-dir", default=None, help="Dataset [default: the run's].")
@click.option("--image", default=None, help="Use this image file instead of a random test image.")
@click.option("--seed", type=int, default=0, help="Chooses the random test image.")
@click.option("--out", type=OUTPUT_FOLDER, default="outputs/interpret")
@click.option("--cache-dir", default="cache")
@DEVICE_OPTION
def main(run, runs_dir, sweep, data_dir, image, seed, out, cache_dir, device):
    """Plot first-layer filters and the feature maps of one image."""
    run_dir, model, ckpt, images = load_run_for_inspection(run, runs_dir, sweep, data_dir, "test", cache_dir)
    cfg = ckpt["train_config"]
    if image:
        picked = resize_center_crop(read_image(image), cfg["image_size"], cfg.get("resize_size"))
        name = Path(image).name
    else:
        index = int(torch.randint(len(images), (1,), generator=torch.Generator().manual_seed(seed)))
        picked, name = images.images[index], images.paths[index]
    first_conv = next(m for m in model.modules() if isinstance(m, torch.nn.Conv2d))
    out_dir = Path(out) / run_dir.name
    count = filter_grid(first_conv.weight, out_dir / "filters.png", title=f"{run_dir.name}: first-layer filters")
    dev = resolve_device(device)
    model.to(dev)
    x = prepare_batch(picked[None].to(dev), ckpt["mean"], ckpt["std"])
    maps = layer_output(model, first_conv, x)[0].cpu()
    feature_map_grid(picked.permute(1, 2, 0).numpy(), maps, out_dir / "feature_maps.png",
                     title=f"conv1 feature maps of {name}")
    click.echo(f"{count} filters -> {out_dir / 'filters.png'}; feature maps of {name} -> {out_dir / 'feature_maps.png'}")


if __name__ == "__main__":
    main()
