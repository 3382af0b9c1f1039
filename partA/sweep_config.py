"""A sweep's YAML (wandb's sweep format) and its Optuna mapping: reading and checking the config before any run
starts, the search space as Optuna's suggestions, samplers and pruner."""
import itertools
import json
import math
import re
import typing
from dataclasses import fields
from pathlib import Path

import numpy as np

from common.errors import UserError
from common.models import CNNConfig
from common.state import SweepConfig, parse, read_state
from common.recipe import CONTEXT_KEYS, TrainConfig, plain_data
from partA.from_scratch import MODEL_KEYS, split_options

METRICS = ("val_acc", "val_loss", "train_acc", "train_loss")
METHODS = ("grid", "random", "bayes")
# What a sweep may set: partA/train.py's options, less the run context (where and how runs execute, not what is
# trained). The data decides a model's input size, channels and classes: no option sets them.
SWEEPABLE = ((MODEL_KEYS - {"input_size", "in_channels", "num_classes"})
             | {f.name for f in fields(TrainConfig) if f.metadata["flag"]}) - CONTEXT_KEYS


def load_sweep_config(path) -> dict:
    path = Path(path)
    if not path.is_file():
        raise UserError(f"sweep config {path} does not exist")
    try:
        config = parse(path.with_suffix(".yaml"), path.read_text())  # the user's YAML, whatever its suffix
    except ValueError as err:
        raise UserError(f"{path} is {err}") from None
    validate_sweep_config(numbers_as_numbers(config), source=str(path))
    return config


def numbers_as_numbers(config):
    """YAML 1.1 (PyYAML) reads `1e-05` (an exponent without a dot) as a string: such values become numbers.
    Other strings stay strings — `kernel_sizes: {values: ["3", "5,5,3,3,3"]}` means text."""
    def number(value):
        is_exponent = isinstance(value, str) and re.fullmatch(r"[-+]?(\d+\.?\d*|\.\d+)[eE][-+]?\d+", value.strip())
        return float(value) if is_exponent else value

    for spec in (config.get("parameters") or {}).values() if isinstance(config, dict) else ():
        if isinstance(spec, dict):
            for key in ("min", "max", "value"):
                if key in spec:
                    spec[key] = number(spec[key])
            if isinstance(spec.get("values"), list):
                spec["values"] = [number(v) for v in spec["values"]]
    return config


def _values_of(name, spec):
    """The values of a parameter spec that train.py's checks see: its list, its value, or a range's ends."""
    if "values" in spec:
        if not isinstance(spec["values"], list) or not spec["values"]:
            raise UserError(f"parameter {name!r} has an empty 'values' list: the search space is empty")
        return spec["values"]
    if "value" in spec:
        return [spec["value"]]
    if "min" in spec and "max" in spec:
        if spec["min"] > spec["max"]:
            raise UserError(f"parameter {name!r} has min {spec['min']} > max {spec['max']}")
        return [spec["min"], spec["max"]]
    raise UserError(f"parameter {name!r} needs 'values', 'value' or 'min'/'max'")


def validate_sweep_config(config, source="sweep config", base_options=None):
    """Every problem a sweep could hit is reported here, before any run starts."""
    if not isinstance(config, dict):
        raise UserError(f"{source}: expected a mapping with method, metric and parameters")
    method = config.get("method")
    if method not in METHODS:
        raise UserError(f"{source}: method must be one of {', '.join(METHODS)}, got {method!r}")
    metric = config.get("metric") or {}
    if metric.get("name") not in METRICS:
        raise UserError(f"{source}: metric name must be one of {', '.join(METRICS)} (what train.py logs), "
                        f"got {metric.get('name')!r}")
    if metric.get("goal", "maximize") not in ("maximize", "minimize"):
        raise UserError(f"{source}: metric goal must be maximize or minimize")
    parameters = config.get("parameters")
    if not isinstance(parameters, dict) or not parameters:
        raise UserError(f"{source}: the search space is empty; add parameters")
    unknown = sorted(set(parameters) - SWEEPABLE)
    if unknown:
        raise UserError(f"{source}: unknown parameter(s) {', '.join(unknown)} (not options of partA/train.py, or options "
                        f"that say where runs execute); valid: {', '.join(sorted(SWEEPABLE))}")
    for name, spec in parameters.items():
        if not isinstance(spec, dict):
            raise UserError(f"{source}: parameter {name!r} must be a mapping, e.g. {name}: {{value: {spec!r}}} for a fixed "
                            f"value or {name}: {{values: [...]}} to search; got {spec!r}")
    searched = [n for n, s in parameters.items() if "value" not in s or "values" in s or "min" in s]
    if not searched:
        raise UserError(f"{source}: the search space is empty (every parameter is fixed)")
    if method == "grid" and any("values" not in s and "value" not in s for s in parameters.values()):
        raise UserError(f"{source}: grid search needs 'values' lists, not ranges")
    et = config.get("early_terminate")
    if et is not None and (not isinstance(et, dict) or et.get("type") != "hyperband"):
        raise UserError(f"{source}: early_terminate supports type hyperband only")
    for name, spec in parameters.items():
        if "min" in spec and spec.get("distribution", "uniform") not in DISTRIBUTIONS:
            raise UserError(f"{source}: parameter {name!r} has distribution {spec['distribution']!r}; "
                            f"offline sweeps support {', '.join(DISTRIBUTIONS)}")
    check_values(parameters, dict(base_options or {}), source)
    return config


def check_values(parameters, base, source):
    """Every value a run can be given goes through train.py's checks: first each parameter on its own (the error
    names the parameter that is wrong), then each with the sweep's fixed values (a combination that cannot work)."""
    fixed = {n: s["value"] for n, s in parameters.items() if "value" in s}
    for together in (False, True):
        for name, spec in parameters.items():
            for value in _values_of(name, spec):
                options = {**base, **(fixed if together else {}), name: value}
                try:
                    check_type(name, value)
                    model_kwargs, cfg = split_options(options)
                    CNNConfig(**model_kwargs, input_size=cfg.image_size)
                except (UserError, TypeError, ValueError) as err:
                    others = {k: v for k, v in fixed.items() if k != name}
                    with_fixed = f" together with the fixed values {others}" if together and others else ""
                    raise UserError(f"{source}: parameter {name}={value!r}{with_fixed} is rejected by train.py: "
                                    f"{getattr(err, 'message', err)}") from None


def option_type(name):
    """The Python type train.py's option `name` takes (int, float, bool, str), or None (lists, several types)."""
    declared = {**{f.name: f.type for f in fields(TrainConfig)}, **{f.name: f.type for f in fields(CNNConfig)},
                "base_filters": int, "organisation": str}[name]
    union = typing.get_origin(declared) is typing.Union  # Optional[int]: an int or nothing; List[int] is a list
    kinds = [t for t in (typing.get_args(declared) if union else (declared,)) if t is not type(None)]
    return kinds[0] if len(kinds) == 1 and kinds[0] in (int, float, bool, str) else None


def check_type(name, value):
    """A value of the type train.py's option takes: `epochs: 1e9` is a float, refused as `--epochs 1e9` is."""
    kind = option_type(name)
    numbers = (int, float) if kind is float else (kind,)
    if kind is not None and (not isinstance(value, numbers) or (isinstance(value, bool) and kind is not bool)):
        word = {int: "a whole number", float: "a number", bool: "true or false", str: "text"}[kind]
        raise UserError(f"must be {word}, got {type(value).__name__} {value!r}")


# ------------------------------------------------------------------------ search space

DISTRIBUTIONS = ("uniform", "int_uniform", "log_uniform_values", "log_uniform", "q_uniform", "q_log_uniform_values")


def as_choice(value):
    """Optuna's categorical choices are None, bool, int, float or str: a list (e.g. filters) travels as JSON."""
    return json.dumps(value) if isinstance(value, (list, dict)) else value


def suggest(trial, config):
    """The params of one run: each parameter of the sweep YAML asked of the Optuna trial."""
    params = {}
    for name, spec in config["parameters"].items():
        if "value" in spec:
            params[name] = spec["value"]
        elif "values" in spec:
            chosen = trial.suggest_categorical(name, [as_choice(v) for v in spec["values"]])
            params[name] = next((v for v in spec["values"] if as_choice(v) == chosen), chosen)
        else:
            params[name] = _suggest_range(trial, name, spec)
    return plain_data(params)


def _suggest_range(trial, name, spec):
    low, high, kind = spec["min"], spec["max"], spec.get("distribution")
    if kind is None:
        kind = "int_uniform" if isinstance(low, int) and isinstance(high, int) else "uniform"
    if kind == "int_uniform":
        return trial.suggest_int(name, int(low), int(high))
    if kind == "log_uniform":  # wandb: min and max are natural-log exponents
        return trial.suggest_float(name, math.exp(low), math.exp(high), log=True)
    if kind in ("log_uniform_values", "q_log_uniform_values"):
        return trial.suggest_float(name, float(low), float(high), log=True)
    step = spec.get("q") if kind == "q_uniform" else None
    return trial.suggest_float(name, float(low), float(high), step=step)


def discrete_points(config):
    """Every configuration of a sweep whose parameters all take listed values, or None (a range)."""
    names, choices = [], []
    for name, spec in config["parameters"].items():
        if "values" not in spec and "value" not in spec:
            return None
        names.append(name)
        choices.append(spec["values"] if "values" in spec else [spec["value"]])
    if np.prod([len(c) for c in choices], dtype=float) > MAX_ENUMERATED:
        return None
    return [dict(zip(names, combo)) for combo in itertools.product(*choices)]


MAX_ENUMERATED = 100_000  # discrete spaces up to this size are listed to find their untried points


def make_sampler(config, sweep_seed, proposal):
    """The Optuna sampler of the YAML's method, re-made for every proposal with a seed that counts the
    proposals so far: the same sweep seed and history give the same proposals. A grid is walked in the
    listed order, as wandb does, by `_propose` itself: Optuna's GridSampler shuffles it, and ends an
    exhausted grid with `Study.stop`, which only works inside `Study.optimize`."""
    import optuna

    seed = sweep_seed * 100_003 + proposal
    if config["method"] in ("grid", "random"):
        return optuna.samplers.RandomSampler(seed=seed)
    return optuna.samplers.TPESampler(seed=seed, n_startup_trials=BAYES_RANDOM_STARTS)


BAYES_RANDOM_STARTS = 8  # random proposals before TPE models the results (its default: 10)


def first_rung(early_terminate):
    """The first epoch at which wandb's hyperband compares runs (its min_iter, or max_iter / eta^s)."""
    eta = int(early_terminate.get("eta", 3))
    if "min_iter" in early_terminate:
        return int(early_terminate["min_iter"])
    return max(1, int(early_terminate["max_iter"] / eta ** int(early_terminate.get("s", 0))))


def make_pruner(config):
    import optuna

    et = config.get("early_terminate")
    if not et:
        return optuna.pruners.NopPruner()
    return optuna.pruners.SuccessiveHalvingPruner(min_resource=first_rung(et), reduction_factor=int(et.get("eta", 3)))


def params_key(params):
    return json.dumps(params, sort_keys=True, default=str)



def stored_config(folder):
    """The sweep config kept in a sweep folder (config.yaml), checked."""
    folder = Path(folder)
    return read_state(folder / "config.yaml", SweepConfig,
                      f"it is the config sweep {folder.name} runs; copy the sweep's YAML there again to continue it, "
                      f"or start a new sweep with another --name (the runs stay in {folder.parent.parent})")
