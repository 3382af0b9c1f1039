"""The Part A CNN: options, impossible configs, and closed-form counts vs the real modules."""
import random
import subprocess
import sys

import pytest
import torch

from common.errors import UserError
from common.models import (ACTIVATIONS, CNNConfig, build_model, filters_from_organisation,
                           measure_macs, total_costs)

from conftest import ROOT


def _random_config(rng):
    return CNNConfig(
        filters=[rng.choice([1, 3, 8, 16, 24]) for _ in range(5)],
        kernel_sizes=[rng.choice([1, 2, 3, 5]) for _ in range(5)],
        padding=rng.choice(["same", "valid", 1, 2]),
        activation=rng.choice(list(ACTIVATIONS)),
        batch_norm=rng.random() < 0.5,
        dense_units=rng.choice([4, 16, 33]),
        input_size=(rng.choice([64, 75, 96]), rng.choice([64, 80, 101])),
        num_classes=rng.choice([2, 10, 7]),
    )


def _valid_configs(n, seed=0):
    """n random possible configs (impossible ones, which raise, are skipped)."""
    rng, configs = random.Random(seed), []
    while len(configs) < n:
        try:
            configs.append(_random_config(rng))
        except UserError:
            continue
    return configs


@pytest.mark.parametrize("cfg", _valid_configs(25),
                         ids=lambda c: f"f{c.filters}-k{c.kernel_sizes}-p{c.padding}-bn{int(c.batch_norm)}")
def test_closed_form_counts_match_the_real_model(cfg):
    model = build_model(cfg)
    assert total_costs(cfg) == (sum(p.numel() for p in model.parameters()), measure_macs(model, cfg.input_size))


def test_assignment_case_matches_symbolic_formula():
    m, k, n, h = 16, 3, 256, 224
    cfg = CNNConfig(filters=[m] * 5, kernel_sizes=[k] * 5, batch_norm=False, dense_units=n, input_size=h, num_classes=10)
    params = (3 * k * k * m + m) + 4 * (k * k * m * m + m) + (m * (h // 32) ** 2 * n + n) + (10 * n + 10)
    macs = k * k * m * h * h * 3 + k * k * m * m * h * h * 85 // 256 + m * n * h * h // 1024 + 10 * n
    assert total_costs(cfg) == (params, macs)


def test_model_outputs_one_logit_per_class_for_every_activation():
    for name in ACTIVATIONS:
        model = build_model(CNNConfig(filters=[4] * 5, dense_units=8, input_size=32, num_classes=7, activation=name))
        assert model(torch.randn(2, 3, 32, 32)).shape == (2, 7)


def test_impossible_config_names_the_layer_and_sizes():
    with pytest.raises(UserError, match=r"block 4 \(conv4, kernel 5, padding 0\) turns 4x4 into 0x0"):
        CNNConfig(kernel_sizes=5, padding="valid", input_size=64)


def test_filter_organisations():
    assert filters_from_organisation(32, "same") == [32] * 5
    assert filters_from_organisation(32, "double") == [32, 64, 128, 256, 512]
    assert filters_from_organisation(256, "half") == [256, 128, 64, 32, 16]


@pytest.mark.parametrize("kwargs, message", [
    ({"activation": "swish2"}, "unknown activation"),
    ({"filters": [8, 8]}, "filters needs 1 or 5 values"),
    ({"dropout": 1.5}, "dropout must be in"),
    ({"padding": "wide"}, "padding must be"),
    ({"dropout_where": "head"}, "unknown dropout place"),
])
def test_bad_model_options_are_clear_errors(kwargs, message):
    with pytest.raises(UserError, match=message):
        CNNConfig(**kwargs)


def test_dropout_placement():
    conv = build_model(CNNConfig(filters=[4] * 5, input_size=32, dropout=0.3, dropout_where="conv"))
    dense = build_model(CNNConfig(filters=[4] * 5, input_size=32, dropout=0.3, dropout_where="dense"))
    assert any(isinstance(m, torch.nn.Dropout2d) for m in conv.features.modules())
    assert not any(isinstance(m, torch.nn.Dropout2d) for m in dense.features.modules())
    assert any(isinstance(m, torch.nn.Dropout) and m.p == 0.3 for m in dense.head.modules())


def test_model_info_prints_matching_counts(tmp_path):
    out = subprocess.run([sys.executable, str(ROOT / "partA/model_info.py"), "--filters", "16,32,64,128,256",
                          "--dense-units", "256", "--image-size", "224"], capture_output=True, text=True, check=True).stdout
    assert "3,606,698" in out and "256,100,864" in out and "match" in out
    bad = subprocess.run([sys.executable, str(ROOT / "partA/model_info.py"), "--kernel-sizes", "7", "--image-size", "16"],
                         capture_output=True, text=True)
    assert bad.returncode != 0 and "Traceback" not in bad.stderr and "impossible config" in bad.stderr
