"""The one reader for the JSON and YAML files this project writes and reads back (plans, step markers, run
records, sweep folders): the file is parsed, its shape checked against a schema, and damage — empty after a full
disk, cut short, edited into another shape — becomes one `DamagedFile` line naming the file and the way out.
Callers that can rebuild what the file held catch it, say "rebuilt" and rebuild; the others let it reach the
user as that one line. Never a traceback, never a later run blocked by a file nobody can read.

Schemas are pydantic models: fields the code reads are typed, extra fields pass (newer writers may add some),
and validation is strict (the string "3" is not a count). What callers get back is the data itself, unchanged.
"""
import json
from pathlib import Path
from typing import Any, Dict, List, Optional

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError

from common.errors import UserError


class DamagedFile(UserError):
    """A file the project wrote cannot be trusted; the message names it, what is wrong and what to do."""


class Shape(BaseModel):
    model_config = ConfigDict(extra="allow")


# ------------------------------------------------------------------------------------------ the schemas

class RunRecord(Shape):
    """runs/<run>/record.json (also the copy inside every checkpoint)."""
    status: str
    config: Dict[str, Any] = {}
    epochs: List[Dict[str, Any]] = []
    summary: Dict[str, Any] = {}


class PlanArgs(Shape):
    data_dir: str
    backend: str
    count: int
    sweep_config: str
    out: str
    runs_dir: str
    cache_dir: str
    name: str
    search: str
    sweep_epochs: int
    finetune_epochs: int
    finetune_rate_factor: float
    inputs: List[str]
    early_terminate: Optional[Dict[str, Any]] = None


class FinetuneModel(Shape):
    model: str
    freeze: str
    extra: List[str]


class Plan(Shape):
    """outputs/<name>/plan.json: what the assignment measured and decided before its steps ran."""
    args: PlanArgs
    budget: float
    rate: float
    train_images: int
    gpus: int
    finetune_model: FinetuneModel
    demo: bool
    device: str
    image_size: int
    dataset: str


class StepMarker(Shape):
    """outputs/<name>/steps/<step>.done: a step finished, with the inputs it ran on and what it left behind."""
    inputs: Any
    outputs: Dict[str, List[int]]  # path -> [size in bytes, mtime in ns] (a run folder: of its record.json)


class SweepOptions(Shape):
    """runs/sweeps/<name>/options.json: the options every run of the sweep shares."""
    data_dir: Optional[str] = None
    seed: Optional[int] = None


class SweepStorage(Shape):
    """runs/sweeps/<name>/storage.json: the database that holds the sweep's study (partA/sweep_storage.py)."""
    url: str


class WandbSweepFile(Shape):
    """runs/sweeps/<name>/wandb.json: the wandb sweep a local sweep folder stands for."""
    sweep_id: str
    project: Optional[str] = None


class Metric(Shape):
    name: str
    goal: str = "maximize"


class SweepConfig(Shape):
    """A sweep's YAML as far as reading it back needs (validate_sweep_config checks the rest)."""
    method: str
    metric: Metric
    parameters: Dict[str, Any]


class Mapping(Shape):
    """Any JSON object: for outputs a report only shows (each reader checks the fields it uses)."""


class ExtractionMarker(Shape):
    """<data>/inaturalist_12K/.extracted: which zip the folder was extracted from."""
    zip: str
    size: int
    mtime_ns: int


# ------------------------------------------------------------------------------------------ the reader

def parse(path: Path, text: str):
    if path.suffix in (".yaml", ".yml"):
        try:
            return yaml.safe_load(text)
        except yaml.YAMLError as err:
            raise ValueError(f"not valid YAML: {str(err).splitlines()[0]}") from None
    try:
        return json.loads(text)
    except ValueError as err:
        raise ValueError(f"not valid JSON: {err}") from None


def shape_problem(err: ValidationError) -> str:
    first = err.errors()[0]
    where = ".".join(str(part) for part in first["loc"]) or "its top level"
    return f"{where}: {first['msg'].lower()}"


def read_state(path, schema, fix: str):
    """The data in `path` (JSON, or YAML by suffix), checked against `schema` (a Shape model).

    FileNotFoundError passes through (a missing file usually means "not done yet"); anything else that makes the
    file untrustworthy raises DamagedFile: "<path> is damaged (<what>); <fix>"."""
    path = Path(path)
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise
    except (OSError, UnicodeDecodeError) as err:
        raise DamagedFile(f"{path} cannot be read ({type(err).__name__}); {fix}") from None
    if not text.strip():
        raise DamagedFile(f"{path} is empty (its write was cut short, e.g. by a full disk); {fix}")
    try:
        data = parse(path, text)
        schema.model_validate(data, strict=True)
    except ValueError as err:  # ValidationError is a ValueError
        problem = shape_problem(err) if isinstance(err, ValidationError) else str(err)
        raise DamagedFile(f"{path} is damaged ({problem}); {fix}") from None
    return data


def read_state_or_none(path, schema, on_damage=None):
    """read_state for files that can be rebuilt: None when missing or damaged (damage reported to `on_damage`)."""
    try:
        return read_state(path, schema, "rebuilding it")
    except FileNotFoundError:
        return None
    except DamagedFile as err:
        if on_damage is not None:
            on_damage(err.message)
        return None
