"""Q4: guided backpropagation on 10 neurons of the CONV5 layer.

    python partA/guided_backprop.py --run <run-name>
    python partA/guided_backprop.py --run <run-name> --neurons 0,5,9 --reduce sum --source val

A neuron is one channel of CONV5's output (after its activation), taken at its most active position or summed
(--reduce); for each, the image that excites it most and its guided-backprop map (partA/interpret.py).
"""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import common  # noqa: E402,F401 (first: without the project's environment it says how to start)

import click
import torch

from common.errors import UserError
from partA.evaluation import load_run_for_inspection
from common.cli import DEVICE_OPTION, OUTPUT_FOLDER, OneLineErrors
from common.device import resolve_device
from partA.interpret import ACTIVATION_TYPES, channel_maxima, gradient_to_image, guided_backprop_batch, guided_grid
from common.io import save_json
from common.inference import prepare_batch


@click.command(cls=OneLineErrors, context_settings={"show_default": True})
@click.option("--run", default=None, help="Run name or folder [default: the best from-scratch run].")
@click.option("--runs-dir", default="runs")
@click.option("--sweep", default=None, help="Without --run: the best complete run of this sweep only.")
@click.option("--data-dir", default=None)
@click.option("--source", type=click.Choice(["test", "val"]), default="test", help="Where to look for top images.")
@click.option("--neurons", default=None, help="Comma-separated CONV5 channels [default: 10 chosen by --seed].")
@click.option("--count", type=int, default=10)
@click.option("--reduce", type=click.Choice(["max", "sum"]), default="max",
              help="max: the neuron at its most active position; sum: summed over positions.")
@click.option("--seed", type=int, default=0)
@click.option("--out", type=OUTPUT_FOLDER, default="outputs/interpret")
@click.option("--cache-dir", default="cache")
@DEVICE_OPTION
def main(run, runs_dir, sweep, data_dir, source, neurons, count, reduce, seed, out, cache_dir, device):
    """Guided backpropagation from CONV5 neurons to the input image."""
    run_dir, model, ckpt, images = load_run_for_inspection(run, runs_dir, sweep, data_dir, source, cache_dir)
    if ckpt["model_spec"].get("kind") != "cnn":
        raise UserError(f"run {run_dir.name} is not a Part A CNN; guided backprop on CONV5 needs a partA/train.py run")
    layer = next(m for m in model.features[4] if isinstance(m, ACTIVATION_TYPES))  # CONV5: the 5th block's activation
    channels_total = ckpt["model_spec"]["config"]["filters"][4]
    if neurons:
        channels = [int(c) for c in neurons.split(",")]
        bad = [c for c in channels if not 0 <= c < channels_total]
        if bad:
            raise UserError(f"neurons {bad} do not exist: CONV5 has channels 0..{channels_total - 1}")
    else:
        generator = torch.Generator().manual_seed(seed)
        channels = sorted(torch.randperm(channels_total, generator=generator)[:count].tolist())
    dev = resolve_device(device)
    model.to(dev)
    mean, std = torch.tensor(ckpt["mean"], device=dev), torch.tensor(ckpt["std"], device=dev)
    prepare = lambda chunk: prepare_batch(chunk.to(dev, non_blocking=True), mean, std)
    maxima = channel_maxima(model, layer, images.images, prepare=prepare)
    top = [int(maxima[:, c].argmax()) for c in channels]
    grads, activations, positions = guided_backprop_batch(model, layer, prepare(images.images[top]), channels, reduce)
    rows, summary = [], []
    for channel, index, grad, activation, position in zip(channels, top, grads, activations, positions):
        label = ckpt["classes"][int(images.labels[index])]
        rows.append({"channel": channel, "activation": activation, "image": images.images[index].permute(1, 2, 0).numpy(),
                     "map": gradient_to_image(grad).numpy(), "label": label})
        summary.append({"channel": channel, "image": images.paths[index], "class": label, "activation": activation,
                        "position": position})
    out_dir = Path(out) / run_dir.name
    path = guided_grid(rows, out_dir / "guided_backprop.png",
                       title=f"{run_dir.name}: CONV5 neurons ({reduce}), top {source} images")
    save_json(out_dir / "guided_backprop.json", {"reduce": reduce, "source": source, "neurons": summary})
    click.echo(f"guided backprop for CONV5 neurons {channels} -> {path}")


if __name__ == "__main__":
    main()
