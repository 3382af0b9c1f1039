"""Device, precision and data-placement decisions, with the device's capability mocked."""
import pytest
import torch

import common.device as device
from common.device import auto_precision, configure_backends, cpu_has_bf16, data_fits_on_device, resolve_precision
from common.errors import UserError
from common.training import BatchSource


@pytest.mark.parametrize("card, capability, expected", [
    ("H100/H200", (9, 0), "bf16"),
    ("A100", (8, 0), "bf16"),
    ("RTX 3090 / A10", (8, 6), "bf16"),
    ("T4 (bf16 only emulated)", (7, 5), "fp16"),
    ("V100", (7, 0), "fp16"),
    ("P100", (6, 0), "off"),
    ("K80", (3, 7), "off"),
])
def test_auto_precision_follows_the_cards_real_capability(card, capability, expected):
    assert auto_precision("cuda", capability) == expected, card


def test_auto_precision_on_cpus():
    assert auto_precision("cpu", cpu_bf16=True) == "bf16"
    assert auto_precision("cpu", cpu_bf16=False) == "off"
    assert cpu_has_bf16("flags : fpu avx512f avx512_bf16") and cpu_has_bf16("flags : amx_bf16 amx_tile")
    assert not cpu_has_bf16("flags : fpu avx2 avx512f")


def test_resolve_precision_asks_the_device_not_is_bf16_supported(monkeypatch):
    # torch.cuda.is_bf16_supported() is True on a T4 (emulated); the resolver must not follow it
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)
    monkeypatch.setattr(device, "cuda_capability", lambda dev: (7, 5))
    assert resolve_precision("auto", torch.device("cuda")) == "fp16"
    monkeypatch.setattr(device, "cuda_capability", lambda dev: (9, 0))
    assert resolve_precision("auto", torch.device("cuda")) == "bf16"
    assert resolve_precision("off", torch.device("cuda")) == "off"  # an explicit choice wins
    with pytest.raises(UserError, match="fp16 autocast needs a CUDA device"):
        resolve_precision("fp16", torch.device("cpu"))


GiB = 2 ** 30


@pytest.mark.parametrize("policy, nbytes, free, expected", [
    ("auto", 1 * GiB, 70 * GiB, True),      # iNaturalist at 128 px (~0.5 GB) on any modern card
    ("auto", 4.4 * GiB, 14 * GiB, True),     # Part B at 384 px on a T4 with 14 GiB free: 31 % of free
    ("auto", 4.4 * GiB, 6 * GiB, False),     # same set, 6 GiB free: over half → stream from pinned memory
    ("no", 1 * GiB, 70 * GiB, False),
    ("yes", 4.4 * GiB, 6 * GiB, True),       # the user's call, it fits at all
])
def test_data_on_device_decision(policy, nbytes, free, expected):
    assert data_fits_on_device(policy, torch.device("cuda"), int(nbytes), int(free)) is expected


def test_data_on_device_never_on_the_cpu_and_yes_that_cannot_fit_is_an_error():
    assert data_fits_on_device("yes", torch.device("cpu"), 10, 0) is False
    with pytest.raises(UserError, match="needs 8.0 GiB but the GPU has 2.0 GiB free"):
        data_fits_on_device("yes", torch.device("cuda"), 8 * GiB, 2 * GiB)


def test_deterministic_mode_sets_and_unsets_the_global_switches():
    try:
        info = configure_backends(torch.device("cpu"), deterministic=True)
        assert info["deterministic"] and torch.are_deterministic_algorithms_enabled()
        assert torch.backends.cudnn.deterministic and not torch.backends.cudnn.benchmark
        info = configure_backends(torch.device("cpu"), deterministic=False)
        assert not torch.are_deterministic_algorithms_enabled() and not info["tf32"]  # no TF32 on a CPU
    finally:
        configure_backends(torch.device("cpu"), deterministic=False)


def test_training_batches_come_from_the_same_indices_wherever_the_set_lives():
    images = torch.arange(5 * 3 * 2 * 2, dtype=torch.uint8).view(5, 3, 2, 2)
    labels = torch.tensor([4, 3, 2, 1, 0])
    source = BatchSource(images, labels, torch.device("cpu"), on_device=False)
    order = source.order(torch.tensor([3, 0, 4]))
    got_images, got_labels = source.batch(order[:2])
    assert torch.equal(got_images, images[[3, 0]]) and got_labels.tolist() == [1, 4]


@pytest.mark.gpu
def test_streamed_batches_equal_batches_from_a_set_on_the_gpu():
    images = torch.randint(0, 255, (64, 3, 8, 8), dtype=torch.uint8)
    labels = torch.arange(64) % 10
    cuda = torch.device("cuda")
    resident, streamed = BatchSource(images, labels, cuda, True), BatchSource(images, labels, cuda, False)
    assert streamed.streaming and not resident.streaming
    order = torch.randperm(64, generator=torch.Generator().manual_seed(0))
    for chunk in order.split(16):
        a, b = resident.batch(resident.order(chunk)), streamed.batch(streamed.order(chunk))
        assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
