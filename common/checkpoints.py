"""Finding runs, loading checkpoints and rebuilding their models — with clear errors."""
import pickle
import zipfile
from dataclasses import fields
from pathlib import Path

import torch
from pydantic import ValidationError

from common.errors import UserError
from common.models import CNNConfig, build_model
from common.state import RunRecord, read_state_or_none
from common.state_dicts import load_model_state


def resolve_run_dir(run, runs_dir="runs") -> Path:
    """A run given by name (under runs_dir) or by path."""
    path = Path(run)
    if path.is_dir():
        return path
    candidate = Path(runs_dir) / run
    if candidate.is_dir():
        return candidate
    raise UserError(f"no run {run!r}: neither {path} nor {candidate} exists; list runs with `ls {runs_dir}`")


def load_checkpoint(path) -> dict:
    path = Path(path)
    if not path.is_file():
        raise UserError(f"checkpoint {path} does not exist; train first (make train) or name another run")
    if not zipfile.is_zipfile(path):  # torch.save writes a zip archive; a .weights, .jpg or text file is not one
        raise UserError(f"{path} is not a PyTorch checkpoint; give a best.pt or last.pt written by partA/train.py or "
                        f"partB/finetune.py")
    try:
        # weights_only: tensors, numbers, strings and containers only — a crafted file cannot run code
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:
        raise UserError(f"checkpoint {path} holds more than tensors and plain data (objects that would run code "
                        f"when loaded); refused — only load checkpoints you trust, written by this project") from None
    except Exception as err:
        raise UserError(f"checkpoint {path} cannot be read ({type(err).__name__}); it is damaged or not ours") from None
    if not isinstance(ckpt, dict) or ckpt.get("format") != "inat-lab/1":
        raise UserError(f"{path} is not a checkpoint written by this project")
    return ckpt


def cnn_config_from(stored, source="checkpoint"):
    """CNNConfig from a checkpoint's model_spec config: keys this version does not know are refused in one line."""
    known = {f.name for f in fields(CNNConfig)}
    if not isinstance(stored, dict):
        raise UserError(f"{source}: its model config is damaged (not a mapping); retrain the run")
    unknown = sorted(set(stored) - known)
    if unknown:
        raise UserError(f"{source}: its model config has unknown key(s) {', '.join(unknown)} (written by another "
                        f"version of this project, or edited); use that version, or retrain the run")
    try:
        return CNNConfig(**stored)
    except (TypeError, ValueError) as err:
        raise UserError(f"{source}: its model config is not valid ({err}); retrain the run") from None


def build_model_from_spec(spec: dict, source="checkpoint"):
    """Rebuild an (untrained) model from the `model_spec` stored in every checkpoint."""
    if not isinstance(spec, dict):
        raise UserError(f"{source}: its model spec is damaged (not a mapping); retrain the run")
    kind = spec.get("kind")
    if kind == "cnn":
        return build_model(cnn_config_from(spec.get("config"), source))
    if kind == "pretrained":
        from common.pretrained import build_for_spec

        return build_for_spec(spec)
    raise UserError(f"unknown model kind {kind!r} in checkpoint")


def model_from_checkpoint(ckpt, source="checkpoint"):
    try:
        model = build_model_from_spec(ckpt["model_spec"], source)
    except RuntimeError as err:
        raise UserError(f"{source}: cannot rebuild its model ({err})") from None
    try:
        load_model_state(model, ckpt["model"], source)
    except RuntimeError as err:
        raise UserError(f"{source} does not match the model ({str(err).splitlines()[0]})") from None
    model.eval()
    return model


def read_record(run_dir):
    """runs/<run>/record.json, shape-checked; None when it is missing or damaged (the callers fall back on the copy
    every checkpoint carries)."""
    return read_state_or_none(Path(run_dir) / "record.json", RunRecord)


def record_in(ckpt):
    """The record copy a checkpoint carries, when it has the shape of one."""
    stored = (ckpt or {}).get("record")
    try:
        RunRecord.model_validate(stored, strict=True)
    except ValidationError:
        return None
    return stored


def load_record(run_dir, ckpt=None):
    """The run's record.json. With the run's last checkpoint: the more complete of the two.

    Every checkpoint carries a copy of the record as of its epoch, so a kill between writing
    last.pt and record.json (or a lost, empty or damaged record.json) never loses an epoch from the record;
    without a checkpoint given, a missing or damaged record.json is read from the run's last.pt.
    """
    record = read_record(run_dir)
    last = Path(run_dir) / "last.pt"
    if record is None and ckpt is None and last.is_file():
        ckpt = load_checkpoint(last)
    stored = record_in(ckpt)
    if stored and (record is None or len(record.get("epochs", [])) < len(stored.get("epochs", []))):
        return stored
    if record is None:
        raise UserError(f"{run_dir} has no readable record.json (nor a last.pt with a copy of it); is it a run folder?")
    return record
