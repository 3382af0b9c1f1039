"""Atomic writes: a crash mid-write never leaves a half-written checkpoint or record."""
import json
import os
import tempfile
from pathlib import Path

import torch


_UMASK = os.umask(0o022)  # read once at import (setting it is the only way to read it), then restored
os.umask(_UMASK)


def _atomic_write(path, write_fn):
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
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


def load_json(path):
    with open(path) as handle:
        return json.load(handle)


def save_torch(path, obj):
    _atomic_write(path, lambda handle: torch.save(obj, handle))
