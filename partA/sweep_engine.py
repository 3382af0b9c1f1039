"""The local sweep and its agents: wandb's sweep YAML (checked and mapped onto Optuna by partA/sweep_config.py) run
offline on one Optuna journal in the sweep's folder, by any number of agents here or on machines sharing it.

What Optuna leaves to its user is here (docs/design.md, "Local sweeps"): agents take turns to propose, so no configuration
of a discrete space runs twice; a run whose agent died is resumed from its checkpoint by the next agent. Sweep runs
go through `partA.from_scratch.run_scratch`, which never sees the test folder. The wandb backend: sweep_wandb.py.
"""
import copy
import glob
import os
import random
import socket
import threading
import time
import traceback
import uuid
import warnings
from contextlib import contextmanager, nullcontext
from pathlib import Path

import yaml

from common.errors import UserError, describe
from common.io import save_json, save_text
from common.locks import file_lock, process_alive, process_identity
from common.run_records import COMPLETE, readable_record
from common.state import SweepOptions, SweepStorage, read_state, read_state_or_none
from partA.from_scratch import resume_scratch, run_scratch
from common.recipe import TrainConfig, plain_data
from partA.sweep_config import (as_choice, discrete_points, make_pruner, make_sampler, params_key, stored_config,
                                suggest)
from partA.sweep_storage import database_errors, database_lock, masked, rdb_storage, storage_url

# ------------------------------------------------------------------------ sweep folder

STATES = {"RUNNING": "running", "COMPLETE": "finished", "PRUNED": "stopped", "FAIL": "failed", "WAITING": "waiting"}


class LocalSweep:
    """A sweep's folder (docs/design.md, "Local sweeps"); its study is in the folder's journal.log or, with
    storage.json, in PostgreSQL (partA/sweep_storage.py)."""

    def __init__(self, folder):
        self.folder = Path(folder)

    @property
    def storage(self):
        """The study's database URL, or None: the journal in the folder."""
        stored = read_state_or_none(self.folder / "storage.json", SweepStorage)
        if stored is None and (self.folder / "storage.json").exists():
            raise UserError(f"{self.folder / 'storage.json'} is damaged; write {{\"url\": \"postgresql://...\"}} "
                            f"there again, or continue with --storage")
        return stored["url"] if stored else None

    # Options that change what a sweep's runs compute: continuing with another value is refused.
    RESULT_OPTIONS = ("data_dir", "seed")

    @classmethod
    def create_or_open(cls, folder, config, base_options, log=print, storage=None):
        """Create the sweep folder, or open it to continue — under the sweep's lock, so two agents starting
        together never half-write it. `storage`: a PostgreSQL URL for the study (kept in storage.json)."""
        sweep = cls(folder)
        url = storage_url(storage) if storage else None
        if url and (sweep.folder / "config.yaml").exists() and url != sweep.storage:  # no --storage: the kept one
            kept = masked(sweep.storage) if sweep.storage else "its folder's journal"
            raise UserError(f"sweep {sweep.folder.name} keeps its study in {kept}; continue it with "
                            f"{'--storage ' + kept if sweep.storage else 'no --storage'}, or use another --name")
        if url:
            save_json(sweep.folder / "storage.json", {"url": url})
        with sweep.lock():
            if (sweep.folder / "config.yaml").exists():
                if sweep.config != config:
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
                save_text(sweep.folder / "config.yaml", yaml.safe_dump(config, sort_keys=False))
                save_json(sweep.folder / "options.json", base_options)
        return sweep

    @property
    def config(self):
        return stored_config(self.folder)

    @property
    def base_options(self):
        return read_state(self.folder / "options.json", SweepOptions,
                          f"it holds the options every run of sweep {self.folder.name} shares; restore it, or start "
                          f"a new sweep with another --name (the runs stay in {self.folder.parent.parent})")

    def recorded_runs(self):
        """{sweep run id: run folder name} of the runs that ended, by their records: what the journal must know."""
        runs_dir = self.folder.parent.parent  # <runs>/sweeps/<name>
        found = {}
        for path in sorted(runs_dir.glob(f"{glob.escape(self.folder.name)}-*/record.json")):
            record = readable_record(path.parent) or {}
            if record.get("sweep") == self.folder.name and record.get("status") in COMPLETE:
                found[record.get("sweep_run")] = path.parent.name
        return found

    def check_journal(self, runs):
        """The journal must know every run whose record names this sweep: one deleted or replaced mid-sweep would
        otherwise start the sweep over silently (Optuna skips entries about trials it does not know)."""
        lost = [name for run_id, name in self.recorded_runs().items() if run_id not in {r["id"] for r in runs}]
        if lost:
            raise UserError(f"sweep journal {self.journal} does not know {len(lost)} finished run(s) of "
                            f"sweep {self.folder.name} (e.g. {lost[0]}): it was deleted or replaced. Restore it to "
                            f"continue the sweep, or start a new sweep with another --name (the runs stay)")

    @contextmanager
    def lock(self):
        """One agent at a time proposes: the folder's file lock and, for a database study, its advisory lock."""
        url = self.storage
        with file_lock(self.folder / "lock"), database_lock(url, self.folder.name) if url else nullcontext():
            yield

    def study(self):
        """The sweep's Optuna study (created on first use): on the journal file in the folder, or in the database.
        A database study holds its config, so that agents on other machines with another YAML are refused."""
        import optuna

        optuna.logging.set_verbosity(optuna.logging.WARNING)  # the agent prints its own one line per run
        config = self.config
        direction = config["metric"].get("goal", "maximize")
        url = self.storage
        with self.storage_errors():
            if url:
                storage = rdb_storage(url)
            else:
                from optuna.storages import JournalStorage
                from optuna.storages.journal import JournalFileBackend

                _drop_torn_tail(self.journal)
                storage = JournalStorage(JournalFileBackend(str(self.journal)))
            study = optuna.create_study(study_name=self.folder.name, storage=storage, load_if_exists=True,
                                        direction=direction, pruner=make_pruner(config))
        if url:
            shared = study.user_attrs.get("sweep_config")
            if shared is None:
                study.set_user_attr("sweep_config", plain_data(config))
            elif shared != plain_data(config):
                raise UserError(f"sweep {self.folder.name} in the database runs another config than "
                                f"{self.folder / 'config.yaml'}; give the same YAML to join it, or use another --name")
        return study

    @property
    def journal(self):
        return self.folder / "journal.log"

    def storage_errors(self):
        """The storage's own errors as one line: a damaged journal, or a database that cannot be reached."""
        if self.storage:
            return database_errors(self.storage)
        return journal_errors(self.journal)

    def runs(self, study=None):
        """Every run, oldest first, as a record: id, params, state (running / finished / stopped / failed),
        history (the metric per epoch), summary, created, agent, heartbeat; repeated proposals are not runs."""
        if not self.storage and not self.journal.exists():
            return []
        metric = self.config["metric"]["name"]
        study = study or self.study()
        with self.storage_errors():
            trials = study.get_trials(deepcopy=False)
        latest = {t.user_attrs["run_id"]: t for t in trials  # trials come in creation order: the newest wins
                  if "run_id" in t.user_attrs and "duplicate_of" not in t.user_attrs}
        return sorted((_record(trial, metric) for trial in latest.values()), key=lambda r: (r["created"], r["id"]))


@contextmanager
def journal_errors(journal):
    """Optuna replays the journal on every read; an entry of the wrong shape fails inside it (AssertionError,
    KeyError, TypeError...). Its format is Optuna's own: say one line instead of re-checking it here."""
    try:
        yield
    except (ValueError, KeyError, TypeError, AssertionError, IndexError, AttributeError) as err:
        raise UserError(f"sweep journal {journal} is damaged ({describe(err, limit=80)}); move it aside "
                        f"to start sweep {Path(journal).parent.name} over (its runs stay in runs/), or restore it from a "
                        f"copy") from None


def _drop_torn_tail(journal):
    """A writer killed mid-append leaves a last line without its newline; the next append would glue onto it
    and damage the journal for good. Cut it off (under Optuna's own journal lock), with a warning."""
    from optuna.storages.journal import JournalFileSymlinkLock

    if not journal.is_file() or journal.stat().st_size == 0:
        return
    with open(journal, "rb") as handle:  # the common case costs one byte: the journal ends with its newline
        handle.seek(-1, os.SEEK_END)
        if handle.read(1) == b"\n":
            return
    lock = JournalFileSymlinkLock(str(journal))
    lock.acquire()
    try:
        data = journal.read_bytes()
        if not data.endswith(b"\n"):
            keep = data.rfind(b"\n") + 1
            with open(journal, "r+b") as handle:
                handle.truncate(keep)
            warnings.warn(f"sweep journal {journal}: dropped a torn last entry ({len(data) - keep} bytes) left by a "
                          f"killed agent")
    finally:
        lock.release()


def _record(trial, metric):
    attrs = trial.user_attrs
    return {"id": attrs["run_id"], "trial": trial.number, "params": attrs["params"], "state": STATES[trial.state.name],
            "history": [{"epoch": step, metric: value} for step, value in sorted(trial.intermediate_values.items())],
            "summary": attrs.get("summary", {}), "created": attrs.get("created", 0.0), "agent": attrs.get("agent", {}),
            "heartbeat": attrs.get("heartbeat", 0.0), "resumed": attrs.get("resumed", False), "error": attrs.get("error"),
            "record": attrs.get("record")}


HEARTBEAT_SECONDS = 30  # an agent's thread refreshes its run's heartbeat this often ...
STALE_AFTER_SECONDS = 180  # ... and a run whose heartbeat is older belongs to a dead agent (other hosts)


def _alive(run):
    """Is the agent that holds this run still running (docs/design.md, "Local sweeps")?"""
    agent = run.get("agent") or {}
    if agent.get("host") == socket.gethostname():
        return process_alive(agent)
    return time.time() - run.get("heartbeat", 0) < STALE_AFTER_SECONDS


class Heartbeat:
    """Refresh a run's heartbeat from a thread while it trains (epochs can be longer than the stale limit)."""

    def __init__(self, trial, every=HEARTBEAT_SECONDS):
        self.trial, self.every = trial, every
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._beat, daemon=True)

    def _beat(self):
        while not self.stop.wait(self.every):
            try:
                self.trial.set_user_attr("heartbeat", time.time())
            except Exception:  # noqa: BLE001 — a missed beat is retried; the folder or database may be briefly away
                pass

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        self.thread.join()


# ------------------------------------------------------------------------ agents

PROPOSAL_RETRIES = 5  # fresh proposals before a repeated one is replaced by an untried point of the space


def _start(trial, run_id, params, resumed=False):
    """Mark an Optuna trial as one of our runs (held by this process) and return its record."""
    now = time.time()
    for key, value in {"run_id": run_id, "params": params, "agent": process_identity(), "heartbeat": now,
                       "created": now, "resumed": resumed}.items():
        trial.set_user_attr(key, value)
    return {"id": run_id, "params": params, "trial": trial, "resumed": resumed, "history": []}


def _answer_from(trial, earlier):
    """A repeated proposal gets the earlier run's result (Optuna's advice for repeats): the sampler learns
    nothing new, and no epoch is spent on a result we have."""
    import optuna

    trial.set_user_attr("duplicate_of", earlier.user_attrs["run_id"])
    for step, value in earlier.intermediate_values.items():
        trial.report(value, step)
    finished = earlier.state == optuna.trial.TrialState.COMPLETE
    return finished, earlier.value if finished else None


def _resume_orphan(sweep, study, trial_of, run):
    """A run whose agent died, asked again as a new trial with its run id (the trainer resumes its checkpoint) and
    the epochs it reported: the new record, or None when successive halving had already stopped it."""
    import optuna

    study.tell(trial_of[run["id"]].number, state=optuna.trial.TrialState.FAIL)
    study.enqueue_trial(dict(trial_of[run["id"]].params))  # as Optuna recorded them
    trial = study.ask()
    claimed = _start(trial, run["id"], run["params"], resumed=True)
    metric = sweep.config["metric"]["name"]
    for entry in run["history"]:
        trial.report(entry[metric], entry["epoch"])
        if trial.should_prune():  # its agent died after the stop was decided, before it was recorded
            study.tell(trial, state=optuna.trial.TrialState.PRUNED)
            return None
    claimed["history"] = run["history"]
    return claimed


def _run_at(study, config, point):
    """A new run at a chosen point of the space (Optuna's enqueue_trial: the sampler is not asked)."""
    study.enqueue_trial({n: as_choice(v) for n, v in point.items() if "values" in config["parameters"][n]})
    trial = study.ask()
    return _start(trial, uuid.uuid4().hex[:8], suggest(trial, config))


def _propose(study, config, tried, sweep_seed, proposal):
    """A new run's record (never a configuration already run), or None when a discrete space is done."""
    import optuna

    points = discrete_points(config)
    untried = None if points is None else [p for p in points if params_key(p) not in tried]
    if untried == []:
        return None
    if config["method"] == "grid":
        return _run_at(study, config, untried[0])
    for attempt in range(PROPOSAL_RETRIES):
        study.sampler = make_sampler(config, sweep_seed, proposal + 7919 * attempt)
        trial = study.ask()
        params = suggest(trial, config)
        earlier = tried.get(params_key(params))
        if earlier is None:
            return _start(trial, uuid.uuid4().hex[:8], params)
        finished, value = _answer_from(trial, earlier)
        study.tell(trial, value) if finished else study.tell(trial, state=optuna.trial.TrialState.PRUNED)
    if untried is None:  # a range: a repeat is all but impossible, and taken as it is
        return _start(study.ask(), uuid.uuid4().hex[:8], params)
    return _run_at(study, config, random.Random(sweep_seed * 100_003 + proposal).choice(untried))


def claim_next_run(sweep: LocalSweep, count: int):
    """Under the lock: an orphaned run to resume, else a new proposal, else None (sweep done)."""
    with sweep.lock():
        config = sweep.config
        study = sweep.study()
        with sweep.storage_errors():
            trials = study.get_trials(deepcopy=False)
        trial_of = {t.user_attrs["run_id"]: t for t in trials if "run_id" in t.user_attrs
                    and "duplicate_of" not in t.user_attrs}
        runs = sweep.runs(study)
        sweep.check_journal(runs)
        orphans = [run for run in runs if run["state"] == "running" and not _alive(run)]
        for run in orphans:
            claimed = _resume_orphan(sweep, study, trial_of, run)
            if claimed is not None:
                return claimed
        if orphans:  # each was found stopped by successive halving: the records changed
            runs = sweep.runs(study)
        counted = [r for r in runs if r["state"] != "failed"]  # a failed run does not use up the sweep's count
        failed = len(runs) - len(counted)
        if len(counted) >= count:
            return None
        if failed >= max(3, count):
            last = next(r for r in reversed(runs) if r["state"] == "failed")
            raise UserError(f"sweep {sweep.folder.name}: {failed} runs failed, the last with "
                            f"{(last['error'] or 'no message').splitlines()[0]}; fix the cause and continue the "
                            f"sweep, or remove {sweep.folder}")
        # a failed configuration is not proposed again (it would fail again), but it does not use up the count
        tried = {params_key(r["params"]): trial_of[r["id"]] for r in runs}
        return _propose(study, config, tried, sweep.base_options.get("seed", 42), len(trials))


def _finish(trial, state, value=None, record=None, error=None):
    import optuna

    if record is not None:
        trial.set_user_attr("summary", plain_data(record.get("summary", {})))
        trial.set_user_attr("record", str(record.get("name", "")))
    if error:
        trial.set_user_attr("error", error)
    states = {"finished": optuna.trial.TrialState.COMPLETE, "stopped": optuna.trial.TrialState.PRUNED,
              "failed": optuna.trial.TrialState.FAIL}
    if state == "finished" and value is not None:
        trial.study.tell(trial, value)
    else:
        trial.study.tell(trial, state=states["stopped" if state == "finished" else state])


def trained_to_the_end(run_dir):
    """The record of a run that ended (finished, or stopped by hyperband) or trained all its epochs before it was
    interrupted — that one is marked finished, which it is — else None (it has epochs left to train)."""
    record = readable_record(run_dir)
    if record is None:
        return None
    if record.get("status") in COMPLETE:
        return record
    if record.get("epochs") and len(record["epochs"]) >= record.get("config", {}).get("epochs", float("inf")):
        record["status"] = "finished"
        save_json(Path(run_dir) / "record.json", record)
        return record
    return None


def scratch_trainer(runs_dir, data=None):
    """The real trainer for sweep runs: (options, should_stop, resume, extra) → run record."""
    def train(options, should_stop, resume, extra):
        name = options["run_name"]
        if resume and (Path(runs_dir) / name / "last.pt").exists():
            # its agent may have died after the last epoch, before telling the sweep: nothing is left to train
            return trained_to_the_end(Path(runs_dir) / name) or resume_scratch(
                name, {"quiet": True}, runs_dir=runs_dir, data=data, should_stop=should_stop)
        return run_scratch(copy.deepcopy(options), should_stop=should_stop, data=data, extra=extra)

    return train


def sweep_position(sweep, run_id):
    """1-based position of a run among the sweep's runs that count (failed ones do not use up the count)."""
    counted = [r["id"] for r in sweep.runs() if r["state"] != "failed"]
    return counted.index(run_id) + 1 if run_id in counted else len(counted)


def best_so_far(sweep):
    scored = [r for r in sweep.runs() if (r["summary"] or {}).get("best_val_acc") is not None]
    if not scored:
        return "no scored run yet"
    best = max(scored, key=lambda r: r["summary"]["best_val_acc"])
    return f"best so far {best['summary']['best_val_acc']:.4f} (run {best['id']})"


def format_params(params):
    return ", ".join(f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}" for k, v in sorted(params.items()))


def run_agent(sweep: LocalSweep, count: int, runs_dir="runs", train=None, log=print):
    """Take runs from the sweep until it is done; returns the ids this agent ran."""
    train = train or scratch_trainer(runs_dir)
    config = sweep.config
    metric, goal = config["metric"]["name"], config["metric"].get("goal", "maximize")
    done = []
    while True:
        run = claim_next_run(sweep, count)
        if run is None:
            return done
        trial = run["trial"]
        name = f"{sweep.folder.name}-{run['id']}"
        options = {**sweep.base_options, **run["params"], "run_name": name, "runs_dir": runs_dir, "quiet": True}
        options.setdefault("wandb_group", sweep.folder.name)
        extra = {"sweep": sweep.folder.name, "sweep_run": run["id"], "sweep_params": run["params"]}
        history = list(run["history"])

        epochs = options.get("epochs") or TrainConfig().epochs

        def stop(epoch, metrics):
            """After each epoch: report the metric to Optuna; True when successive halving stops the run."""
            if metric not in metrics:
                return False
            if all(h["epoch"] != epoch for h in history):  # a resumed run's earlier epochs are reported already
                history.append({"epoch": epoch, metric: metrics[metric]})
                trial.report(metrics[metric], epoch)
            log(f"  epoch {epoch}/{epochs}: {metric} {metrics[metric]:.4f}")
            return epoch < epochs and trial.should_prune()  # a run at its last epoch has finished, not been stopped

        position = f"run {sweep_position(sweep, run['id'])} of {count}"
        log(f"[{sweep.folder.name}] {position} ({run['id']}{', resumed' if run['resumed'] else ''}): "
            f"{format_params(run['params'])}")
        try:
            with Heartbeat(trial):
                record = train(options, stop, run["resumed"], extra)
            state = "stopped" if record["status"] == "stopped" else "finished"
            best = (max if goal == "maximize" else min)((h[metric] for h in history if metric in h), default=None)
            _finish(trial, state, best, record)
            ended = "stopped by hyperband" if state == "stopped" else "finished"
            log(f"[{sweep.folder.name}] {position} {ended} after {len(history)} epochs: best val acc "
                f"{record['summary'].get('best_val_acc', float('nan')):.4f}; {best_so_far(sweep)}")
        except KeyboardInterrupt:
            raise  # leave the run "running": the next agent resumes it
        except Exception as err:  # a crashing run is recorded as failed; the sweep goes on
            _finish(trial, "failed", error=f"{type(err).__name__}: {err}\n{traceback.format_exc(limit=3)}")
            log(f"[agent {os.getpid()}] run {run['id']} failed: {describe(err)}")
        done.append(run["id"])

