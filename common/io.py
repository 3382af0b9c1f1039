"""Atomic writes: a crash mid-write never leaves a half-written checkpoint or record; and the digests that caches
carry, so that a cache whose bytes changed after it was written is rebuilt, never used."""
import errno
import glob
import hashlib
import json
import os
import shutil
import tempfile
import time
from pathlib import Path

import torch
from common.errors import UserError


_UMASK = os.umask(0o022)  # read once at import (setting it is the only way to read it), then restored
os.umask(_UMASK)


STALE_TMP_SECONDS = 3600  # a temp file this old belongs to a writer that was killed (writes take seconds)


def remove_stale_temp_files(path: Path):
    """Delete the temp files that killed writers of `path` left behind: this module's `.name.XXXX.tmp`, and only
    those too old for a live writer to own."""
    cutoff = time.time() - STALE_TMP_SECONDS
    for tmp in path.parent.glob(f".{glob.escape(path.name)}.*.tmp"):
        try:
            if tmp.is_file() and tmp.stat().st_mtime < cutoff:
                tmp.unlink()
        except OSError:
            pass  # another process cleaned it first


def no_space(folder, what, needed=None) -> UserError:
    """The one line for a full disk (ENOSPC, EDQUOT): the folder, its free space, what was being written and, where
    known, the size it needed."""
    try:
        free = f"{shutil.disk_usage(folder).free / 2**20:.1f} MiB free"
    except OSError:
        free = "free space unknown"
    size = f", {needed / 2**20:.1f} MiB needed" if needed else ""
    return UserError(f"no space left in {folder} ({free}{size}) while writing {what}; nothing there was left "
                     f"half-written. Free space there, or point the command at another folder")


def is_disk_full(err) -> bool:
    return isinstance(err, OSError) and err.errno in (errno.ENOSPC, errno.EDQUOT)


def write_atomically(path, write_fn):
    """Write `path` through `write_fn(handle)` under a temporary name, then move it into place: a crash or a full disk
    leaves the previous version (or nothing), never a truncated file under the real name."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temp_files(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp makes 0600 files; give the usual permissions
    try:
        with os.fdopen(fd, "wb") as handle:
            write_fn(handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)  # atomic on POSIX: readers see the old file or the new one
    except BaseException as err:
        if os.path.exists(tmp):
            os.unlink(tmp)
        if _disk_full(err, path.parent):
            raise no_space(path.parent, path.name) from None
        raise


LOW_SPACE = 16 * 2**20  # bytes; below this a failed write is taken as the disk being full


def _disk_full(err, folder) -> bool:
    """ENOSPC, or torch's zip writer failing ('unexpected pos') on an almost-full disk."""
    if is_disk_full(err):
        return True
    if isinstance(err, RuntimeError):
        try:
            return shutil.disk_usage(folder).free < LOW_SPACE
        except OSError:
            return False
    return False


def save_json(path, obj):
    save_text(path, json.dumps(obj, indent=2, default=str))


def save_text(path, text: str):
    data = text.encode()
    write_atomically(path, lambda handle: handle.write(data))


def save_torch(path, obj):
    write_atomically(path, lambda handle: torch.save(obj, handle))


def files_digest(paths) -> str:
    """sha256 over the files' bytes, in the order given (about 1 GB/s)."""
    digest = hashlib.sha256()
    for path in paths:
        with open(path, "rb") as handle:
            for chunk in iter(lambda: handle.read(1 << 20), b""):
                digest.update(chunk)
    return digest.hexdigest()


def seal(paths, stamp):
    """Write the digest of a cache's files beside them — last, after the files themselves are in place."""
    save_text(stamp, files_digest(paths) + "\n")


def is_sealed(paths, stamp) -> bool:
    """Do a cache's files still hold what was written when `seal` stamped them? (False when any is missing.)"""
    try:
        return Path(stamp).read_text().strip() == files_digest(paths)
    except OSError:
        return False
