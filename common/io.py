"""Atomic writes: a crash mid-write never leaves a half-written checkpoint or record."""
import glob
import json
import os
import tempfile
import time
from pathlib import Path

import torch


_UMASK = os.umask(0o022)  # read once at import (setting it is the only way to read it), then restored
os.umask(_UMASK)


STALE_TMP_SECONDS = 3600  # a temp file this old belongs to a writer that was killed (writes take seconds)


def remove_stale_temp_files(path: Path, older_than=STALE_TMP_SECONDS) -> int:
    """Delete the temp files that killed writers of `path` left behind (`.name.XXXX.tmp`); returns how many.

    Only this module's own naming pattern is touched, and only files old enough that no live
    writer can still own them.
    """
    removed = 0
    cutoff = time.time() - older_than
    for tmp in path.parent.glob(f".{glob.escape(path.name)}.*.tmp"):
        try:
            if tmp.is_file() and tmp.stat().st_mtime < cutoff:
                tmp.unlink()
                removed += 1
        except OSError:
            pass  # another process cleaned it first
    return removed


def _atomic_write(path, write_fn):
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
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def save_json(path, obj):
    data = json.dumps(obj, indent=2, default=str).encode()
    _atomic_write(path, lambda handle: handle.write(data))


def save_text(path, text: str):
    data = text.encode()
    _atomic_write(path, lambda handle: handle.write(data))


def load_json(path):
    with open(path) as handle:
        return json.load(handle)


def save_torch(path, obj):
    _atomic_write(path, lambda handle: torch.save(obj, handle))
