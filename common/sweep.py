"""Hyperparameter sweeps: wandb's sweep YAML, run online (wandb) or by a local controller.

Local controller (offline, no account needed): the PyPI package `sweeps` (wandb's own grid /
random / bayes search and hyperband code) proposes runs; the sweep's state lives in a folder
(`runs/sweeps/<name>/`: the config and one JSON file per run). Agents — threads, processes or
machines sharing the folder — take a file lock to propose a run, so no two agents ever run the
same grid point; hyperband is applied between epochs; a run left "running" by a dead agent is
resumed from its last checkpoint by the next agent. Sweep runs train on the validation split
only: they go through `common.from_scratch.run_scratch`, which never sees the test folder.
"""
import copy
import fcntl
import itertools
import json
import os
import socket
import threading
import time
import traceback
import uuid
import warnings
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import yaml

from common.errors import UserError
from common.io import load_json, save_json, save_text
from common.locks import process_alive, process_identity
from common.models import CNNConfig
from common.from_scratch import MODEL_KEYS, TRAIN_KEYS, split_options
from common.training import CONTEXT_KEYS, plain_data

# `sweeps` 0.3.0 was written for pydantic 1: pydantic 2 warns about its config keys on import. Harmless here.
warnings.filterwarnings("ignore", message="Valid config keys have changed in V2", category=UserWarning)

METRICS = ("val_acc", "val_loss", "train_acc", "train_loss")
METHODS = ("grid", "random", "bayes")
# Options a sweep may not set: the run context says where and how runs execute, not what is trained.
RESERVED = CONTEXT_KEYS | {"resume"}


# ------------------------------------------------------------------------------ config

def load_sweep_config(path) -> dict:
    path = Path(path)
    if not path.is_file():
        raise UserError(f"sweep config {path} does not exist")
    try:
        config = yaml.safe_load(path.read_text())
    except yaml.YAMLError as err:
        raise UserError(f"{path} is not valid YAML: {str(err).splitlines()[0]}") from None
    validate_sweep_config(config, source=str(path))
    return config


def _values_of(name, spec):
    """Concrete values a parameter spec can take (for validation), or [] for a continuous range."""
    if not isinstance(spec, dict):
        raise UserError(f"parameter {name!r} must be a mapping like {{values: [...]}} or {{value: x}}")
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
    known = (MODEL_KEYS | TRAIN_KEYS) - RESERVED
    unknown = sorted(set(parameters) - known)
    if unknown:
        raise UserError(f"{source}: unknown parameter(s) {', '.join(unknown)}; valid: {', '.join(sorted(known))}")
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
    base = dict(base_options or {})
    fixed = {n: s["value"] for n, s in parameters.items() if "value" in s}
    for name, spec in parameters.items():
        for value in _values_of(name, spec):
            try:
                model_kwargs, cfg = split_options({**base, **fixed, name: value})
                CNNConfig(**model_kwargs, input_size=cfg.image_size)
            except UserError as err:
                raise UserError(f"{source}: parameter {name}={value!r} is rejected by train.py: {err.message}") from None
            except (TypeError, ValueError) as err:
                raise UserError(f"{source}: parameter {name}={value!r} is invalid: {err}") from None
    import sweeps

    problems = sweeps.schema_violations_from_proposed_config(config)
    if problems:
        raise UserError(f"{source}: {problems[0]}")
    return config


# ------------------------------------------------------------------------ sweep folder

class LocalSweep:
    """A sweep's state on disk: config.yaml, options.json and runs/<id>.json, guarded by a file lock."""

    def __init__(self, folder):
        self.folder = Path(folder)
        self.runs_folder = self.folder / "runs"

    # Options that change what a sweep's runs compute: continuing with another value is refused.
    RESULT_OPTIONS = ("data_dir", "seed")

    @classmethod
    def create_or_open(cls, folder, config, base_options, log=print):
        """Create the sweep folder, or open it to continue — under the sweep's lock, so two agents starting
        together never half-write it. Continuing with a changed config or data/seed is refused with the
        way out; changed run-context options (device, wandb, cache) are taken and said."""
        sweep = cls(folder)
        with sweep.lock():
            if (sweep.folder / "config.yaml").exists():
                stored = yaml.safe_load((sweep.folder / "config.yaml").read_text())
                if stored != config:
                    raise UserError(f"sweep folder {folder} holds a different config; use another --name to start a "
                                    f"new sweep, or the same config to continue this one")
                old = sweep.base_options
                for key in cls.RESULT_OPTIONS:
                    if key in base_options and key in old and old[key] != base_options[key]:
                        raise UserError(f"sweep {sweep.folder.name} was started with --{key.replace('_', '-')} "
                                        f"{old[key]}, you gave {base_options[key]}: use --name <new name> for a new "
                                        f"sweep, or remove {sweep.folder} to start this one over")
                changed = {k: v for k, v in base_options.items() if old.get(k) != v}
                if changed:
                    log(f"sweep {sweep.folder.name}: continuing with {', '.join(f'{k}={v}' for k, v in changed.items())} "
                        f"(was {', '.join(f'{k}={old.get(k)}' for k in changed)})")
                    save_json(sweep.folder / "options.json", {**old, **base_options})
            else:
                sweep.runs_folder.mkdir(parents=True, exist_ok=True)
                save_text(sweep.folder / "config.yaml", yaml.safe_dump(config, sort_keys=False))
                save_json(sweep.folder / "options.json", base_options)
        return sweep

    @property
    def config(self):
        return yaml.safe_load((self.folder / "config.yaml").read_text())

    @property
    def base_options(self):
        return load_json(self.folder / "options.json")

    @contextmanager
    def lock(self):
        self.folder.mkdir(parents=True, exist_ok=True)
        with open(self.folder / "lock", "a+") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)  # one agent at a time proposes or updates
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    def runs(self):
        """Every run record, oldest first. File names are random ids: in their order the search code would see
        the same history shuffled differently from sweep to sweep, and its proposals would not follow from the seed."""
        runs = [load_json(p) for p in self.runs_folder.glob("*.json")]
        return sorted(runs, key=lambda r: (r.get("created", 0.0), r.get("id", "")))

    def save_run(self, run):
        save_json(self.runs_folder / f"{run['id']}.json", run)

    def sweep_runs(self):
        """Our run files as `sweeps.SweepRun`s (what its search and stopping code read)."""
        from sweeps import RunState, SweepRun

        states = {"running": RunState.running, "finished": RunState.finished, "failed": RunState.failed,
                  "stopped": RunState.finished, "crashed": RunState.crashed}
        return [SweepRun(name=r["id"], state=states.get(r["state"], RunState.running),
                         config={k: {"value": v} for k, v in r["params"].items()},
                         history=r.get("history", []), summary_metrics=r.get("summary", {}),
                         search_info=r.get("search_info"))
                for r in self.runs()]


HEARTBEAT_SECONDS = 30  # an agent's thread refreshes its run's heartbeat this often ...
STALE_AFTER_SECONDS = 180  # ... and a run whose heartbeat is older belongs to a dead agent (other hosts)


def _alive(run):
    """Is the agent that holds this run still running?

    Same host: its pid exists *and* started when the agent did (a recycled pid is another
    process; another user's live pid counts as alive). Another host: its heartbeat, written by a
    thread every HEARTBEAT_SECONDS, is recent.
    """
    agent = run.get("agent") or {"host": run.get("host"), "pid": run.get("pid"), "started": None}
    if agent.get("host") == socket.gethostname():
        return process_alive(agent)
    return time.time() - run.get("heartbeat", 0) < STALE_AFTER_SECONDS


class Heartbeat:
    """Refresh a run's heartbeat from a thread while it trains (epochs can be longer than the stale limit)."""

    def __init__(self, sweep, run_id, every=HEARTBEAT_SECONDS):
        self.sweep, self.run_id, self.every = sweep, run_id, every
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._beat, daemon=True)

    def _beat(self):
        while not self.stop.wait(self.every):
            try:
                with self.sweep.lock():
                    run = load_json(self.sweep.runs_folder / f"{self.run_id}.json")
                    run["heartbeat"] = time.time()
                    self.sweep.save_run(run)
            except (OSError, ValueError):
                pass  # a missed beat is retried; the folder may be briefly unavailable

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        self.thread.join()


def _seeded(seed, propose):
    """Call `propose` with Python's and NumPy's global RNGs (what `sweeps` samples from) seeded:
    the same sweep seed and history give the same proposal. The RNG states are restored after."""
    import random

    import numpy as np

    py_state, np_state = random.getstate(), np.random.get_state()
    random.seed(seed)
    np.random.seed(seed % 2**32)
    try:
        return propose()
    finally:
        random.setstate(py_state)
        np.random.set_state(np_state)


PROPOSAL_RETRIES = 5  # fresh draws before a repeated proposal is replaced by an untried point of the space
MAX_ENUMERATED = 100_000  # discrete spaces up to this size are enumerated to find their untried points


def params_key(params):
    return json.dumps(params, sort_keys=True, default=str)


def discrete_points(config):
    """Every configuration of a sweep whose parameters all take listed values, or None (a continuous
    distribution, or a space too large to list)."""
    names, choices, size = [], [], 1
    for name, spec in config["parameters"].items():
        if "value" in spec:
            values = [spec["value"]]
        elif "values" in spec:
            values = list(spec["values"])
        else:
            return None
        size *= len(values)
        if size > MAX_ENUMERATED:
            return None
        names.append(name)
        choices.append(values)
    return [dict(zip(names, combo)) for combo in itertools.product(*choices)]


def first_band(early_terminate):
    """The first epoch at which hyperband compares runs (the smallest of `sweeps`' bands), or None."""
    if not early_terminate or early_terminate.get("type") != "hyperband":
        return None
    eta = early_terminate.get("eta", 3)
    if "max_iter" in early_terminate:  # `sweeps` reads this form first when both are given
        bands = [early_terminate["max_iter"] / eta ** i for i in range(1, int(early_terminate.get("s", 0)) + 1)]
        bands = [int(b) for b in bands if b >= 1]
        return min(bands) if bands else None
    return int(early_terminate["min_iter"]) if "min_iter" in early_terminate else None


def runs_as_bayes_sees_them(config, sweep_runs):
    """The runs bayes fits its model to: with hyperband, every run cut to hyperband's first band.

    `sweeps`' bayes scores a run by the best metric in its whole history, so a configuration that
    hyperband stopped at epoch 3 scores its epoch-3 accuracy beside the 20-epoch accuracy of a run that
    went on: stopped reads as bad when it only means short, and the model steers towards whatever ran
    longest. At the first band every run has a value of the same kind — the one hyperband itself ranks
    by. Replaying the 36-config sweep-bench grid (60 proposal seeds): median fraction of the grid's
    epochs to reach its best 0.23 → 0.19 (README: "How much does the sweep save?"). A run that has
    not reached the band yet counts as in flight. Only the local controller does this: wandb's own
    service scores runs its way."""
    from sweeps import RunState

    band = first_band(config.get("early_terminate")) if config.get("method") == "bayes" else None
    if band is None:
        return sweep_runs
    cut = []
    for run in sweep_runs:
        reached = len(run.history) >= band
        state = RunState.finished if reached and run.state == RunState.running else run.state
        summary = {} if reached or run.state == RunState.running else run.summary_metrics
        cut.append(run.copy(update={"state": state, "history": run.history[:band], "summary_metrics": summary}))
    return cut


def listed_by_position(config, sweep_runs):
    """(config, runs, decode) for bayes: every parameter given as a list of values is shown to `sweeps` by the
    1-based position of its value, and `decode` turns a proposal's positions back into values.

    Why: `sweeps` 0.3.0 encodes runs for its Gaussian process with `if not value: continue`, so a falsy value
    (False, 0, 0.0, "") is never encoded and lands where the list's first value does: every
    batch_norm=False run looked like a batch_norm=True run, and bayes could not tell them apart (tested).
    Positions from 1 are never falsy, and keep the list's order, which is all the model ever used."""
    listed = {name: spec["values"] for name, spec in config["parameters"].items() if "values" in spec}
    if config.get("method") != "bayes" or not listed:
        return config, sweep_runs, lambda params: params
    position = {name: {params_key(v): i + 1 for i, v in enumerate(values)} for name, values in listed.items()}
    encoded = copy.deepcopy(config)
    for name, values in listed.items():
        encoded["parameters"][name]["values"] = list(range(1, len(values) + 1))

    def encode(run):
        run_config = {name: {"value": position[name].get(params_key(spec["value"]), spec["value"])}
                      if name in listed else spec for name, spec in run.config.items()}
        return run.copy(update={"config": run_config})

    def decode(params):
        return {name: listed[name][int(value) - 1] if name in listed else value for name, value in params.items()}

    return encoded, [encode(run) for run in sweep_runs], decode


CANDIDATES = 1000  # points expected improvement is evaluated at per proposal (as `sweeps` does)


def candidate_points(params, count, rng):
    """`count` random points of the search space, in `sweeps`' [0, 1] coordinates — each listed or integer
    parameter only at the coordinates its values are encoded at."""
    from sweeps.params import HyperParameter

    columns = []
    for param in params.searchable_params:
        if param.type in (HyperParameter.CATEGORICAL, HyperParameter.CATEGORICAL_PROB):
            columns.append(param.cdf(rng.integers(0, len(param.config["values"]), count)))
        elif param.type == HyperParameter.INT_UNIFORM:
            columns.append(param.cdf(rng.integers(param.config["min"], param.config["max"] + 1, count)))
        else:
            columns.append(rng.uniform(0, 1, count))
    return np.stack(columns, 1)


def propose_bayes(config, sweep_runs, untried, seed):
    """(params, search_info): the point of highest expected improvement under `sweeps`' Gaussian process,
    asked only at points that exist — the untried points of a discrete space (`untried`), else random
    points with every listed parameter at one of its values.

    Why not `sweeps.next_run`: it asks the model at random points of the continuous cube [0, 1]^d and
    rounds each listed coordinate to a value afterwards. Expected improvement is largest far from every
    run (where the model is least sure), so the winner sat at a cube edge and was rounded to a value
    the model had not been asked about — on the 36-config sweep-bench grid its bayes chose no better
    than random proposals under the same hyperband (replays: median 0.21 of the grid's epochs against 0.18); asked at
    the 36 points themselves, 0.14 (README: "How much does the sweep save?"). Tried points are left
    out, so bayes never proposes a configuration twice; of more than CANDIDATES untried points, a random
    CANDIDATES are asked."""
    import random

    from sweeps import SweepRun
    from sweeps.bayes_search import _construct_gp_data, bayes_baseline_validate_and_fill, next_sample

    if untried is not None and len(untried) == 1:
        # nothing to choose; and `sweeps`' fallback for a poorly fitted model draws randint(0, points − 1),
        # which fails on one point
        return untried[0], {"last_untried_point": True}
    search_config, seen, decode = listed_by_position(config, runs_as_bayes_sees_them(config, sweep_runs))
    search_config = bayes_baseline_validate_and_fill(search_config)
    params, sample_X, current_X, y, warnings = _construct_gp_data(seen, search_config)
    if untried is not None:
        if len(untried) > CANDIDATES:  # its prediction builds a points × points covariance: 100,000 would take 80 GB
            untried = random.Random(seed).sample(untried, CANDIDATES)
        _, as_runs, _ = listed_by_position(config, [SweepRun(config={k: {"value": v} for k, v in p.items()})
                                                    for p in untried])
        test_X = params.normalize_runs_as_array(as_runs)
    else:
        test_X = candidate_points(params, CANDIDATES, np.random.default_rng(seed))
    best_x, probability, predicted, predicted_std, improvement, fit_warnings = _seeded(seed, lambda: next_sample(
        sample_X=sample_X, sample_y=y, test_X=test_X, current_X=current_X if len(current_X) else None))
    info = plain_data({"success_probability": float(probability), "predicted_value": float(predicted),
                       "predicted_value_std_dev": float(predicted_std), "expected_improvement": float(improvement),
                       "warnings": warnings + fit_warnings})
    row = int(np.abs(test_X - best_x).sum(1).argmin())
    if untried is not None:
        return untried[row], info
    proposed = {name: spec["value"] for name, spec in search_config["parameters"].items() if "value" in spec}
    for param in params.searchable_params:
        proposed[param.name] = param.ppf(test_X[row, params.param_names_to_index[param.name]])
    return plain_data(decode(proposed)), info


def propose_untried(config, sweep_runs, tried_runs, seed):
    """(params, search_info) of the next run — never a configuration already run; None when the sweep is done.

    A run is fully determined by its configuration, the data and the seed, so running a configuration
    twice spends its epochs on a result we already have. Bayes chooses among the untried points of a discrete
    space (`propose_bayes`). Random search on a small discrete space draws repeats often: a repeat is
    redrawn (other seeds), then replaced by a random untried point; a continuous space practically never
    repeats."""
    import random

    import sweeps

    tried = {params_key(run["params"]) for run in tried_runs}

    def untried_points():  # None for a continuous (or too large to list) space
        points = discrete_points(config)
        return None if points is None else [p for p in points if params_key(p) not in tried]

    if config["method"] == "bayes":
        untried = untried_points()
        return None if untried == [] else propose_bayes(config, sweep_runs, untried, seed)
    proposal = None
    for attempt in range(PROPOSAL_RETRIES):
        proposal = _seeded(seed + 7919 * attempt, lambda: sweeps.next_run(config, sweep_runs))
        if proposal is None:  # a finished grid
            return None
        # plain numbers: `sweeps` proposes numpy scalars, which checkpoints' weights_only loading refuses
        params = plain_data({k: v["value"] for k, v in proposal.config.items()})
        if params_key(params) not in tried or config["method"] == "grid":
            return params, proposal.search_info
    untried = untried_points()  # listed only now: most proposals are not repeats
    if untried is None:
        return params, proposal.search_info
    if not untried:
        return None  # every point of a discrete space has been run
    return plain_data(random.Random(seed).choice(untried)), {"replaced_repeat": params}


def claim_next_run(sweep: LocalSweep, count: int):
    """Under the lock: an orphaned run to resume, else a new proposal, else None (sweep done)."""
    import sweeps

    with sweep.lock():
        runs = sweep.runs()
        config = sweep.config
        for run in runs:
            if run["state"] == "running" and not _alive(run):
                if "early_terminate" in config and any(r.name == run["id"] for r in
                                                       sweeps.stop_runs(config, sweep.sweep_runs())):
                    run.update(state="stopped", ended=time.time())  # hyperband had stopped it: not resumed to the end
                    sweep.save_run(run)
                    continue
                run.update(agent=process_identity(), pid=os.getpid(), host=socket.gethostname(), heartbeat=time.time(),
                           resumed=True)
                sweep.save_run(run)
                return run
        counted = [r for r in runs if r["state"] != "failed"]  # a failed run does not use up the sweep's count
        failed = len(runs) - len(counted)
        if len(counted) >= count:
            return None
        if failed >= max(3, count):
            raise UserError(f"sweep {sweep.folder.name}: {failed} runs failed (errors in {sweep.runs_folder}); fix the "
                            f"cause and continue the sweep, or remove the folder")
        proposal = propose_untried(config, sweep.sweep_runs(), counted, sweep.base_options.get("seed", 42) * 1000 + len(runs))
        if proposal is None:  # a finished grid, or every point of a discrete space has been run
            return None
        params, search_info = proposal
        run_id = uuid.uuid4().hex[:8]
        run = {"id": run_id, "params": params, "state": "running",
               "history": [], "summary": {}, "agent": process_identity(), "pid": os.getpid(), "host": socket.gethostname(),
               "heartbeat": time.time(), "created": time.time(), "search_info": search_info}
        sweep.save_run(run)
        return run


def _record_epoch(sweep, run_id, metrics):
    """Append an epoch to the run's history; True when hyperband says this run should stop."""
    import sweeps

    with sweep.lock():
        path = sweep.runs_folder / f"{run_id}.json"
        run = load_json(path)
        run["history"] = [h for h in run["history"] if h.get("epoch") != metrics["epoch"]] + [
            {k: v for k, v in metrics.items() if isinstance(v, (int, float))}]
        run["heartbeat"] = time.time()
        sweep.save_run(run)
        config = sweep.config
        if "early_terminate" not in config:
            return False
        to_stop = sweeps.stop_runs(config, sweep.sweep_runs())
        return any(r.name == run_id for r in to_stop)


def _finish(sweep, run_id, state, record=None, error=None):
    with sweep.lock():
        run = load_json(sweep.runs_folder / f"{run_id}.json")
        run["state"] = state
        run["ended"] = time.time()
        if record is not None:
            run["summary"] = record.get("summary", {})
            run["record"] = str(Path(record.get("name", "")))
        if error:
            run["error"] = error
        sweep.save_run(run)


def scratch_trainer(runs_dir, data=None):
    """The real trainer for sweep runs: (options, should_stop, resume, extra) → run record."""
    from common.from_scratch import resume_scratch, run_scratch

    def train(options, should_stop, resume, extra):
        name = options["run_name"]
        if resume and (Path(runs_dir) / name / "last.pt").exists():
            return resume_scratch(name, {"quiet": True}, runs_dir=runs_dir, data=data, should_stop=should_stop)
        if (Path(runs_dir) / name).exists():  # a run that died before its first checkpoint starts over
            import shutil

            shutil.rmtree(Path(runs_dir) / name)
        return run_scratch(copy.deepcopy(options), should_stop=should_stop, data=data, extra=extra)

    return train


def run_agent(sweep: LocalSweep, count: int, runs_dir="runs", train=None, log=print):
    """Take runs from the sweep until it is done; returns the ids this agent ran."""
    train = train or scratch_trainer(runs_dir)
    done = []
    while True:
        run = claim_next_run(sweep, count)
        if run is None:
            return done
        name = f"{sweep.folder.name}-{run['id']}"
        options = {**sweep.base_options, **run["params"], "run_name": name, "runs_dir": runs_dir, "quiet": True}
        options.setdefault("wandb_group", sweep.folder.name)
        stop = lambda epoch, metrics, rid=run["id"]: _record_epoch(sweep, rid, metrics)  # noqa: E731
        extra = {"sweep": sweep.folder.name, "sweep_run": run["id"], "sweep_params": run["params"]}
        log(f"[agent {os.getpid()}] run {run['id']}{' (resumed)' if run.get('resumed') else ''}: {run['params']}")
        try:
            with Heartbeat(sweep, run["id"]):
                record = train(options, stop, bool(run.get("resumed")), extra)
            _finish(sweep, run["id"], "stopped" if record["status"] == "stopped" else "finished", record)
            log(f"[agent {os.getpid()}] run {run['id']} {record['status']}: best val acc "
                f"{record['summary'].get('best_val_acc', float('nan')):.4f}")
        except KeyboardInterrupt:
            raise  # leave the run "running": the next agent resumes it
        except Exception as err:  # a crashing run is recorded as failed; the sweep goes on
            _finish(sweep, run["id"], "failed", error=f"{type(err).__name__}: {err}\n{traceback.format_exc(limit=3)}")
            log(f"[agent {os.getpid()}] run {run['id']} failed: {type(err).__name__}: {err}")
        done.append(run["id"])


# ------------------------------------------------------------------------- wandb backend

def run_wandb_sweep(config, base_options, count, project, sweep_id=None, runs_dir="runs"):
    """Create (or join) a wandb sweep and run `count` runs of it in this process."""
    import wandb

    from common.from_scratch import run_scratch

    if sweep_id is None:
        try:
            sweep_id = wandb.sweep(sweep=config, project=project)
        except Exception as err:  # bad key, no permission, server error: one line, not wandb's traceback
            first = (str(err).strip().splitlines() or [""])[0]
            raise UserError(f"wandb could not create the sweep ({type(err).__name__}: {first}); check `wandb login`, "
                            f"or use --backend local") from None
        print(f"created wandb sweep {sweep_id}; more agents join with: make agent SWEEP={sweep_id}")

    def train():
        with wandb.init() as active:
            params = dict(active.config)
            name = f"wandb-{sweep_id.split('/')[-1]}-{active.id}"
            run_scratch({**base_options, **params, "run_name": name, "runs_dir": runs_dir, "quiet": True,
                         "wandb": "active", "wandb_project": project},
                        extra={"sweep": sweep_id, "sweep_params": params})

    wandb.agent(sweep_id, function=train, count=count, project=project)
    return sweep_id
