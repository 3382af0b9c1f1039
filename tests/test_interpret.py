"""Guided backpropagation on hand-built networks with known answers, the guided rule, filter grids."""
import subprocess
import sys

import pytest
import torch
from torch import nn

from common.viz import near_square_grid
from partA.from_scratch import run_scratch
from partA.interpret import GuidedActivation, channel_maxima, filter_grid, guided, guided_backprop_batch

from conftest import ROOT

ACTIVATIONS = [nn.ReLU(), nn.ReLU(inplace=True), nn.LeakyReLU(0.1), nn.GELU(), nn.SiLU(), nn.Mish(), nn.ELU(), nn.SELU(),
               nn.Tanh()]


def guided_backprop(model, layer, image, channel, reduce="max"):
    """One neuron's guided gradient w.r.t. one image (C×H×W): a batch of one."""
    grads, values, positions = guided_backprop_batch(model, layer, image[None], [channel], reduce)
    return grads[0], values[0], positions[0]


def known_network(activation):
    """conv1 (1×1): R − G + 0.5, positive here · conv2 (3×3 of 0.1s): one neuron sees a 3×3 window."""
    conv1, conv2 = nn.Conv2d(3, 1, 1), nn.Conv2d(1, 1, 3, padding=1, bias=False)
    with torch.no_grad():
        conv1.weight.copy_(torch.tensor([1.0, -1.0, 0.0]).view(1, 3, 1, 1))
        conv1.bias.fill_(0.5)  # small values: no activation saturates (tanh)
        conv2.weight.fill_(0.1)
    top = type(activation)() if not isinstance(activation, nn.LeakyReLU) else nn.LeakyReLU(0.1)
    return nn.Sequential(conv1, activation, conv2, top), top


@pytest.mark.parametrize("activation", ACTIVATIONS, ids=lambda a: repr(a))
def test_guided_backprop_is_zero_outside_the_receptive_field_and_signed_inside(activation):
    model, top = known_network(activation)
    image = torch.zeros(3, 16, 16)
    image[0, 7:10, 7:10] = 1.0  # a red patch: the neuron at (8, 8) is the most active
    grad, value, position = guided_backprop(model, top, image, channel=0, reduce="max")
    assert position == (8, 8) and value > 0
    inside = torch.zeros(16, 16, dtype=torch.bool)
    inside[7:10, 7:10] = True
    assert (grad[:, ~inside] == 0).all()
    assert (grad[0, inside] > 0).all() and (grad[1, inside] < 0).all() and (grad[2, inside] == 0).all()


def test_summed_neuron_covers_the_whole_image():
    model, top = known_network(nn.ReLU())
    image = torch.rand(3, 12, 12)
    image[1, :, :6] = 1.0  # left half: R − G + 0.5 < 0 where R < 0.5 — blocked by the guided rule
    image[1, :, 6:] = 0.0  # right half: always positive
    grad, _, position = guided_backprop(model, top, image, channel=0, reduce="sum")
    assert position is None and (grad[0, :, 6:] > 0).all()
    blocked = image[0, :, :6] < 0.5
    assert (grad[0, :, :6][blocked] == 0).all()


@pytest.mark.parametrize("activation", ACTIVATIONS, ids=lambda a: repr(a))
def test_the_guided_rule_for_each_activation(activation):
    torch.manual_seed(0)
    x = torch.randn(2000, requires_grad=True)
    x_before = x.detach().clone()
    grad_out = torch.randn(2000)
    GuidedActivation(activation)(x).backward(grad_out)
    assert torch.equal(x.detach(), x_before)  # in-place activations do not touch the input
    xs = x_before.clone().requires_grad_(True)
    (derivative,) = torch.autograd.grad(type(activation)()(xs).sum() if not isinstance(activation, nn.LeakyReLU)
                                        else activation(xs.clone()).sum(), xs)
    passes = (type(activation)()(x_before) > 0) & (grad_out > 0) if not isinstance(activation, nn.LeakyReLU) \
        else (x_before > 0) & (grad_out > 0)
    expected = torch.where(passes, derivative * grad_out, torch.zeros(()))
    assert torch.allclose(x.grad, expected, atol=1e-6)
    assert (x.grad >= 0).all()


def test_guided_swaps_activations_only_inside_the_block():
    model = nn.Sequential(nn.Conv2d(3, 2, 3), nn.BatchNorm2d(2), nn.GELU(), nn.Sequential(nn.ReLU(inplace=True)))
    with guided(model):
        assert sum(isinstance(m, GuidedActivation) for m in model.modules()) == 2
    assert not any(isinstance(m, GuidedActivation) for m in model.modules())
    assert isinstance(model[2], nn.GELU)


@pytest.mark.parametrize("count, shape", [(16, (4, 4)), (32, (6, 6)), (64, (8, 8)), (100, (10, 10))])
def test_filter_grid_has_one_cell_per_filter(tmp_path, count, shape):
    assert near_square_grid(count) == shape
    assert filter_grid(torch.randn(count, 3, 3, 3), tmp_path / "f.png") == count
    assert (tmp_path / "f.png").stat().st_size > 1000


def test_filters_and_guided_backprop_commands(demo_root, tmp_path):
    run_scratch({"data_dir": str(demo_root), "image_size": 32, "filters": "16,8,8,8,12", "dense_units": 8,
                 "epochs": 1, "runs_dir": str(tmp_path / "runs"), "cache_dir": str(tmp_path / "cache"),
                 "run_name": "viz", "wandb": "disabled", "quiet": True})
    common = ["--run", "viz", "--runs-dir", str(tmp_path / "runs"), "--out", str(tmp_path / "out"),
              "--cache-dir", str(tmp_path / "cache")]
    for script in ("filters.py", "guided_backprop.py"):
        result = subprocess.run([sys.executable, str(ROOT / "partA" / script), *common], capture_output=True,
                                text=True, cwd=ROOT)
        assert result.returncode == 0, result.stderr
    for name in ("filters.png", "feature_maps.png", "guided_backprop.png", "guided_backprop.json"):
        assert (tmp_path / "out/viz" / name).exists()
    bad = subprocess.run([sys.executable, str(ROOT / "partA/guided_backprop.py"), *common, "--neurons", "99"],
                         capture_output=True, text=True, cwd=ROOT)
    assert bad.returncode != 0 and "CONV5 has channels 0..11" in bad.stderr and "Traceback" not in bad.stderr


def test_batched_guided_backprop_equals_one_image_at_a_time():
    """The 10 maps of partA/guided_backprop.py come from one backward pass over 10 images: each must
    equal the map of its image alone (eval mode: batch norm uses running statistics, images do not mix)."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 6, 3, padding=1), nn.BatchNorm2d(6), nn.GELU(), nn.Conv2d(6, 5, 3, padding=1),
                          nn.BatchNorm2d(5), nn.ReLU()).eval()
    for bn in (model[1], model[4]):
        bn.running_mean.uniform_(-0.5, 0.5)
        bn.running_var.uniform_(0.5, 2)
    layer = model[5]
    images, channels = torch.randn(4, 3, 10, 10), [0, 3, 3, 4]
    for reduce in ("max", "sum"):
        grads, values, positions = guided_backprop_batch(model, layer, images, channels, reduce)
        for k in range(4):
            grad, value, position = guided_backprop(model, layer, images[k], channels[k], reduce)
            assert torch.allclose(grads[k], grad, atol=1e-6) and values[k] == pytest.approx(value, rel=1e-5)
            assert positions[k] == position
        assert grads.abs().sum() > 0


def test_channel_maxima_find_each_channels_top_image_in_one_pass():
    torch.manual_seed(1)
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU())
    images = torch.randn(37, 3, 8, 8)
    maxima = channel_maxima(model, model[1], images, batch_size=10)  # 4 chunks, the last one ragged
    with torch.no_grad():
        expected = model(images).flatten(2).amax(2)  # the whole set at once, by hand
    assert maxima.shape == (37, 4) and torch.allclose(maxima, expected)
