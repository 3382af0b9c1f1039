"""The locks of run folders, sweeps, the dataset and the hand-in (common/locks.py: flock through filelock), against
real processes: a refusal names the holder's pid, a killed holder (SIGKILL: no clean-up runs) leaves no stale lock,
and a waiter says that it waits, then gets the lock."""
import json
import os
import signal
import subprocess
import sys
import threading

import pytest

from common.errors import UserError
from common.locks import file_lock, held_or_refused, take_and_sign

from conftest import ROOT

HOLD = """import sys, time
from common.locks import {lock}
with {lock}(sys.argv[1], {arg}):
    print("held", flush=True)
    time.sleep(120)
"""


def holder(path, lock="held_or_refused", arg="'busy'"):
    """A real process that holds the lock on `path` until it is killed."""
    proc = subprocess.Popen([sys.executable, "-c", HOLD.format(lock=lock, arg=arg), str(path)], cwd=ROOT,
                            stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline() == "held\n"
    return proc


def test_a_refusal_names_the_holder_and_a_killed_holder_leaves_no_stale_lock(tmp_path):
    lock = tmp_path / "out" / "assignment.lock"
    proc = holder(lock)
    try:
        with pytest.raises(UserError, match=f"^in use by process {proc.pid}$"):
            with held_or_refused(lock, "in use by process {pid}"):
                pass
        with open(lock, "a+") as handle:  # a run folder's lock (its open handle) is the same flock
            assert take_and_sign(handle, lock)["pid"] == proc.pid
    finally:
        proc.kill()
        proc.wait()
    with held_or_refused(lock, "in use by process {pid}"):
        assert json.loads(lock.read_text())["pid"] == os.getpid()  # the dead holder's identity replaced, not appended
    with open(lock, "a+") as handle:
        assert take_and_sign(handle, lock) is None


def test_a_waiter_says_so_once_and_gets_the_lock_its_killed_holder_left(tmp_path, capsys):
    lock = tmp_path / ".nature_12K.zip.lock"
    with file_lock(lock, waiting_message="waiting"):  # free: nothing said
        pass
    assert capsys.readouterr().err == ""
    proc = holder(lock, "file_lock", "None")
    killer = threading.Timer(1.0, proc.kill)
    killer.start()
    stale = signal.signal(signal.SIGALRM, lambda *_: pytest.fail("no lock 30 s after its holder was killed: stale"))
    signal.alarm(30)  # a stale lock would make the waiter wait forever: a failure, not a hang
    try:
        with file_lock(lock, waiting_message="waiting for another process that is extracting nature_12K.zip ..."):
            assert proc.wait(timeout=5) == -signal.SIGKILL  # the lock came only once its holder was killed
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, stale)
        killer.cancel()
        proc.kill()
        proc.wait()
    assert capsys.readouterr().err == "waiting for another process that is extracting nature_12K.zip ...\n"
