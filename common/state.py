"""The one reader for the JSON and YAML files this project writes and reads back (plans, step markers, run
records, sweep folders): parsed, its shape checked against a pydantic schema, and damage becomes one `DamagedFile`
line naming the file and the way out; callers that can rebuild what it held say "rebuilt" (docs/design.md, "Files
read back"). What callers get back is the data itself, unchanged.
"""
import json
from pathlib import Path
from typing import Any, Dict, List, Optional

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError

from common.errors import UserError, describe


class DamagedFile(UserError):
    """A file the project wrote cannot be trusted; the message names it, what is wrong and what to do."""

    def __init__(self, message, problem=""):
        super().__init__(message)
        self.problem = problem  # what is wrong, without the file's name or the way out


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


class OtherFinetune(Shape):
    """Another freezing strategy the assignment runs beside its main fine-tuning run (Part B's Q2)."""
    freeze: str
    extra: List[str]
    rate_factor: float
    suffix: Optional[str] = None  # its run is <main run>-<suffix>; None: -<freeze>


class FinetuneModel(Shape):
    model: str
    freeze: str
    extra: List[str]
    others: List[OtherFinetune] = []


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


class SplitFile(Shape):
    """cache/splits/<...>.json: the train/validation split a seed made of a training folder."""
    classes: List[str]
    seed: int
    train: List[List[Any]]
    val: List[List[Any]]


class LockHolder(Shape):
    """What a lock file says of the process holding it (read while that process may be writing it)."""
    pid: Optional[int] = None
    host: Optional[str] = None


class Detection(Shape):
    """One line of partC/detect.py's detections.jsonl."""
    source: str
    label: str
    score: float
    frame: Optional[int] = None
    annotated: Optional[str] = None


# ------------------------------------------------------------------------------------------ the reader

def parse(path: Path, text: str):
    """JSON, or YAML by suffix; any way the text fails to parse is a ValueError naming it."""
    kind = "YAML" if path.suffix in (".yaml", ".yml") else "JSON"
    try:
        return yaml.safe_load(text) if kind == "YAML" else json.loads(text)
    except RecursionError:  # both parsers recurse per nesting level: "[[[[..." a few thousand deep overflows
        raise ValueError(f"not valid {kind}: nested too deeply") from None
    except (yaml.YAMLError, ValueError) as err:  # the parsers' own errors: their first line says where
        raise ValueError(f"not valid {kind}: {(str(err).strip().splitlines() or ['no message'])[0]}") from None
    except Exception as err:  # the parser tripping over its own input (PyYAML: AttributeError on `!!timestamp x`)
        raise ValueError(f"not valid {kind}: {describe(err)}") from None


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
        raise DamagedFile(f"{path} cannot be read ({type(err).__name__}); {fix}", type(err).__name__) from None
    return state_from_text(text, schema, path, fix)


def state_from_text(text, schema, path, fix=""):
    """read_state for text already read (a lock file read through its open handle, a line of a .jsonl)."""
    path = Path(path)
    if not text.strip():
        raise DamagedFile(f"{path} is empty (its write was cut short, e.g. by a full disk); {fix}", "empty")
    try:
        data = parse(path, text)
        schema.model_validate(data, strict=True)
    except ValueError as err:  # ValidationError is a ValueError
        problem = shape_problem(err) if isinstance(err, ValidationError) else str(err)
        raise DamagedFile(f"{path} is damaged ({problem}); {fix}", problem) from None
    return data


def lock_holder(text, path):
    """{pid, host} a lock file names, or {} when it is being written or damaged (only a message uses it)."""
    try:
        return state_from_text(text, LockHolder, path)
    except DamagedFile:
        return {}


def read_json_lines(path, schema, on_damage=None):
    """The lines of a .jsonl file that have the schema's shape; damaged lines are left out, reported once."""
    rows, damaged = [], 0
    for number, line in enumerate(Path(path).read_text().splitlines(), 1):
        try:
            rows.append(state_from_text(line, schema, path))
        except DamagedFile:
            damaged += int(bool(line.strip()))
    if damaged and on_damage is not None:
        on_damage(f"{path}: {damaged} damaged line(s) left out")
    return rows


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


def read_output(path):
    """A JSON object another command wrote (a test summary, a comparison, a run's summary), for showing it: damage
    is one line naming the file and the command to run again."""
    return read_state(path, Mapping, "run the command that writes it again")

