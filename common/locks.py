"""Advisory file locks (fcntl.flock, through filelock) so that processes sharing a folder take turns.

flock works between processes on one machine, and across machines only on filesystems that
implement it (local disks, NFSv4 with locking, most cluster filesystems; not every SMB/FUSE
mount). The lock is released when the holder closes the file or dies — a killed process never
leaves a stale lock behind: filelock (>=3.30) may not fall back to an existence marker where flock is
missing, keeps the file on release, and a contender that loses leaves the holder's identity in it untouched.
"""
import contextlib
import json
import os
import socket
import sys
from pathlib import Path

from filelock import FileLock, Timeout, lock_descriptor

from common.errors import UserError
from common.io import is_disk_full, no_space
from common.state import lock_holder


@contextlib.contextmanager
def file_lock(path, waiting_message=None):
    """Hold an exclusive lock on `path` (created if needed) for the block; wait for other holders."""
    lock = FileLock(path, fallback_to_soft=False, preserve_lock_file=True)
    try:
        held = lock.acquire(blocking=False)
    except Timeout:
        if waiting_message:
            print(waiting_message, file=sys.stderr, flush=True)  # a status, not output: stdout stays clean
        held = lock.acquire()
    with held:
        yield


@contextlib.contextmanager
def held_or_refused(path, refusal):
    """Hold an exclusive lock on `path` for the block, or raise UserError(refusal) at once when another process
    holds it (two commands must not work on one thing at the same time). The holder's pid is written in it."""
    lock = FileLock(path, fallback_to_soft=False, preserve_lock_file=True, on_acquired=lambda fd: sign(fd, path))
    try:
        held = lock.acquire(blocking=False)
    except Timeout:
        raise UserError(refusal.format(pid=lock_holder(Path(path).read_text(), path).get("pid", "?"))) from None
    with held:
        yield


def take_and_sign(handle, path):
    """Lock the open lock file without waiting and write this process's identity in it: None. When another process
    holds it, what that holder wrote (checked: a file read mid-write names no one) is returned instead."""
    if not lock_descriptor(handle.fileno(), blocking=False):  # the same flock as FileLock's
        handle.seek(0)
        return lock_holder(handle.read(), path)
    sign(handle.fileno(), path)
    return None


def sign(fd, path):
    """Write this process's identity in the lock file `fd` it holds (unbuffered: a failed write leaves nothing in a
    buffer for a close to fail on again); a full disk is the one-line no-space error."""
    os.ftruncate(fd, 0)
    try:
        os.write(fd, json.dumps(process_identity()).encode())
    except OSError as err:
        if is_disk_full(err):
            raise no_space(Path(path).parent, Path(path).name) from None
        raise


def process_identity() -> dict:
    """host, pid and the process's start time: a pid alone is recycled, and is meaningless on another host."""
    return {"host": socket.gethostname(), "pid": os.getpid(), "started": process_start_time(os.getpid())}


def process_start_time(pid):
    """Start time of `pid` in clock ticks since boot (Linux), or None where it cannot be read."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return int(fields[19])  # field 22 of stat; fields here start at field 3
    except (OSError, IndexError, ValueError):
        return None


def process_alive(identity: dict) -> bool:
    """Is the process `identity` (from process_identity) still running? Only answerable on its own host."""
    if identity.get("host") != socket.gethostname():
        raise UserError("cannot check a process on another host")  # callers use heartbeats across hosts
    pid = identity.get("pid")
    if not isinstance(pid, int) or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # alive, another user's process
    started = process_start_time(pid)
    return started is None or identity.get("started") is None or started == identity["started"]
