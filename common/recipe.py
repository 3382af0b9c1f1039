"""The training recipe in one table — TrainConfig: what a run computes, and the context it runs in — and what the
recipe names: the optimiser, its learning-rate schedule, the augmentation strength by budget."""
import json
import math
from dataclasses import asdict, dataclass, field, fields
from typing import Callable, Optional

import torch
from torch import nn

from common.device import DEVICES, PRECISIONS
from common.errors import UserError
from common.tracking import WANDB_MODES

OPTIMIZERS = ("sgd", "adam", "adamw", "nadam", "radam")
SCHEDULERS = ("cosine", "step", "onecycle", "none")
MAX_IMAGE_SIZE = 2048


def knob(default, help="", choices=None, context=False, flag=True):
    """One field of TrainConfig with everything its command-line option needs (common.cli generates the options
    from these: one declaration per option). `context`: where and how a run executes, not what it computes (free
    to change on resume, never swept); `flag=False`: set by the program, not on the command line."""
    return field(default=default, metadata={"help": help, "choices": choices, "context": context, "flag": flag})


@dataclass
class TrainConfig:
    """How a model is trained, in one table: the recipe (what is computed; defaults are the recommended
    recipe) and the run context. The scripts' options (common.cli), the sweep validator (context keys cannot
    be swept), the resume check (context keys may change) and the run record all read this table."""

    # --- the recipe
    image_size: int = knob(128, "Square input size in pixels.")
    resize_size: Optional[int] = knob(None, "Decode: shorter side to this, then centre-crop image_size.", flag=False)
    val_fraction: float = knob(0.2, "Share of each training class held out for validation.")
    seed: int = knob(42, "Controls split, init and batch order.")
    epochs: int = knob(30)
    batch_size: int = knob(64)
    optimizer: str = knob("adamw", choices=OPTIMIZERS)
    lr: float = knob(2e-3, "Peak learning rate.")
    weight_decay: float = knob(0.05, "Weight decay, never on biases or norm layers: decoupled for adamw/nadam/radam, "
                                     "L2 added to the gradient for sgd and adam.")
    momentum: float = knob(0.9, "SGD Nesterov momentum.")
    scheduler: str = knob("cosine", "cosine = linear warm-up then cosine decay, stepped per iteration.", SCHEDULERS)
    warmup_epochs: float = knob(1.0)
    step_size: int = knob(10, "step scheduler: epochs per decay.")
    gamma: float = knob(0.1, "step scheduler: decay factor.")
    label_smoothing: float = knob(0.1, "Of the training loss (validation loss is plain cross-entropy).")
    grad_clip: float = knob(1.0, "Max gradient norm; 0 = off.")
    augment: bool = knob(True, "Random resized crop, flip, rotation and colour jitter on the device.")
    aug_strength: Optional[float] = knob(None, "0..1 [default: by budget: 0 up to 10 epochs, rising to 1 at 60 (0.1 at "
                                               "15, 0.4 at 30)].")
    precision: str = knob("auto", "auto: bf16 on sm80+ GPUs and bf16 CPUs, fp16+GradScaler on sm70-75, else fp32.",
                          PRECISIONS)
    channels_last: bool = knob(True)
    compile: bool = knob(False, "torch.compile the model.")
    # --- the run context
    data_dir: str = knob("data", "Folder holding inaturalist_12K/{train,val} or nature_12K.zip (downloaded there if "
                                 "absent).", context=True)
    device: str = knob("auto", "auto = the GPU when there is one.", DEVICES, context=True)
    deterministic: bool = knob(False, "Bit-exact GPU runs and resumes: cuDNN/cuBLAS deterministic kernels, no "
                                      "autotuning (slower).", context=True)
    tf32: bool = knob(True, "Allow TF32 tensor cores for fp32 matmuls/convs on sm80+ GPUs.", context=True)
    data_on_device: str = knob("auto", "Keep the uint8 training set on the GPU (auto: if it fits in half the free "
                                       "memory; else batches stream from pinned host memory).", ("auto", "yes", "no"),
                               context=True)
    runs_dir: str = knob("runs", context=True)
    run_name: Optional[str] = knob(None, "Folder name under --runs-dir (default: time + hash).", context=True)
    wandb: str = knob("auto", "auto = online with credentials, else offline (sync later).", WANDB_MODES, context=True)
    wandb_project: str = knob("inat-lab", context=True)
    wandb_group: Optional[str] = knob(None, "The wandb group (a sweep's name).", context=True, flag=False)
    cache_dir: str = knob("cache", "Decoded-image and split cache.", context=True)
    quiet: bool = knob(False, "No progress bars or per-epoch lines.", context=True)

    def __post_init__(self):
        checks = [
            (self.optimizer in OPTIMIZERS, f"unknown optimizer {self.optimizer!r}; choose one of {', '.join(OPTIMIZERS)}"),
            (self.scheduler in SCHEDULERS, f"unknown scheduler {self.scheduler!r}; choose one of {', '.join(SCHEDULERS)}"),
            (self.precision in PRECISIONS, f"unknown precision {self.precision!r}; choose one of {', '.join(PRECISIONS)}"),
            (self.device in DEVICES, f"unknown device {self.device!r}; choose one of {', '.join(DEVICES)}"),
            (self.data_on_device in ("auto", "yes", "no"),
             f"--data-on-device must be auto, yes or no, got {self.data_on_device!r}"),
            (self.lr > 0 and math.isfinite(self.lr), f"learning rate must be a positive number, got {self.lr}"),
            (self.weight_decay >= 0, f"weight decay must be >= 0, got {self.weight_decay}"),
            (self.epochs >= 1, f"epochs must be >= 1, got {self.epochs}"),
            (self.batch_size >= 1, f"batch size must be >= 1, got {self.batch_size}"),
            (8 <= self.image_size <= MAX_IMAGE_SIZE,
             f"image size must be between 8 and {MAX_IMAGE_SIZE} pixels (larger than any iNaturalist photo), "
             f"got {self.image_size}"),
            (0 <= self.momentum < 1, f"momentum must be in [0, 1), got {self.momentum}"),
            (0 <= self.label_smoothing < 1, f"label smoothing must be in [0, 1), got {self.label_smoothing}"),
            (self.grad_clip >= 0, f"gradient clipping must be >= 0 (0 = off), got {self.grad_clip}"),
            (self.aug_strength is None or self.aug_strength >= 0,
             f"augmentation strength must be >= 0, got {self.aug_strength}"),
        ]
        for ok, message in checks:
            if not ok:
                raise UserError(message)

    def to_dict(self):
        return asdict(self)

    def recipe(self):
        return {k: v for k, v in asdict(self).items() if k not in CONTEXT_KEYS}

    def context(self):
        return {k: v for k, v in asdict(self).items() if k in CONTEXT_KEYS}

    @classmethod
    def from_dict(cls, values):
        names = {f.name for f in fields(cls)}
        return cls(**{k: plain_scalar(v) for k, v in values.items() if k in names})


# Augmentation by budget: regularisation a long run needs makes a short one under-fit. Measured on the demo
# data (docs/measurements.md, "The default recipe"): at 15 epochs full-strength augmentation kept training accuracy below
# validation accuracy (0.41 vs 0.44) while weak or no augmentation won; the strength grows with the epochs.
AUG_RAMP_START, AUG_RAMP_EPOCHS = 10, 50


def augmentation_strength(cfg) -> float:
    """--aug-strength, or by budget: 0 up to 10 epochs, then rising linearly to 1 at 60 epochs."""
    if cfg.aug_strength is not None:
        return cfg.aug_strength
    return min(1.0, max(0.0, (cfg.epochs - AUG_RAMP_START) / AUG_RAMP_EPOCHS))


CONTEXT_KEYS = frozenset(f.name for f in fields(TrainConfig) if f.metadata.get("context"))


def weight_decay_groups(model: nn.Module, weight_decay: float, lr_scales: Optional[Callable[[str], float]] = None):
    """Weight decay on weights only: biases and norm parameters (ndim ≤ 1) get none.

    `lr_scales(name)` gives a parameter's learning-rate multiplier (Part B: lower for the backbone).
    """
    groups = {}
    for name, p in model.named_parameters():
        decay = weight_decay if p.ndim > 1 else 0.0
        scale = lr_scales(name) if lr_scales else 1.0
        groups.setdefault((decay, scale), []).append(p)
    return [{"params": ps, "weight_decay": d, "lr_scale": s} for (d, s), ps in groups.items()]


def build_optimizer(name, groups, lr, momentum=0.9):
    for g in groups:
        g["lr"] = lr * g.get("lr_scale", 1.0)
    if name == "sgd":
        return torch.optim.SGD(groups, lr=lr, momentum=momentum, nesterov=momentum > 0)
    if name == "adam":
        return torch.optim.Adam(groups, lr=lr)
    if name == "adamw":
        return torch.optim.AdamW(groups, lr=lr)
    if name == "nadam":
        return torch.optim.NAdam(groups, lr=lr, decoupled_weight_decay=True)
    if name == "radam":
        return torch.optim.RAdam(groups, lr=lr, decoupled_weight_decay=True)
    raise UserError(f"unknown optimizer {name!r}; choose one of {', '.join(OPTIMIZERS)}")


def lr_multiplier(scheduler, step, total_steps, warmup_steps, steps_per_epoch, step_size=10, gamma=0.1):
    """The learning-rate multiplier at optimizer step `step` (stepped every iteration)."""
    if scheduler == "none":
        return 1.0
    if scheduler == "step":
        return gamma ** (step // max(1, step_size * steps_per_epoch))
    if scheduler == "onecycle":  # linear up for 30%, cosine down to ~0
        peak = max(1, int(0.3 * total_steps))
        if step < peak:
            return 0.04 + 0.96 * step / peak
        progress = (step - peak) / max(1, total_steps - peak)
        return 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))
    # cosine with linear warm-up
    if step < warmup_steps:
        return (step + 1) / warmup_steps
    progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
    return 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))


def plain_scalar(value):
    """A numpy (or 0-d tensor) number as the Python number it holds: checkpoints hold plain data only (weights_only
    refuses numpy scalars), and an optimiser copies its lr into its state."""
    if type(value) not in (int, float, bool) and getattr(value, "ndim", None) == 0 and hasattr(value, "item"):
        return value.item()
    return value


def plain_data(obj):
    """JSON-plain copy of `obj`; numpy scalars (a sampler's proposals, a caller's values) become Python numbers."""
    return json.loads(json.dumps(obj, default=lambda v: v.item() if hasattr(v, "item") else str(v)))
