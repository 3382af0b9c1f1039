"""The training loop shared by Part A (from scratch) and Part B (fine-tuning): seeded batches augmented on the device,
validation after every epoch, and the record and checkpoints written atomically, so a resumed run continues exactly
as if it had never stopped (docs/design.md, "Training on the GPUs people have")."""
import json
import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, List, Optional

import torch
from torch import nn
from tqdm import tqdm

from common.augment import AugmentConfig
from common.checkpoints import load_record
from common.device import autocast, configure_backends, data_fits_on_device, resolve_device, resolve_precision
from common.errors import UserError
from common.inference import prepare_batch, validate
from common.io import save_torch
from common.recipe import (TrainConfig, augmentation_strength, build_optimizer, lr_multiplier, plain_data,
                           weight_decay_groups)
from common.runs import claim_run_dir, release_run_dir
from common.tracking import RunRecord, WandbRun, environment_info, now_iso

CHECK_EVERY = 25  # steps between host reads of the running loss (each read waits for the GPU)


class TrainingDiverged(UserError):
    pass


def training_loss(output, targets, criterion):
    """(main logits, loss). Auxiliary heads in training mode add their weighted losses:
    inception_v3 (InceptionOutputs: 0.4 × aux) and googlenet (GoogLeNetOutputs: 0.3 × each aux)."""
    if isinstance(output, tuple) and hasattr(output, "_fields") and "logits" in output._fields:
        aux = [v for k, v in output._asdict().items() if k != "logits" and v is not None]
        weight = 0.4 if len(aux) == 1 else 0.3
        loss = criterion(output.logits.float(), targets) + sum(weight * criterion(a.float(), targets) for a in aux)
        return output.logits, loss
    return output, criterion(output.float(), targets)


@dataclass
class RunSpec:
    """What `fit` needs besides the model: where, what data, and how to rebuild the model."""

    run_dir: Path
    model_spec: dict  # enough to rebuild the model (see common.checkpoints.build_model_from_spec)
    classes: List[str]
    mean: List[float]
    std: List[float]
    extra: dict = field(default_factory=dict)  # anything else worth recording (split file, freeze…)


def _rng_state():
    state = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _restore_rng_state(state):
    """Put back the generators saved with the checkpoint (each epoch also reseeds from (seed, epoch))."""
    if not state:
        return
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available() and len(state["cuda"]) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(state["cuda"])


def checkpoint_dict(model, optimizer, scaler, epoch, cfg, state: RunSpec, best_val_acc, wandb_id, record=None):
    return {
        "format": "inat-lab/1",
        "model": model.state_dict(),  # never the torch.compile'd wrapper: that is session.run_model
        "optimizer": optimizer.state_dict(),
        "scaler": scaler.state_dict(),
        "epoch": epoch,  # epochs completed
        "train_config": plain_data(cfg.to_dict()),  # plain types only: weights_only loading accepts them
        "model_spec": plain_data(state.model_spec),
        "classes": state.classes,
        "mean": state.mean,
        "std": state.std,
        "best_val_acc": best_val_acc,
        "wandb_id": wandb_id,
        "rng": _rng_state(),
        "saved": now_iso(),
        "record": record,  # the run record as of this epoch: resume rebuilds a lost or stale record.json
    }


class BatchSource:
    """Training batches by index: from a copy of the set on the device, or streamed through two pinned host buffers
    (docs/design.md, "--data-on-device"); an event per buffer keeps it from being refilled before its copy is done."""

    def __init__(self, images, labels, device, on_device: bool):
        self.device, self.on_device = device, on_device
        self.streaming = device.type == "cuda" and not on_device
        self.images = images.to(device) if on_device else images
        self.labels = labels.to(device)
        self._buffers, self._events, self._turn = [], [], 0

    def order(self, permutation):
        """The epoch's index order, where the gathers run (device or host)."""
        return permutation.to(self.device) if not self.streaming else permutation

    def batch(self, idx):
        labels = self.labels[idx.to(self.device, non_blocking=True)]
        if not self.streaming:
            return self.images[idx], labels
        shape = (len(idx),) + tuple(self.images.shape[1:])
        if not self._buffers or self._buffers[0].shape != shape:
            self._buffers = [torch.empty(shape, dtype=self.images.dtype).pin_memory() for _ in range(2)]
            self._events = [None, None]
        turn, self._turn = self._turn, 1 - self._turn
        if self._events[turn] is not None:
            self._events[turn].synchronize()  # the copy out of this buffer has finished
        torch.index_select(self.images, 0, idx, out=self._buffers[turn])
        images = self._buffers[turn].to(self.device, non_blocking=True)
        self._events[turn] = torch.cuda.Event()
        self._events[turn].record()
        return images, labels


@dataclass
class Session:
    """What every epoch of one run uses, built once: the model on its device, optimiser, batches, schedule."""

    model: nn.Module
    run_model: nn.Module  # the model, or its torch.compile'd wrapper
    optimizer: torch.optim.Optimizer
    scaler: torch.amp.GradScaler
    criterion: nn.Module
    batches: "BatchSource"
    base_lrs: List[float]
    mean: torch.Tensor
    std: torch.Tensor
    device: torch.device
    precision: str
    augment: Optional[AugmentConfig]
    batch_size: int
    steps_per_epoch: int
    warmup_steps: int


def start_session(model, data, cfg: TrainConfig, state: RunSpec, groups, device, precision) -> Session:
    model.to(device)
    if cfg.channels_last:
        model.to(memory_format=torch.channels_last)
    groups = groups if groups is not None else weight_decay_groups(model, cfg.weight_decay)
    optimizer = build_optimizer(cfg.optimizer, groups, cfg.lr, cfg.momentum)
    train = data.train
    batch_size = min(cfg.batch_size, len(train))
    steps_per_epoch = len(train) // batch_size  # drop the ragged last batch: BN needs > 1 sample
    # The whole uint8 set on the GPU when it fits (no host→device copy per batch), else streamed.
    on_device = data_fits_on_device(cfg.data_on_device, device, train.images.numel() * train.images.element_size())
    strength = augmentation_strength(cfg)
    return Session(
        model=model, run_model=torch.compile(model) if cfg.compile else model, optimizer=optimizer,
        scaler=torch.amp.GradScaler(device.type, enabled=precision == "fp16"),
        criterion=nn.CrossEntropyLoss(label_smoothing=cfg.label_smoothing),
        batches=BatchSource(train.images, train.labels, device, on_device),
        base_lrs=[g["lr"] for g in optimizer.param_groups],
        mean=torch.tensor(state.mean, device=device), std=torch.tensor(state.std, device=device),
        device=device, precision=precision,
        augment=AugmentConfig(enabled=True, strength=strength) if cfg.augment and strength > 0 else None,
        batch_size=batch_size, steps_per_epoch=steps_per_epoch,
        warmup_steps=int(cfg.warmup_epochs * steps_per_epoch))


def train_one_epoch(s: Session, cfg: TrainConfig, epoch: int, n_train: int, run_dir: Path) -> dict:
    """One pass over the training set; returns train loss, accuracy, images and seconds.

    Everything random in the epoch derives from (seed, epoch), so a resumed run is exact. The
    running sums stay on the device and are read every CHECK_EVERY steps (each read waits for
    the GPU), which is also when a NaN/inf loss is caught.
    """
    torch.manual_seed(cfg.seed * 100_003 + epoch)
    order = s.batches.order(torch.randperm(n_train, generator=torch.Generator().manual_seed(cfg.seed * 7919 + epoch)))
    aug_gen = torch.Generator(device=s.device).manual_seed(cfg.seed * 104_729 + epoch)
    started = time.perf_counter()
    loss_sum = torch.zeros((), device=s.device)
    correct = torch.zeros((), device=s.device, dtype=torch.long)
    nonfinite = torch.zeros((), device=s.device, dtype=torch.bool)
    seen, total_steps = 0, s.steps_per_epoch * cfg.epochs
    show = not cfg.quiet and os.isatty(2)
    bar = tqdm(range(s.steps_per_epoch), desc=f"epoch {epoch + 1}/{cfg.epochs}", disable=not show, leave=False)
    for i in bar:
        multiplier = lr_multiplier(cfg.scheduler, epoch * s.steps_per_epoch + i, total_steps, s.warmup_steps,
                                   s.steps_per_epoch, cfg.step_size, cfg.gamma)
        for group, base in zip(s.optimizer.param_groups, s.base_lrs):
            group["lr"] = base * multiplier
        images, y = s.batches.batch(order[i * s.batch_size:(i + 1) * s.batch_size])
        x = prepare_batch(images, s.mean, s.std, s.augment, aug_gen, cfg.channels_last)
        with autocast(s.device, s.precision):
            logits, loss = training_loss(s.run_model(x), y, s.criterion)
        optimizer_step(s, loss, cfg.grad_clip)
        loss_sum += loss.detach() * len(y)
        correct += (logits.detach().argmax(1) == y).sum()
        nonfinite |= ~torch.isfinite(loss.detach())
        seen += len(y)
        if (i + 1) % CHECK_EVERY == 0 or i + 1 == s.steps_per_epoch:
            if nonfinite.item():  # nothing is saved after this: last.pt stays the last good epoch
                raise TrainingDiverged(diverged_message(f"the loss became NaN/inf in epoch {epoch + 1} (by step "
                                                        f"{i + 1})", run_dir))
            if show:
                bar.set_postfix(loss=f"{loss_sum.item() / seen:.3f}", acc=f"{correct.item() / seen:.3f}")
    if s.device.type == "cuda":
        torch.cuda.synchronize()
    return {"train_loss": loss_sum.item() / max(1, seen), "train_acc": correct.item() / max(1, seen), "seen": seen,
            "train_time": time.perf_counter() - started}


def check_finite(model, val, epoch, run_dir):
    """Before an epoch is saved: a checkpoint is good only if every tensor in it and its validation
    metrics are finite. Otherwise nothing of this epoch is written and the run stops as diverged."""
    tensors = list(model.named_parameters()) + list(model.named_buffers())  # batch-norm statistics too
    broken = next((name for name, t in tensors if t.is_floating_point() and not torch.isfinite(t).all()), None)
    if broken is None and math.isfinite(val["loss"]) and math.isfinite(val["acc"]):
        return
    what = f"the model's {broken}" if broken else "the validation loss"
    raise TrainingDiverged(diverged_message(f"{what} became NaN/inf in epoch {epoch + 1}", run_dir))


DIVERGED_WAY_OUT = ("Continue it with a smaller step: python partA/train.py --resume {run} --lr <smaller> (Part B: "
                    "partB/finetune.py --resume), or start again with a lower --lr or --grad-clip 1.")


def diverged_message(what, run_dir):
    """What went wrong and the way out: resume from last.pt when an epoch was saved; else nothing is left to resume
    (the run's folder goes, see `fit`), and the same command with a smaller step starts it again."""
    if (Path(run_dir) / "last.pt").is_file():
        return (f"{what}; nothing of it was saved, {Path(run_dir) / 'last.pt'} holds the last good epoch. "
                f"{DIVERGED_WAY_OUT.format(run=Path(run_dir).name)}")
    return (f"{what}, before any epoch was saved: there is nothing to resume. Start run {Path(run_dir).name} again "
            f"(the name is free) with a lower --lr or --grad-clip 1")


def optimizer_step(s: Session, loss, grad_clip):
    s.optimizer.zero_grad(set_to_none=True)
    s.scaler.scale(loss).backward()
    if grad_clip > 0:
        s.scaler.unscale_(s.optimizer)
        torch.nn.utils.clip_grad_norm_(s.model.parameters(), grad_clip)
    s.scaler.step(s.optimizer)
    s.scaler.update()


def open_record(run_dir, cfg, state: RunSpec, resume_checkpoint, session: Session, backends, data) -> RunRecord:
    """The run record: new, or the resumed run's (rebuilt from its checkpoint when record.json lags)."""
    if resume_checkpoint is None:
        record = RunRecord(run_dir)
    else:
        record = RunRecord(run_dir, load_record(run_dir, resume_checkpoint))
        record.data["epochs"] = [e for e in record.data["epochs"] if e["epoch"] <= resume_checkpoint["epoch"]]
    record.data.update({
        "name": run_dir.name, "status": "running", "config": cfg.to_dict(), "recipe": cfg.recipe(),
        "context": cfg.context(), "model_spec": state.model_spec, "classes": state.classes,
        "precision": session.precision, "environment": environment_info(session.device),
        "aug_strength_used": augmentation_strength(cfg) if cfg.augment else 0.0,
        "backends": {**backends, "data_on_device": session.batches.on_device},
        "train_images": len(data.train), "val_images": len(data.val), **state.extra,
        "train_loss_label_smoothing": cfg.label_smoothing,  # train_loss is smoothed; val_loss is plain cross-entropy
    })
    return record


def restore_from_checkpoint(session: Session, save_model, checkpoint) -> tuple:
    """Load model, optimiser, scaler and RNG state; returns (start epoch, best val acc, wandb id)."""
    if checkpoint is None:
        return 0, -1.0, None
    save_model.load_state_dict(checkpoint["model"])
    session.optimizer.load_state_dict(checkpoint["optimizer"])
    session.scaler.load_state_dict(checkpoint["scaler"])
    _restore_rng_state(checkpoint.get("rng"))
    return checkpoint["epoch"], checkpoint["best_val_acc"], checkpoint.get("wandb_id")


def save_epoch(run_dir, record: RunRecord, metrics, best_val_acc, checkpoint_of) -> float:
    """Log an epoch: record in memory, then best.pt (if improved), last.pt, record.json — in that order,
    so a kill between any two writes loses nothing (last.pt carries the record too). Returns the best."""
    improved = metrics["val_acc"] > best_val_acc
    best_val_acc = max(best_val_acc, metrics["val_acc"])
    # a resumed run that repeats an epoch replaces its entry
    epochs = record.data["epochs"] = [e for e in record.data["epochs"] if e["epoch"] != metrics["epoch"]] + [metrics]
    record.data["summary"] = {
        "best_val_acc": best_val_acc, "best_epoch": max(epochs, key=lambda e: e["val_acc"])["epoch"],
        "last_val_acc": metrics["val_acc"], "epochs_done": metrics["epoch"],
        "train_time_s": sum(e["train_time"] for e in epochs),
        "mean_images_per_s": sum(e["images_per_s"] for e in epochs) / len(epochs),
    }
    checkpoint = checkpoint_of(best_val_acc, json.loads(json.dumps(record.data, default=str)))
    if improved:
        save_torch(run_dir / "best.pt", checkpoint)
    save_torch(run_dir / "last.pt", checkpoint)
    record.save()
    return best_val_acc


FLAT_MODEL_KEYS = ("filters", "kernel_sizes", "padding", "activation", "batch_norm", "dropout", "dropout_where",
                   "dense_units")


def tracked_config(cfg, record: dict) -> dict:
    """What a run logs as wandb.config, built from the record so a resumed run logs the same (docs/design.md,
    "What wandb's panels read")."""
    model = record.get("model_spec", {}).get("config", {})
    given = {**record.get("model_options", {}), **record.get("sweep_params", {})}
    flat = {key: model[key] for key in FLAT_MODEL_KEYS if key in model and not (key == "filters" and "base_filters"
                                                                                  in given)}
    return {**cfg.to_dict(), **flat, **given}


def epoch_line(cfg, m):
    smoothed = f" (smoothed {cfg.label_smoothing:g})" if cfg.label_smoothing else ""
    return (f"epoch {m['epoch']:3d}/{cfg.epochs}  train loss{smoothed} {m['train_loss']:.3f} acc {m['train_acc']:.3f}  "
            f"val loss {m['val_loss']:.3f} acc {m['val_acc']:.3f}  {m['images_per_s']:.0f} img/s  {m['epoch_time']:.1f}s")


def fit(model: nn.Module, data, cfg: TrainConfig, state: RunSpec, groups=None,
        on_epoch_start: Optional[Callable[[int, nn.Module], None]] = None, resume_checkpoint: Optional[dict] = None,
        should_stop: Optional[Callable[[int, dict], bool]] = None, save_model: Optional[nn.Module] = None):
    """Train `model` on `data.train`, validate on `data.val`; returns the run record's data.

    `on_epoch_start(epoch, model)` lets Part B unfreeze stages; `should_stop(epoch, metrics)`
    lets a sweep controller (hyperband) stop a run between epochs. `save_model` is what the
    checkpoints hold when it differs from what is trained (Part B trains a head on cached
    features but saves the whole network).
    """
    save_model = save_model if save_model is not None else model
    device = resolve_device(cfg.device)
    precision = resolve_precision(cfg.precision, device)
    backends = configure_backends(device, cfg.deterministic, cfg.tf32)
    run_dir = claim_run_dir(Path(state.run_dir), resume=resume_checkpoint is not None)
    session, start_epoch, best_val_acc, record, tracker = open_run(
        run_dir, model, save_model, data, cfg, state, groups, (device, precision, backends), resume_checkpoint)
    status = "finished"
    try:
        for epoch in range(start_epoch, cfg.epochs):
            model.train()
            if on_epoch_start is not None:  # after train(): it may put frozen layers back in eval mode
                on_epoch_start(epoch, model)
            trained = train_one_epoch(session, cfg, epoch, len(data.train), run_dir)
            validation_started = time.perf_counter()
            val = validate(model, data.val, state.mean, state.std, device, precision, cfg.channels_last)
            val["seconds"] = time.perf_counter() - validation_started
            check_finite(save_model, val, epoch, run_dir)
            metrics = epoch_metrics(epoch, trained, val, session.optimizer)
            best_val_acc = save_epoch(run_dir, record, metrics, best_val_acc, lambda best, rec: checkpoint_dict(
                save_model, session.optimizer, session.scaler, epoch + 1, cfg, state, best, tracker.id, record=rec))
            tracker.log(metrics, step=epoch + 1)
            tracker.summary({"best_val_acc": best_val_acc, "best_epoch": record.data["summary"]["best_epoch"]})
            if not cfg.quiet:
                print(epoch_line(cfg, metrics), flush=True)
            if should_stop is not None and should_stop(epoch + 1, metrics):
                status = "stopped"
                break
    except BaseException as err:
        status = {TrainingDiverged: "diverged", KeyboardInterrupt: "interrupted"}.get(type(err), "failed")
        raise
    finally:
        end_run(record, tracker, status, run_dir)
    return record.data


def open_run(run_dir, model, save_model, data, cfg, state, groups, hardware, resume_checkpoint):
    """The session, where to start (epoch, best val acc), the record and the wandb run of a claimed run folder."""
    device, precision, backends = hardware
    tracker = None
    try:
        session = start_session(model, data, cfg, state, groups, device, precision)
        start_epoch, best_val_acc, wandb_id = restore_from_checkpoint(session, save_model, resume_checkpoint)
        record = open_record(run_dir, cfg, state, resume_checkpoint, session, backends, data)
        record.save()
        tracker = WandbRun(cfg.wandb, cfg.wandb_project, run_dir.name, tracked_config(cfg, record.data), run_dir,
                           run_id=wandb_id, group=cfg.wandb_group)
        record.data.update(wandb_id=tracker.id, wandb_mode=tracker.mode)
        record.save()
    except BaseException:  # e.g. no space for the record: the claim (an open lock file) and wandb must not outlive it
        if tracker is not None:
            tracker.finish(exit_code=1)
        release_run_dir(run_dir)
        raise
    return session, start_epoch, best_val_acc, record, tracker


def epoch_metrics(epoch, trained, val, optimizer):
    """What an epoch logs: its losses and accuracies, the learning rate it ended at, its times and speed."""
    return {"epoch": epoch + 1, "train_loss": trained["train_loss"], "train_acc": trained["train_acc"],
            "val_loss": val["loss"], "val_acc": val["acc"], "lr": optimizer.param_groups[0]["lr"],
            "epoch_time": trained["train_time"] + val["seconds"], "train_time": trained["train_time"],
            "images_per_s": trained["seen"] / trained["train_time"]}


def end_run(record, tracker, status, run_dir):
    """Record how the run ended (locally and in wandb), then release its folder."""
    try:
        record.data["status"] = status
        record.data["finished" if status in ("finished", "stopped") else "ended"] = now_iso()
        record.save()
        tracker.summary({"status": status})  # wandb shows a stopped run as finished: panels filter on this
        tracker.finish(exit_code=0 if status in ("finished", "stopped") else 1)
    finally:  # a full disk can fail the last save: the run's claim is released all the same
        release_run_dir(run_dir)  # (a run that ended before its first checkpoint leaves no folder)
