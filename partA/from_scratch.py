"""Part A's driver: train the 5-block CNN from a flat dict of options (from the CLI or a sweep).

`split_options` separates model options from training options, `run_scratch` trains a new run
or resumes a stopped one. Both `partA/train.py` and the sweep agents call `run_scratch`, so a
sweep run is exactly a `train.py` run with those options.
"""
from dataclasses import fields

import torch

from common.checkpoints import build_model_from_spec
from common.data import load_train_val
from common.errors import UserError
from common.models import CNNConfig, build_model, filters_from_organisation
from common.resume import as_list, prepare_resume, resume_extra
from common.run_records import data_identity
from common.runs import claimed_run, default_run_name, run_dir_for
from common.recipe import TrainConfig, plain_scalar
from common.training import RunSpec, fit

MODEL_KEYS = {f.name for f in fields(CNNConfig)} | {"base_filters", "organisation"}
TRAIN_KEYS = {f.name for f in fields(TrainConfig)}

def split_options(options: dict):
    """Flat options → (CNNConfig kwargs without input size/classes, TrainConfig)."""
    unknown = set(options) - MODEL_KEYS - TRAIN_KEYS
    if unknown:
        raise UserError(f"unknown option(s): {', '.join(sorted(unknown))}")
    model = {k: plain_scalar(v) for k, v in options.items() if k in MODEL_KEYS and v is not None}
    base, organisation = model.pop("base_filters", None), model.pop("organisation", None)
    if base is not None or organisation is not None:
        if "filters" in model:
            raise UserError("give either --filters or --base-filters/--organisation, not both")
        base = 32 if base is None else int(base)
        if base < 1:
            raise UserError(f"--base-filters must be >= 1, got {base}")
        model["filters"] = filters_from_organisation(base, organisation or "same")
    for key in {"filters", "kernel_sizes"} & set(model):
        model[key] = as_list(model[key])
    for key in ("input_size", "num_classes"):
        model.pop(key, None)
    train = TrainConfig.from_dict({k: v for k, v in options.items() if k in TRAIN_KEYS and v is not None})
    return model, train


def run_scratch(options: dict, should_stop=None, data=None, extra=None):
    """Train a new Part A run; returns its record."""
    model_kwargs, cfg = split_options(options)
    cfg.run_name = cfg.run_name or default_run_name(options)
    # Validate the architecture before any data is read: an impossible config fails at once.
    CNNConfig(**model_kwargs, input_size=cfg.image_size)
    # exclusive: a second run of that name fails here; a start that fails (data) releases it
    with claimed_run(run_dir_for(cfg.runs_dir, cfg.run_name)) as run_dir:
        data = data or load_train_val(cfg.data_dir, cfg.image_size, cfg.val_fraction, cfg.seed, cfg.cache_dir,
                                      progress=not cfg.quiet)
        model_cfg = CNNConfig(**model_kwargs, input_size=cfg.image_size, num_classes=len(data.classes))
        # One seed controls the split (above), the initial weights (here) and the batch order (fit).
        torch.manual_seed(cfg.seed)
        model = build_model(model_cfg)
        state = RunSpec(run_dir=run_dir, model_spec={"kind": "cnn", "config": model_cfg.to_dict()}, classes=data.classes,
                         mean=data.mean, std=data.std,
                         extra={"kind": "scratch", "split_file": str(data.split_file), "dataset": str(data.dataset.root),
                                **data_identity(data),
                                "params": sum(p.numel() for p in model.parameters()),
                                "model_options": {k: options[k] for k in ("base_filters", "organisation")
                                                  if options.get(k) is not None}, **(extra or {})})
        return fit(model, data, cfg, state, should_stop=should_stop)


def resume_scratch(run, overrides: dict, runs_dir="runs", data=None, should_stop=None):
    """Continue a stopped run from its last.pt, exactly where it stopped."""
    run_dir, ckpt, cfg, data, record = prepare_resume(run, overrides, runs_dir, data)
    if ckpt["model_spec"]["kind"] != "cnn":
        raise UserError(f"run {run_dir.name} is a fine-tuning run; resume it with partB/finetune.py --resume")
    model = build_model_from_spec(ckpt["model_spec"], f"run {run_dir.name}'s last.pt")
    state = RunSpec(run_dir=run_dir, model_spec=ckpt["model_spec"], classes=ckpt["classes"], mean=ckpt["mean"],
                     std=ckpt["std"], extra=resume_extra(ckpt, record))
    return fit(model, data, cfg, state, resume_checkpoint=ckpt, should_stop=should_stop)
