"""Run records as the commands that choose runs read them: a record rebuilt from its last.pt when damaged, the best
complete run, and the data identity a resume checks."""
import hashlib
import json
import warnings
from pathlib import Path

from common.checkpoints import load_checkpoint, record_in
from common.errors import UserError
from common.io import save_json
from common.state import DamagedFile, RunRecord, read_state


def readable_record(run_dir):
    """A run's record.json; a damaged one is rebuilt from the copy inside its last.pt, with a warning.
    None (with a one-line warning naming it) when neither can be read: that run is skipped, not fatal."""
    path = Path(run_dir) / "record.json"
    try:
        return read_state(path, RunRecord, "rebuilding it from the run's last.pt")
    except (FileNotFoundError, DamagedFile) as err:
        problem = err.message if isinstance(err, DamagedFile) else f"{path} is missing"
    try:
        record = record_in(load_checkpoint(Path(run_dir) / "last.pt"))
    except UserError:
        record = None
    if record is None:
        warnings.warn(f"{problem.split(';')[0]} and {Path(run_dir) / 'last.pt'} cannot replace it; skipped that run")
        return None
    save_json(path, record)
    warnings.warn(f"{problem.split(';')[0]}; rebuilt it from the run's last.pt")
    return record


# A run is chosen only once it is complete: trained to its end, or stopped there by the sweep's hyperband.
# An interrupted, running, diverged or failed run is never "the best run", however well it scored so far.
COMPLETE = ("finished", "stopped")


def best_run(runs_dir, kind=None, sweep=None):
    """The complete run with the highest best validation accuracy — of one kind, and of one sweep, if given."""
    best, best_acc = None, -1.0
    for record_path in sorted(Path(runs_dir).glob("*/record.json")):
        record = readable_record(record_path.parent)
        if (record is None or record.get("status") not in COMPLETE or (kind and record.get("kind") != kind)
                or (sweep and record.get("sweep") != sweep)):
            continue
        acc = record.get("summary", {}).get("best_val_acc", -1.0)
        if acc > best_acc and (record_path.parent / "best.pt").exists():
            best, best_acc = record_path.parent, acc
    if best is None:
        of = f" of sweep {sweep}" if sweep else ""
        raise UserError(f"no complete run{of} with a best.pt in {runs_dir}; train one first (make train) or pass --run")
    return best


def data_fingerprint(train_paths, val_paths, classes) -> str:
    """Which files a run trained and validated on: the class list and both file lists (not their bytes)."""
    payload = json.dumps([list(classes), sorted(train_paths), sorted(val_paths)])
    return hashlib.sha1(payload.encode()).hexdigest()[:16]


def data_identity(data) -> dict:
    """The record fields a resume checks: the files (names) and their contents (decoded pixels)."""
    return {"data_fingerprint": data_fingerprint(data.train.paths, data.val.paths, data.classes),
            "data_content": data.content_digest}
