"""The checks every resume makes, whatever the run trained (Part A's CNN, Part B's fine-tuning): the run is not
already being trained, its checkpoint and record agree, the options given now mean what the run was trained with
(only the run context may change — and a diverged run's step), and the data is the data it trained on."""
from pathlib import Path

from common.checkpoints import load_checkpoint, load_record, resolve_run_dir
from common.data import load_train_val
from common.errors import UserError
from common.models import filters_from_organisation
from common.run_records import data_identity
from common.runs import claimed_run, has_checkpoint
from common.recipe import CONTEXT_KEYS, TrainConfig

# A run that diverged (NaN/inf) would diverge again at once if resumed as it was: its way out is a smaller
# step, so these may change when it resumes (the record keeps what changed, and from which epoch).
DIVERGED_FREE_KEYS = {"lr", "grad_clip"}


def as_list(value):
    if isinstance(value, str):
        try:
            return [int(v) for v in value.replace(" ", "").split(",") if v]
        except ValueError:
            raise UserError(f"expected comma-separated whole numbers, got {value!r}") from None
    if isinstance(value, int):
        return [value]
    return list(value)


def prepare_resume(run, overrides: dict, runs_dir="runs", data=None):
    """Checks shared by every kind of resume → (run_dir, checkpoint, TrainConfig, data, record)."""
    with claimed_run(resolve_run_dir(run, runs_dir), resume=True) as run_dir:  # one still training cannot resume
        return _checked_resume(run_dir, overrides, data)


def _checked_resume(run_dir, overrides, data):
    if not has_checkpoint(run_dir):  # killed before epoch 1: its own command takes the folder over
        raise UserError(f"run {run_dir.name} stopped before its first checkpoint: nothing to resume; start it again "
                        f"with the command that started it (same --run-name {run_dir.name})")
    ckpt = load_checkpoint(run_dir / "last.pt")
    record = load_record(run_dir, ckpt)
    stored = dict(ckpt["train_config"])
    if record.get("status") == "finished" and ckpt["epoch"] >= stored["epochs"]:
        raise UserError(f"run {run_dir.name} already finished all {stored['epochs']} epochs; nothing to resume "
                        f"(evaluate it with partA/evaluate.py --run {run_dir.name})")
    spec_config = ckpt["model_spec"].get("config", ckpt["model_spec"])
    overrides = _comparable_overrides(overrides)
    free = CONTEXT_KEYS | (DIVERGED_FREE_KEYS if record.get("status") == "diverged" else set())
    for key in DIVERGED_FREE_KEYS & free:
        if overrides.get(key) is not None and overrides[key] != stored.get(key):
            record.setdefault("changed_on_resume", []).append({"epoch": ckpt["epoch"], key: [stored.get(key), overrides[key]]})
            stored[key] = overrides[key]
    for key, value in overrides.items():
        if key in free or value is None:
            continue
        old = stored.get(key, spec_config.get(key, record.get("finetune", {}).get(key)))
        if old is not None and _comparable_value(old) != _comparable_value(value):
            raise UserError(f"run {run_dir.name} was trained with {key}={old}, you gave {value}; drop the option "
                            f"to resume, or start a new run")
    for key in CONTEXT_KEYS - {"run_name", "runs_dir"}:  # where and how it runs now; never which run it is
        if overrides.get(key) is not None:
            stored[key] = overrides[key]
    cfg = TrainConfig.from_dict(stored)
    data = data or load_train_val(cfg.data_dir, cfg.image_size, cfg.val_fraction, cfg.seed, cfg.cache_dir,
                                  progress=not cfg.quiet, resize=cfg.resize_size)
    if data.classes != ckpt["classes"]:
        raise UserError(f"the data in {cfg.data_dir} has classes {data.classes}, the run was trained on "
                        f"{ckpt['classes']}; point --data-dir at the run's data")
    now = data_identity(data)
    if any(record.get(key) not in (None, value) for key, value in now.items()):
        raise UserError(f"the data in {cfg.data_dir} is not what run {run_dir.name} trained on (other images, so another "
                        f"train/validation split than {Path(record.get('split_file', '?')).name}); point --data-dir at "
                        f"the run's data, or start a new run")
    return run_dir, ckpt, cfg, data, record


def resume_extra(ckpt, record) -> dict:
    """What a resumed run's record adds: from which epoch, and what a diverged run's resume changed."""
    return {"resumed_from_epoch": ckpt["epoch"],
            **({"changed_on_resume": record["changed_on_resume"]} if record.get("changed_on_resume") else {})}


def _comparable_overrides(overrides: dict) -> dict:
    """Options given on resume in the form the run stored: --base-filters/--organisation become
    the filters they mean, a single kernel size is one per block."""
    overrides = dict(overrides)
    base, organisation = overrides.pop("base_filters", None), overrides.pop("organisation", None)
    if base is not None or organisation is not None:
        overrides["filters"] = filters_from_organisation(32 if base is None else int(base), organisation or "same")
    if overrides.get("kernel_sizes") is not None:
        sizes = as_list(overrides["kernel_sizes"])
        overrides["kernel_sizes"] = sizes * 5 if len(sizes) == 1 else sizes
    return overrides


def _comparable_value(value):
    if isinstance(value, (list, tuple)):
        return [_comparable_value(v) for v in value]
    if isinstance(value, str):
        try:
            return [int(v) for v in value.split(",")] if "," in value else value
        except ValueError:
            return value
    return value
