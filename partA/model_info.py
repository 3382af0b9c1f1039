"""Q1: parameters and multiply-accumulates of the 5-block CNN, per layer and in total.

    python partA/model_info.py --filters 16,32,64,128,256 --kernel-sizes 3 --dense-units 256 --image-size 224

Closed-form counts (common.models.layer_costs); `--check` compares them with the real model.
"""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import common  # noqa: E402,F401 (first: without the project's environment it says how to start)

import click

from common.cli import OneLineErrors, padding_value
from common.models import ACTIVATIONS, CNNConfig, layer_costs, real_counts, spatial_sizes, total_costs
from partA.from_scratch import split_options

FORMULAS = """\
Symbolic case (Q1): m filters of size k×k in every block, n dense units, input H×W×3, 'same'
padding, 2×2 max-pool after each conv (H_i = floor(H/2^i), W_i = floor(W/2^i)), 10 classes,
conv layers with bias and no batch norm:

  parameters = (3·k²·m + m)                 conv1
             + 4·(k²·m² + m)                conv2..conv5
             + (m·H_5·W_5·n + n)            dense   (H_5·W_5 = H·W/1024 when 32 divides H and W)
             + (10·n + 10)                  classifier

  MACs       = k²·3·m·H·W                           conv1 (output H×W)
             + k²·m²·(H_1W_1 + H_2W_2 + H_3W_3 + H_4W_4)  conv2..conv5
             + m·H_5·W_5·n + 10·n                   dense + classifier
             = k²·m·H·W·(3 + m·85/256) + m·n·H·W/1024 + 10·n   (32 divides H and W)

  (MACs count multiply-adds of convolutions and dense layers; multiply by 2 for FLOPs.
   Batch norm adds 2·m learnable parameters per block and turns the conv bias off.)"""


def _human(n):
    for unit, size in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if n >= size:
            return f"{n / size:.2f}{unit}"
    return str(n)


@click.command(cls=OneLineErrors, context_settings={"show_default": True})
@click.option("--filters", default="16,32,64,128,256", help="Filters per block (or one value for all).")
@click.option("--base-filters", type=int, default=None)
@click.option("--organisation", type=click.Choice(["same", "double", "half"]), default=None)
@click.option("--kernel-sizes", default="3", help="Kernel size for all blocks or per block.")
@click.option("--padding", default="same")
@click.option("--batch-norm/--no-batch-norm", default=False, help="The assignment's case has no batch norm.")
@click.option("--dense-units", type=int, default=256)
@click.option("--image-size", type=int, default=224)
@click.option("--num-classes", type=int, default=10)
@click.option("--activation", type=click.Choice(list(ACTIVATIONS)), default="relu")
@click.option("--check/--no-check", default=True, help="Verify the closed forms against the real model.")
@click.option("--formulas/--no-formulas", default=True, help="Print the symbolic formulas.")
def main(filters, base_filters, organisation, kernel_sizes, padding, batch_norm, dense_units, image_size, num_classes,
         activation, check, formulas):
    """Print per-layer parameter and MAC counts for a config, and the symbolic formulas."""
    model_kwargs, _ = split_options({
        "filters": None if base_filters or organisation else filters, "base_filters": base_filters,
        "organisation": organisation, "kernel_sizes": kernel_sizes, "padding": padding_value(padding),
        "batch_norm": batch_norm, "dense_units": dense_units, "activation": activation,
    })
    cfg = CNNConfig(**model_kwargs, input_size=image_size, num_classes=num_classes)
    sizes = spatial_sizes(cfg)
    click.echo(f"config: filters {cfg.filters}, kernels {cfg.kernel_sizes}, padding {cfg.padding}, "
               f"batch norm {cfg.batch_norm}, dense {cfg.dense_units}, input {image_size}x{image_size}x3, "
               f"{num_classes} classes")
    click.echo(f"{'layer':<12}{'output':>16}{'params':>14}{'MACs':>18}")
    for name, params, macs in layer_costs(cfg):
        if name.startswith("conv"):
            i = int(name[4:]) - 1
            shape = f"{cfg.filters[i]}x{sizes[i][2]}x{sizes[i][3]}"
        elif name.startswith("bn"):
            shape = ""
        else:
            shape = str(cfg.dense_units if name == "dense" else num_classes)
        click.echo(f"{name:<12}{shape:>16}{params:>14,}{macs:>18,}")
    total_params, total_macs = total_costs(cfg)
    click.echo(f"{'total':<12}{'':>16}{total_params:>14,}{total_macs:>18,}   "
               f"({_human(total_params)} params, {_human(total_macs)} MACs = {_human(2 * total_macs)} FLOPs)")
    if check:
        real_params, real_macs = real_counts(cfg)
        ok = real_params == total_params and real_macs == total_macs
        click.echo(f"check against the real model: params {real_params:,}, MACs {real_macs:,} -> "
                   f"{'match' if ok else 'MISMATCH'}")
        if not ok:
            raise SystemExit(1)
    if formulas:
        click.echo("\n" + FORMULAS)


if __name__ == "__main__":
    main()
