"""The Part A model: five conv → activation → max-pool blocks, one dense layer, the class layer.

Everything about the architecture lives in one typed `CNNConfig`. Parameter and
multiply-accumulate (MAC) counts are closed-form functions of that config (`layer_costs`), and
the tests check them against the real modules.
"""
from dataclasses import asdict, dataclass, field
from typing import List, Tuple, Union

import torch
from torch import nn

from common.errors import UserError

NUM_BLOCKS = 5
POOL = 2  # every block ends in a 2×2 max-pool with stride 2 (floor division of the size)

ACTIVATIONS = {
    "relu": nn.ReLU,
    "leaky_relu": lambda: nn.LeakyReLU(0.1),
    "gelu": nn.GELU,
    "silu": nn.SiLU,
    "mish": nn.Mish,
    "elu": nn.ELU,
    "selu": nn.SELU,
    "tanh": nn.Tanh,
}
ORGANISATIONS = ("same", "double", "half")
DROPOUT_PLACES = ("dense", "conv", "both")


def filters_from_organisation(base: int, organisation: str, blocks: int = NUM_BLOCKS) -> List[int]:
    """Filters per block from a base count: same (m,m,..), double (m,2m,4m,..), half (m,m/2,..)."""
    if organisation not in ORGANISATIONS:
        raise UserError(f"unknown filter organisation {organisation!r}; choose one of {', '.join(ORGANISATIONS)}")
    factor = {"same": 1.0, "double": 2.0, "half": 0.5}[organisation]
    return [max(1, int(round(base * factor**i))) for i in range(blocks)]


@dataclass
class CNNConfig:
    filters: List[int] = field(default_factory=lambda: [32, 64, 128, 256, 512])
    kernel_sizes: List[int] = field(default_factory=lambda: [3, 3, 3, 3, 3])
    padding: Union[str, int] = "same"  # "same" (k//2), "valid" (0) or an int
    activation: str = "gelu"
    batch_norm: bool = True
    dropout: float = 0.2
    dropout_where: str = "dense"  # dense | conv | both
    dense_units: int = 512
    input_size: Tuple[int, int] = (128, 128)
    in_channels: int = 3
    num_classes: int = 10

    def __post_init__(self):
        self.filters = [int(f) for f in _per_block(self.filters, "filters")]
        self.kernel_sizes = [int(k) for k in _per_block(self.kernel_sizes, "kernel size")]
        if isinstance(self.input_size, int):
            self.input_size = (self.input_size, self.input_size)
        self.input_size = tuple(int(s) for s in self.input_size)
        if self.activation not in ACTIVATIONS:
            raise UserError(f"unknown activation {self.activation!r}; choose one of {', '.join(ACTIVATIONS)}")
        if self.dropout_where not in DROPOUT_PLACES:
            raise UserError(f"unknown dropout place {self.dropout_where!r}; choose one of {', '.join(DROPOUT_PLACES)}")
        if not 0.0 <= self.dropout < 1.0:
            raise UserError(f"dropout must be in [0, 1), got {self.dropout}")
        if any(f < 1 for f in self.filters) or self.dense_units < 1 or self.num_classes < 2:
            raise UserError("filters and dense units must be >= 1 and classes >= 2")
        if any(k < 1 for k in self.kernel_sizes):
            raise UserError(f"kernel sizes must be >= 1, got {self.kernel_sizes}")
        for k in self.kernel_sizes:
            self.padding_for(k)  # validates the padding option early
        spatial_sizes(self)  # an impossible config fails here, before any training

    def padding_for(self, kernel: int) -> int:
        if self.padding == "same":
            return kernel // 2
        if self.padding == "valid":
            return 0
        try:
            value = int(self.padding)
        except (TypeError, ValueError):
            raise UserError(f"padding must be 'same', 'valid' or a whole number, got {self.padding!r}") from None
        if value < 0:
            raise UserError(f"padding must be >= 0, got {value}")
        if value > kernel - 1:
            raise UserError(f"padding {value} is more than kernel {kernel} - 1: the extra border rows would see only "
                            f"zeros; use 'same' ({kernel // 2}) or at most {kernel - 1}")
        return value

    def to_dict(self):
        return asdict(self)


def _per_block(values, what):
    if isinstance(values, int):
        return [values] * NUM_BLOCKS
    values = list(values)
    if len(values) == 1:
        return values * NUM_BLOCKS
    if len(values) != NUM_BLOCKS:
        raise UserError(f"{what} needs 1 or {NUM_BLOCKS} values (one per block), got {len(values)}: {values}")
    return values


def spatial_sizes(cfg: CNNConfig):
    """[(H_in, W_in, H_conv, W_conv, H_pool, W_pool)] per block; raises if a size reaches 0."""
    h, w = cfg.input_size
    sizes = []
    for i, k in enumerate(cfg.kernel_sizes):
        p = cfg.padding_for(k)
        hc, wc = h + 2 * p - k + 1, w + 2 * p - k + 1
        hp, wp = hc // POOL, wc // POOL
        if min(hc, wc, hp, wp) < 1:
            raise UserError(
                f"impossible config: block {i + 1} (conv{i + 1}, kernel {k}, padding {p}) turns "
                f"{h}x{w} into {hc}x{wc} and pools it to {hp}x{wp}; use a larger input size, "
                f"'same' padding or smaller kernels"
            )
        sizes.append((h, w, hc, wc, hp, wp))
        h, w = hp, wp
    return sizes


def layer_costs(cfg: CNNConfig):
    """Closed-form (name, params, MACs) per layer.

    Conv: params = k²·C_in·C_out (+ C_out bias when there is no batch norm; with batch norm
    the conv has no bias and BN adds 2·C_out learnable parameters); MACs = H_out·W_out·k²·C_in·C_out.
    Dense: params = in·out + out; MACs = in·out. Activations, pooling and BN are not counted
    as MACs (they are elementwise and negligible next to convolutions).
    """
    rows = []
    c_in = cfg.in_channels
    sizes = spatial_sizes(cfg)
    for i, (k, c_out, s) in enumerate(zip(cfg.kernel_sizes, cfg.filters, sizes)):
        _, _, hc, wc, _, _ = s
        params = k * k * c_in * c_out + (0 if cfg.batch_norm else c_out)
        rows.append((f"conv{i + 1}", params, hc * wc * k * k * c_in * c_out))
        if cfg.batch_norm:
            rows.append((f"bn{i + 1}", 2 * c_out, 0))
        c_in = c_out
    h5, w5 = sizes[-1][4], sizes[-1][5]
    flat = c_in * h5 * w5
    rows.append(("dense", flat * cfg.dense_units + cfg.dense_units, flat * cfg.dense_units))
    rows.append(("classifier", cfg.dense_units * cfg.num_classes + cfg.num_classes, cfg.dense_units * cfg.num_classes))
    return rows


def total_costs(cfg: CNNConfig):
    """(parameters, MACs) of the whole model, from the closed forms."""
    costs = layer_costs(cfg)
    return sum(c[1] for c in costs), sum(c[2] for c in costs)


class SmallCNN(nn.Module):
    """conv→[BN]→act→pool ×5 → flatten → [dropout] → dense → act → [dropout] → classifier."""

    def __init__(self, cfg: CNNConfig):
        super().__init__()
        self.cfg = cfg
        act = ACTIVATIONS[cfg.activation]
        conv_dropout = cfg.dropout if cfg.dropout_where in ("conv", "both") else 0.0
        dense_dropout = cfg.dropout if cfg.dropout_where in ("dense", "both") else 0.0
        blocks = []
        c_in = cfg.in_channels
        for k, c_out in zip(cfg.kernel_sizes, cfg.filters):
            layers = [nn.Conv2d(c_in, c_out, k, padding=cfg.padding_for(k), bias=not cfg.batch_norm)]
            if cfg.batch_norm:
                layers.append(nn.BatchNorm2d(c_out))
            layers += [act(), nn.MaxPool2d(POOL)]
            if conv_dropout:
                layers.append(nn.Dropout2d(conv_dropout))
            blocks.append(nn.Sequential(*layers))
            c_in = c_out
        self.features = nn.Sequential(*blocks)
        h5, w5 = spatial_sizes(cfg)[-1][4:]
        self.head = nn.Sequential(
            nn.Flatten(),
            nn.Dropout(dense_dropout),
            nn.Linear(c_in * h5 * w5, cfg.dense_units),
            act(),
            nn.Dropout(dense_dropout),
            nn.Linear(cfg.dense_units, cfg.num_classes),
        )

    def forward(self, x):
        return self.head(self.features(x))


def build_model(cfg: CNNConfig) -> SmallCNN:
    return SmallCNN(cfg)


def real_counts(cfg: CNNConfig):
    """(parameters, MACs) of the model actually built from `cfg`: what the closed forms are checked against."""
    model = build_model(cfg)
    return sum(p.numel() for p in model.parameters()), measure_macs(model, cfg.input_size)


def measure_macs(model: nn.Module, input_size, in_channels=3) -> int:
    """Count MACs of Conv2d and Linear modules with forward hooks (independent of layer_costs)."""
    total = 0

    def hook(module, inputs, output):
        nonlocal total
        if isinstance(module, nn.Conv2d):
            kh, kw = module.kernel_size
            per_output = kh * kw * module.in_channels // module.groups
            total += output[0].numel() * per_output
        elif isinstance(module, nn.Linear):
            total += module.in_features * module.out_features

    handles = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    was_training = model.training
    model.eval()
    with torch.no_grad():
        model(torch.zeros(1, in_channels, *input_size))
    model.train(was_training)
    for h in handles:
        h.remove()
    return total
