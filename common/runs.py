"""Run folders: naming and claiming — one owner for Part A, Part B and sweeps.

A run folder is claimed (created exclusively, flock-locked naming host, pid and start time) before anything is
computed, for as long as the run trains; a killed run leaves no stale lock (docs/design.md, "Run folders").
"""
import contextlib
import datetime
import hashlib
import json
import os
import re
import shutil
import sys
from pathlib import Path

from common.checkpoints import read_record
from common.errors import UserError
from common.locks import take_and_sign

_CLAIMS = {}  # resolved run folder → open lock file (held while this process owns the run)
_CREATED = set()  # run folders this process made (an abandoned start removes them again)


MAX_RUN_NAME = 120  # characters; file systems allow 255 bytes, and sweeps add their suffix to a name


def validate_run_name(name: str) -> str:
    """A run name is one plain folder name: never a path that leaves --runs-dir, nor a name a file system
    or a terminal chokes on (too long, a newline)."""
    if not isinstance(name, str) or not re.fullmatch(r"[A-Za-z0-9_-][A-Za-z0-9._-]*", name):
        raise UserError(f"--run-name {name!r} must be a plain folder name (letters, digits, -, _ and inner dots; no "
                        f"slashes, spaces or newlines, not starting with a dot): runs live under --runs-dir")
    if len(name) > MAX_RUN_NAME:
        raise UserError(f"--run-name is {len(name)} characters long; keep it to {MAX_RUN_NAME}")
    return name


def run_dir_for(runs_dir, run_name) -> Path:
    """runs_dir/run_name, once run_name is known to be a plain name."""
    return Path(runs_dir) / validate_run_name(run_name)


def default_run_name(options: dict, kind: str = "scratch") -> str:
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    digest = hashlib.sha1(json.dumps(options, sort_keys=True, default=str).encode()).hexdigest()[:6]
    return f"{kind}-{stamp}-{digest}"


def ensure_writable(runs_dir) -> Path:
    """--runs-dir exists (created if needed) and is writable — checked before any data is read."""
    runs_dir = Path(runs_dir)
    try:
        runs_dir.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise UserError(f"cannot create --runs-dir {runs_dir} ({err.strerror}); choose a writable folder") from None
    if not os.access(runs_dir, os.W_OK | os.X_OK):
        raise UserError(f"--runs-dir {runs_dir} is not writable; choose a writable folder (e.g. --runs-dir runs)")
    return runs_dir


def has_checkpoint(run_dir) -> bool:
    """last.pt: what a resume continues from (a run writes its best.pt just before it, in the same epoch)."""
    return (Path(run_dir) / "last.pt").exists()


def only_run_files(run_dir) -> bool:
    """Does the folder hold nothing but what a run writes before its first checkpoint? Only then may a failed start
    remove it: a folder with anything else in it is the user's, and is never deleted."""
    return all(p.name in ("run.lock", "record.json", "wandb") or p.name.startswith(".record.json.")
               for p in Path(run_dir).iterdir())


def claim_run_dir(run_dir, resume=False) -> Path:
    """Claim `run_dir` for this process (idempotent within the process); a one-line error otherwise. A new run may
    take over a folder whose owner is gone (its lock free) before it wrote a checkpoint — killed before epoch 1:
    nothing in it can be resumed, so its own command starts it again; a folder with a checkpoint is never taken."""
    run_dir = Path(run_dir)
    key = str(run_dir.resolve())
    if key in _CLAIMS:
        return run_dir
    validate_run_name(run_dir.name)
    ensure_writable(run_dir.parent)
    if not resume:
        with contextlib.suppress(FileExistsError):
            run_dir.mkdir()
            _CREATED.add(key)
    handle = open(run_dir / "run.lock", "a+")
    info = take_and_sign(handle, run_dir / "run.lock")
    if info is not None:
        handle.close()
        raise UserError(f"run {run_dir.name!r} is in use by process {info.get('pid', '?')} on {info.get('host', '?')} "
                        f"(still training?); wait for it to finish, or stop it before resuming")
    if not resume and has_checkpoint(run_dir):  # checked under the lock: no other process is writing one now
        handle.close()
        _CREATED.discard(key)
        raise UserError(f"run {run_dir.name!r} already exists in {run_dir.parent}; resume it with --resume "
                        f"{run_dir.name} or choose another --run-name")
    if not resume and key not in _CREATED and only_run_files(run_dir):
        print(f"run {run_dir.name!r} stopped before its first checkpoint (its process is gone); starting it again",
              file=sys.stderr, flush=True)
        _CREATED.add(key)  # nothing in it to keep: a start that fails again leaves no folder
    _CLAIMS[key] = handle
    _LAST_CLAIMED[:] = [run_dir]
    return run_dir


_LAST_CLAIMED = []  # the run this process trained last: what an interruption names


def last_run_dir():
    """The run folder this process trained last (a resumed one may lie outside --runs-dir), or None."""
    return _LAST_CLAIMED[0] if _LAST_CLAIMED else None


def resume_hint():
    """How to continue the run this process was training when it stopped, or None when it trained none (or the run
    left nothing to resume: it stopped before its first checkpoint)."""
    if not _LAST_CLAIMED or not (_LAST_CLAIMED[0] / "last.pt").is_file():
        return None
    run_dir = _LAST_CLAIMED[0]
    record = read_record(run_dir) or {}
    if record.get("sweep"):
        return f"run {run_dir.name} of sweep {record['sweep']} resumes when you run the same sweep command again"
    script = "partB/finetune.py" if record.get("kind") == "finetune" else "partA/train.py"
    runs = f" --runs-dir {run_dir.parent}" if run_dir.parent != Path("runs") else ""
    return f"continue run {run_dir.name} with: python {script} --resume {run_dir.name}{runs}"


def release_run_dir(run_dir):
    """End this process's claim on a run folder: its lock goes; and a folder this process made that holds no
    checkpoint — a start that failed (bad data, a download that failed) or a run that ended (diverged, failed,
    interrupted) before its first epoch was saved — goes too: nothing in it can be resumed, and its name is free
    for the next try instead of 'already exists'. A resumed run (not made here) or one with a last.pt is kept."""
    run_dir = Path(run_dir)
    key = str(run_dir.resolve())
    handle = _CLAIMS.pop(key, None)
    if handle is not None:
        handle.close()
    if key in _CREATED and run_dir.is_dir() and not has_checkpoint(run_dir):
        shutil.rmtree(run_dir, ignore_errors=True)
    _CREATED.discard(key)


@contextlib.contextmanager
def claimed_run(run_dir, resume=False):
    """The run folder claimed for this process while the block prepares its run (reads data, checks a resume); a
    block that fails releases it. `fit` takes the claim over (claiming is idempotent) and releases it at the end."""
    run_dir = claim_run_dir(run_dir, resume=resume)
    try:
        yield run_dir
    except BaseException:
        release_run_dir(run_dir)
        raise
