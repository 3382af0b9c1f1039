"""Part B: fine-tune a pretrained model with a freezing strategy, on the shared training loop.

Details: docs/design.md, "Part B in detail".
"""
import copy
import hashlib
import json
import time
import warnings
from dataclasses import replace
from pathlib import Path

import torch
from torch import nn
from tqdm import tqdm

from common.data import load_train_val
from common.device import resolve_device
from common.errors import UserError, describe
from common.inference import prepare_batch
from common.io import is_sealed, save_json, save_torch, seal
from common.pretrained import (apply_freeze, build_pretrained, frozen_modules_to_eval, head_paths, model_stages,
                               parameter_groups, preprocess_for)
from common.run_records import data_identity
from common.runs import claimed_run, default_run_name, run_dir_for
from common.resume import prepare_resume, resume_extra
from common.state import read_output
from common.recipe import TrainConfig, weight_decay_groups
from common.training import RunSpec, fit

FINETUNE_KEYS = ("model", "weights", "freeze", "k", "backbone_lr_scale", "unfreeze_every", "feature_cache")


# Part B's recipe: what differs from Part A's training defaults (short runs from a strong start).
FINETUNE_RECIPE = {"epochs": 10, "lr": 1e-3, "weight_decay": 0.01, "label_smoothing": 0.1}


def head_block(model):
    """(paths, module) of what the feature-cache path trains: the class layer together with the parameter-free
    modules just before it in its Sequential — EfficientNet's and MobileNet's Dropout, ConvNeXt's Flatten — so it
    trains exactly what the normal path trains (the features are those modules' input)."""
    path = head_paths(model)[0]
    parent_path, _, last = path.rpartition(".")
    parent = model.get_submodule(parent_path)
    if not isinstance(parent, nn.Sequential):
        return [path], model.get_submodule(path)
    names, children = zip(*parent.named_children())
    end = names.index(last)
    start = end
    while start > 0 and not list(children[start - 1].parameters()):
        start -= 1
    return [f"{parent_path}.{n}" for n in names[start:end + 1]], nn.Sequential(*children[start:end + 1])


@torch.no_grad()
def backbone_features(model, images, mean, std, device, batch_size=64, progress=False):
    """The input of the head block (`head_block`) for every image (float32, on the CPU)."""
    paths, _ = head_block(model)
    kept = [model.get_submodule(path) for path in paths]
    for path in paths:
        model.set_submodule(path, torch.nn.Identity())
    model.eval().to(device)
    try:
        chunks = [model(prepare_batch(chunk.to(device), mean, std)).float().cpu()
                  for chunk in tqdm(images.split(batch_size), desc="backbone features", disable=not progress, mininterval=1)]
    finally:
        for path, module in zip(paths, kept):
            model.set_submodule(path, module)
    return torch.cat(chunks)


def feature_data(model, data, name, weights_source, mean, std, cfg):
    """TrainValData whose 'images' are cached backbone features (cache/features/…)."""
    what = ["head-block input", name, str(weights_source), cfg.image_size, cfg.resize_size, data.train.paths,
            data.val.paths, data.content_digest]
    key = hashlib.sha1(json.dumps(what).encode()).hexdigest()[:16]
    path = Path(cfg.cache_dir) / "features" / f"{name}-{key}.pt"
    timing = path.with_suffix(".json")  # how long the pass took when it ran: part of the run's training time
    cached = cached_features(path, timing, len(data.train), len(data.val))
    if cached is not None:
        train_x, val_x, seconds = cached
    else:
        device = resolve_device(cfg.device)
        started = time.perf_counter()
        train_x = backbone_features(model, data.train.images, mean, std, device, progress=not cfg.quiet)
        val_x = backbone_features(model, data.val.images, mean, std, device, progress=not cfg.quiet)
        seconds = round(time.perf_counter() - started, 2)
        save_torch(path, (train_x, val_x))
        save_json(timing, {"seconds": seconds, "device": str(device)})
        seal([path, timing], path.with_suffix(".sha256"))
    out = copy.copy(data)
    out.train, out.val = copy.copy(data.train), copy.copy(data.val)
    out.train.images, out.val.images = train_x, val_x
    return out, seconds


def cached_features(path, timing, train_count, val_count):
    """(train features, val features, seconds the pass took) from the feature cache, or None when there is none or
    it is not what was written (its digest) or not the shape it should be — then it is computed again."""
    if not path.exists():
        return None
    if not is_sealed([path, timing], path.with_suffix(".sha256")):
        warnings.warn(f"feature cache {path} does not match its digest (damaged, or written by an older version); "
                      f"computing it again")
        return None
    try:
        train_x, val_x = torch.load(path, weights_only=True)
        seconds = float(read_output(timing)["seconds"])
        if len(train_x) != train_count or len(val_x) != val_count or train_x.shape[1:] != val_x.shape[1:]:
            raise ValueError("not the shape of these images' features")
    except Exception as err:  # sealed but unreadable: another torch's format, or a writer's bug
        warnings.warn(f"feature cache {path} cannot be used ({describe(err)}); computing it again")
        return None
    return train_x, val_x, seconds


def freezing_costs(name, num_classes):
    """[{strategy, trains, trainable, total, cost}] for each --freeze strategy on model `name` (Part B Q2's table):
    trainable parameters counted on the real network (no weights needed to count)."""
    model, _ = build_pretrained(name, weights="none", num_classes=num_classes, progress=False)
    k = max(1, len(model_stages(model, name)) // 2)
    described = [
        ("all-but-last", {}, "the new class layer only",
         "one backbone forward pass over the data in all (features cached when there is no augmentation), then the "
         "head alone: the cheapest"),
        ("first-k", {"k": k}, f"stages {k} and up, and the head (--k {k}: the first {k} stages frozen)",
         "forward through everything, backward through the unfrozen stages only"),
        ("gradual", {"unfrozen_stages": 0}, "the head first, then one more stage from the top every --unfreeze-every "
                                            "epochs (the count shown is the first epoch's)",
         "grows from the head's cost to full fine-tuning's"),
        ("none", {}, "every layer, the backbone at --backbone-lr-scale × the learning rate",
         "forward and backward through everything: the most costly, with the most weights to fit from the data"),
    ]
    rows = []
    for strategy, extra, trains, cost in described:
        trainable, total, _ = apply_freeze(model, name, strategy, **extra)
        rows.append({"strategy": strategy, "trains": trains, "trainable": trainable, "total": total, "cost": cost})
    return rows


def freeze_hook(name, strategy, k, unfreeze_every, num_stages, quiet):
    """on_epoch_start: (re)apply the strategy — gradual unfreezes one more stage every N epochs."""
    def hook(epoch, model):
        unfrozen = min(num_stages, epoch // max(1, unfreeze_every)) if strategy == "gradual" else 0
        trainable, total, _ = apply_freeze(model, name, strategy, k, unfrozen)
        frozen_modules_to_eval(model)
        if strategy == "gradual" and not quiet:
            print(f"epoch {epoch + 1}: head + top {unfrozen}/{num_stages} stages trainable "
                  f"({trainable:,} of {total:,} parameters)", flush=True)

    return hook


def lr_scales(model, name, strategy, backbone_lr_scale):
    """Backbone parameters learn at backbone_lr_scale × lr under none/gradual; the head at lr."""
    owner, _ = parameter_groups(model, name)
    scale = backbone_lr_scale if strategy in ("none", "gradual") else 1.0
    return lambda param_name: 1.0 if owner[param_name] == "head" else scale


def run_finetune(options: dict, data=None):
    """Train a new fine-tuning run from flat options; returns its record."""
    given = {k: options.pop(k) for k in FINETUNE_KEYS if k in options}
    finetune, feature_cache_requested = finetune_settings(given)
    name, strategy, k = finetune["model"], finetune["freeze"], finetune["k"]
    cfg, preprocess, num_stages = finetune_config(options, name, finetune["weights"], strategy, k)
    cfg.run_name = cfg.run_name or default_run_name({**options, **given}, kind=f"ft-{name}")
    # exclusive: a second run of that name fails here; a start that fails (data, weights) releases it
    with claimed_run(run_dir_for(cfg.runs_dir, cfg.run_name)) as run_dir:
        data = data or load_train_val(cfg.data_dir, cfg.image_size, cfg.val_fraction, cfg.seed, cfg.cache_dir,
                                      progress=not cfg.quiet, resize=cfg.resize_size)
        torch.manual_seed(cfg.seed)  # the new head's initialisation
        model, info = build_pretrained(name, finetune["weights"], num_classes=len(data.classes), progress=not cfg.quiet)
        hook = freeze_hook(name, strategy, k, finetune["unfreeze_every"], num_stages, cfg.quiet)
        hook(0, model)
        trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
        if not cfg.quiet:
            print_stages(model, name, strategy, k)
        spec = {"kind": "pretrained", "name": name, "num_classes": len(data.classes)}
        # a frozen backbone without augmentation computes the same features every epoch: do it once
        use_features = feature_cache_requested and strategy == "all-but-last" and not cfg.augment
        finetune.update({"weights_source": info["weights_source"], "stages": num_stages, "feature_cache": use_features})
        state = RunSpec(run_dir=run_dir, model_spec=spec, classes=data.classes, mean=preprocess["mean"],
                         std=preprocess["std"],
                         extra={"kind": "finetune", "finetune": finetune, "split_file": str(data.split_file),
                                **data_identity(data),
                                "dataset": str(data.dataset.root), "params": sum(p.numel() for p in model.parameters()),
                                "trainable_params": trainable})
        if use_features:
            return _fit_head_on_features(model, name, data, cfg, state, info["weights_source"])
        groups = weight_decay_groups(model, cfg.weight_decay, lr_scales(model, name, strategy, finetune["backbone_lr_scale"]))
        return fit(model, data, cfg, state, groups=groups, on_epoch_start=hook)


def finetune_settings(given):
    """Part B's own options with their defaults, checked: (what the run records of them, feature cache asked for)."""
    backbone_scale = float(given["backbone_lr_scale"]) if given.get("backbone_lr_scale") is not None else 0.1
    unfreeze_every = int(given["unfreeze_every"]) if given.get("unfreeze_every") is not None else 1
    strategy, k = given.get("freeze", "all-but-last"), int(given.get("k") or 0)
    if not backbone_scale > 0:
        raise UserError(f"--backbone-lr-scale must be > 0 (a frozen backbone is --freeze all-but-last), got {backbone_scale}")
    if unfreeze_every < 1:
        raise UserError(f"--unfreeze-every must be >= 1 epoch, got {unfreeze_every}")
    if strategy == "first-k" and k < 1:
        raise UserError("--freeze first-k needs --k N (N >= 1 stages frozen from the input side); see --list-stages")
    return {"model": given.get("model", "efficientnet_lite0"), "weights": given.get("weights", "default"),
            "freeze": strategy, "k": k, "backbone_lr_scale": backbone_scale,
            "unfreeze_every": unfreeze_every}, given.get("feature_cache", True)


def finetune_config(options, name, weights, strategy, k):
    """(TrainConfig, the weights' preprocessing, the model's stage count): input size and normalisation come from
    the requested weights' own transforms unless given; a bad --k or --image-size fails before any data is read."""
    probe, _ = build_pretrained(name, weights="none", num_classes=2)
    preprocess = preprocess_for(name, weights).__dict__
    stages = model_stages(probe, name)
    apply_freeze(probe, name, strategy, k)
    if options.get("image_size") is None:
        options["image_size"] = preprocess["crop_size"]
        options["resize_size"] = preprocess["resize_size"]
    cfg = TrainConfig.from_dict({k: v for k, v in options.items() if v is not None})
    fixed_size = getattr(probe, "image_size", None)  # vision transformers take one input size only
    if fixed_size and cfg.image_size != fixed_size:
        raise UserError(f"{name} takes {fixed_size}x{fixed_size} inputs only; drop --image-size or pass {fixed_size}")
    return cfg, preprocess, len(stages)


def _fit_head_on_features(model, name, data, cfg, state, weights_source, resume_checkpoint=None):
    """Train only the head block (`head_block`) on backbone features computed once; checkpoints hold the whole model."""
    if not cfg.quiet:
        print("frozen backbone, no augmentation: computing backbone features once, then training the head on them",
              flush=True)
    if resume_checkpoint is not None:
        model.load_state_dict(resume_checkpoint["model"])
    features, state.extra["feature_pass_s"] = feature_data(model, data, name, weights_source, state.mean, state.std, cfg)
    _, head = head_block(model)
    head_cfg = replace(cfg, channels_last=False, compile=False)
    return fit(head, features, head_cfg, state, groups=weight_decay_groups(head, cfg.weight_decay), save_model=model,
               resume_checkpoint=resume_checkpoint)


def resume_finetune(run, overrides, runs_dir="runs", data=None):
    run_dir, ckpt, cfg, data, record = prepare_resume(run, overrides, runs_dir, data)
    if ckpt["model_spec"]["kind"] != "pretrained":
        raise UserError(f"run {run_dir.name} is a from-scratch run; resume it with partA/train.py --resume")
    ft = record["finetune"]
    name = ft["model"]
    model, _ = build_pretrained(name, weights="none", num_classes=ckpt["model_spec"]["num_classes"])
    state = RunSpec(run_dir=run_dir, model_spec=ckpt["model_spec"], classes=ckpt["classes"], mean=ckpt["mean"],
                     std=ckpt["std"], extra=resume_extra(ckpt, record))
    if ft.get("feature_cache"):
        apply_freeze(model, name, "all-but-last")
        return _fit_head_on_features(model, name, data, cfg, state, ft["weights_source"], resume_checkpoint=ckpt)
    hook = freeze_hook(name, ft["freeze"], ft["k"], ft["unfreeze_every"], ft["stages"], cfg.quiet)
    hook(ckpt["epoch"], model)
    groups = weight_decay_groups(model, cfg.weight_decay, lr_scales(model, name, ft["freeze"], ft["backbone_lr_scale"]))
    return fit(model, data, cfg, state, groups=groups, on_epoch_start=hook, resume_checkpoint=ckpt)


def print_stages(model, name, strategy, k):
    trainable_names = {n for n, p in model.named_parameters() if p.requires_grad}
    owner, stages = parameter_groups(model, name)
    sizes = {}
    for param_name, param in model.named_parameters():
        sizes[owner[param_name]] = sizes.get(owner[param_name], 0) + param.numel()
    print(f"{name}: stages (input → output) and what --freeze {strategy}{f' --k {k}' if strategy == 'first-k' else ''} "
          f"trains now:")
    for index, prefixes in [*enumerate(stages), ("head", [])]:
        count = sizes.get(index, 0)
        members = [n for n, o in owner.items() if o == index]
        train = "train" if members and all(n in trainable_names for n in members) else "frozen"
        label = f"stage {index}" if index != "head" else "head"
        print(f"  {label:<9} {count:>12,} params  {train:<7} {' '.join(prefixes)[:70]}")
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    print(f"  trainable {trainable:,} of {sum(p.numel() for p in model.parameters()):,} parameters", flush=True)
