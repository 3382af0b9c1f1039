"""The assignment's steps as they run: each command a subprocess in its own session, and each step's marker (the
inputs it ran on, what it left behind) so that a rerun skips a step only while both are unchanged."""
import json
import os
import shlex
import signal
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, List

from common import FOLLOW_PARENT_ENV
from common.cli import INTERRUPT_QUIET_ENV
from common.errors import say_once
from common.io import save_json
from common.state import StepMarker, read_state_or_none


@dataclass
class Step:
    name: str
    title: str
    commands: List  # argv lists, or callables giving one (or None: nothing to do) when the step runs
    estimate_s: float
    inputs: Callable[[], object] = lambda: None  # what the result depends on: a change makes the step stale
    needs: tuple = ()  # steps whose failure leaves this one nothing to work on
    # files, or folders it alone writes (callables are resolved when it ends): their change or loss makes it stale
    outputs: List = field(default_factory=list)


class StepFailed(Exception):
    pass


def marker(out, step):
    return Path(out) / "steps" / f"{step.name}.done"


def canonical(value):
    return json.loads(json.dumps(value, sort_keys=True, default=str))


def fingerprint(paths):
    """{file: [size, mtime_ns]} of the given files and of every file under the given folders (why not hashed:
    docs/design.md, "Step markers")."""
    found = {}
    for path in map(Path, paths):
        for file in sorted(path.rglob("*")) if path.is_dir() else [path]:
            try:
                st = file.stat()
            except OSError:
                continue
            if file.is_file():
                found[str(file)] = [st.st_size, st.st_mtime_ns]
    return found


def read_marker(out, step):
    """The step's marker, checked; None when missing or damaged (damage noted once: the step runs again)."""
    return read_state_or_none(marker(out, step), StepMarker, on_damage=lambda problem: say_once(f"note: {problem}"))


def marked_outputs(out, step):
    """The outputs a step's marker recorded (sizes and mtimes), or None."""
    stored = read_marker(out, step)
    return stored["outputs"] if stored else None


def is_done(out, step):
    """Finished before, its inputs are what they were then, and every file it left is still there unchanged."""
    stored = read_marker(out, step)
    if stored is None or stored["inputs"] != canonical(step.inputs()):
        return False
    return bool(stored["outputs"]) and fingerprint(stored["outputs"]) == stored["outputs"]


def run_command(command):
    """Run one command in its own session (docs/design.md, "Interruptible"): returns its exit status."""
    env = {**os.environ, "WANDB_SILENT": "true", INTERRUPT_QUIET_ENV: "1",  # the assignment says the one line
           FOLLOW_PARENT_ENV: str(os.getpid())}  # the step dies with the assignment (common/__init__.py)
    if any(part.startswith("partC/") for part in command[1:2]):
        env.pop("LD_PRELOAD", None)  # OpenVINO (Part C's CPU engine) crashes beside a preloaded allocator
    child = subprocess.Popen(command, env=env, start_new_session=True)
    try:
        return child.wait()
    except KeyboardInterrupt:
        child.send_signal(signal.SIGTERM)
        try:
            child.wait(timeout=120)  # it writes its record and checkpoint, then exits
        except subprocess.TimeoutExpired:
            child.kill()
        raise


def run_step(step, out, log):
    """Run a step's commands; write its marker (with its inputs) only when all succeeded and its outputs exist."""
    started = time.time()
    inputs = canonical(step.inputs())
    for command in step.commands:
        command = command() if callable(command) else command
        if command is None:
            continue
        log(f"  $ {shlex.join(command[1:])}")
        status = run_command(command)
        if status != 0:
            raise StepFailed(f"exit {status} in: {shlex.join(command[1:])}")
    outputs = [o() if callable(o) else o for o in step.outputs]
    missing = [o for o in outputs if not Path(o).exists()]
    if missing:
        raise StepFailed(f"it ran but {missing[0]} is missing")
    write_marker(out, step, inputs, fingerprint(outputs), time.time() - started)


def write_marker(out, step, inputs, outputs, seconds):
    save_json(marker(out, step), {"inputs": inputs, "outputs": outputs, "seconds": round(seconds, 1),
                                  "finished": time.ctime()})
