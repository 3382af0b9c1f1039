"""Looking inside a trained CNN: first-layer filters and feature maps, and guided backpropagation.

Guided backpropagation (Springenberg et al. 2015): at every activation only gradient that is positive and flows
through a positive activation passes, for every activation the model can use (docs/design.md, "Test evaluation and
interpretation"); activations are swapped for guided ones only inside a context manager.
"""
import contextlib
from typing import List

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402
from torch import nn  # noqa: E402

from common.viz import near_square_grid, save  # noqa: E402

ACTIVATION_TYPES = (nn.ReLU, nn.LeakyReLU, nn.GELU, nn.SiLU, nn.Mish, nn.ELU, nn.SELU, nn.Tanh, nn.ReLU6)


class _GuidedFunction(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, activation):
        with torch.enable_grad():
            x_ = x.detach().clone().requires_grad_(True)
            y = activation(x_.clone())  # the clone keeps in-place activations from touching x_
            (derivative,) = torch.autograd.grad(y.sum(), x_)
        ctx.save_for_backward(derivative, (y > 0).to(x.dtype))
        return y.detach()

    @staticmethod
    def backward(ctx, grad_out):
        derivative, positive = ctx.saved_tensors
        return grad_out.clamp(min=0) * derivative * positive, None


class GuidedActivation(nn.Module):
    def __init__(self, activation):
        super().__init__()
        self.activation = activation

    def forward(self, x):
        return _GuidedFunction.apply(x, self.activation)


@contextlib.contextmanager
def guided(model: nn.Module):
    """Within the block, every activation module of `model` follows the guided rule."""
    swapped, wrappers = [], {}
    for module in list(model.modules()):  # a list: the loop must not visit the wrappers it adds
        for name, child in list(module.named_children()):
            if isinstance(child, ACTIVATION_TYPES):
                wrappers[child] = GuidedActivation(child)
                setattr(module, name, wrappers[child])
                swapped.append((module, name, child))
    try:
        yield wrappers  # original activation → its guided wrapper (hook the wrapper, not the original)
    finally:
        for module, name, child in swapped:
            setattr(module, name, child)


def layer_output(model, layer, images):
    """The output of `layer` for `images` (no gradients)."""
    captured = {}
    handle = layer.register_forward_hook(lambda m, i, o: captured.__setitem__("out", o.detach()))
    try:
        with torch.no_grad():
            model(images)
    finally:
        handle.remove()
    return captured["out"]


def channel_maxima(model, layer, images, batch_size=256, prepare=None):
    """N×C: each image's largest `layer` activation per channel, over all positions. `images` may live on the CPU;
    `prepare(chunk)` moves and normalises a chunk (default: as is)."""
    model.eval()
    maxima = []
    for chunk in images.split(batch_size):
        x = prepare(chunk) if prepare is not None else chunk
        maxima.append(layer_output(model, layer, x).flatten(2).amax(2).float().cpu())
    return torch.cat(maxima)


def guided_backprop_batch(model, layer, images, channels, reduce="max"):
    """Guided gradients of K neurons, one per image (K×C×H×W, normalised, on the model's device): neuron k is channel
    `channels[k]` of `layer`'s output for image k. In eval mode the images do not interact (batch norm uses its running
    statistics), so the gradient of the sum of the K targets w.r.t. image k is image k's own map.
    Returns (gradients K×C×H×W on the CPU, activation values [K], positions [(row, col) or None])."""
    if reduce not in ("max", "sum"):
        raise ValueError(f"reduce must be 'max' or 'sum', got {reduce!r}")
    model.eval()
    captured = {}
    x = images.detach().clone().requires_grad_(True)
    rows = torch.arange(len(channels), device=x.device)
    with guided(model) as wrappers:
        handle = wrappers.get(layer, layer).register_forward_hook(lambda m, i, o: captured.__setitem__("out", o))
        try:
            model(x)
        finally:
            handle.remove()
        maps = captured["out"][rows, torch.as_tensor(channels, device=x.device)]  # K×h×w
        if reduce == "max":
            flat = maps.flatten(1).argmax(1)
            targets = maps.flatten(1)[rows, flat]
            positions = [divmod(int(f), maps.shape[2]) for f in flat]
        else:
            targets, positions = maps.flatten(1).sum(1), [None] * len(channels)
        targets.sum().backward()
    return x.grad.detach().cpu(), [float(t) for t in targets.detach()], positions


def gradient_to_image(grad: torch.Tensor) -> torch.Tensor:
    """C×H×W gradient → H×W×C in [0,1]: zero is mid-grey, the largest |value| reaches 0 or 1."""
    scale = grad.abs().max().clamp_min(1e-12)
    return (0.5 + 0.5 * grad / scale).permute(1, 2, 0).clamp(0, 1)


def _normalise_each(tensors):
    flat = tensors.flatten(1)
    low, high = flat.min(1).values, flat.max(1).values
    shape = (-1,) + (1,) * (tensors.dim() - 1)
    return (tensors - low.view(shape)) / (high - low).clamp_min(1e-12).view(shape)


def filter_grid(weights: torch.Tensor, path, title="first-layer filters"):
    """One cell per filter (O×C×k×k), normalised per filter, in a near-square grid. Returns cells drawn."""
    count = weights.shape[0]
    rows, cols = near_square_grid(count)
    images = _normalise_each(weights.detach().float().cpu())
    fig, axes = plt.subplots(rows, cols, figsize=(cols * 1.0 + 0.4, rows * 1.0 + 0.8), squeeze=False)
    drawn = 0
    for i, ax in enumerate(axes.flat):
        ax.set_xticks([])
        ax.set_yticks([])
        if i >= count:
            ax.axis("off")
            continue
        image = images[i].permute(1, 2, 0) if images.shape[1] == 3 else images[i].mean(0)
        ax.imshow(image.numpy(), interpolation="nearest", cmap=None if images.shape[1] == 3 else "gray")
        ax.set_title(str(i), fontsize=7)
        drawn += 1
    fig.suptitle(f"{title} ({count} filters of {weights.shape[2]}x{weights.shape[3]})", fontsize=10)
    save(fig, path)
    return drawn


def feature_map_grid(input_image, maps: torch.Tensor, path, title="first-layer feature maps"):
    """The input image beside one cell per feature map (normalised per map), near-square grid."""
    count = maps.shape[0]
    rows, cols = near_square_grid(count)
    fig = plt.figure(figsize=(cols * 1.1 + 4.5, max(rows * 1.1 + 0.8, 4)))
    grid = fig.add_gridspec(rows, cols + 4)
    ax_in = fig.add_subplot(grid[:, :4])
    ax_in.imshow(input_image)
    ax_in.set_title("input")
    ax_in.axis("off")
    normalised = _normalise_each(maps.detach().float().cpu())
    for i in range(count):
        ax = fig.add_subplot(grid[i // cols, 4 + i % cols])
        ax.imshow(normalised[i].numpy(), cmap="viridis")
        ax.set_xticks([])
        ax.set_yticks([])
        ax.set_title(str(i), fontsize=7)
    fig.suptitle(f"{title} ({count} maps)", fontsize=10)
    save(fig, path, rect=None)  # its grid is laid out by hand
    return count


def guided_grid(rows: List[dict], path, title):
    """10×1 grid: each row the top image for a neuron and its guided-backprop map."""
    fig, axes = plt.subplots(len(rows), 2, figsize=(5.2, 2.5 * len(rows)), squeeze=False)
    for ax_row, row in zip(axes, rows):
        ax_row[0].imshow(row["image"])
        ax_row[0].set_title(f"neuron {row['channel']}: act {row['activation']:.2f}", fontsize=9)
        ax_row[1].imshow(row["map"])
        ax_row[1].set_title(f"guided backprop ({row['label']})", fontsize=9)
        for ax in ax_row:
            ax.axis("off")
    fig.suptitle(title, fontsize=11, fontweight="bold")
    return save(fig, path, rect=(0, 0, 1, 1 - 0.3 / len(rows)))
