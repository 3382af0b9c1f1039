"""CPU thread settings for inference processes.

OpenMP's workers spin for milliseconds between parallel regions (~55 a yolov3-tiny frame): on a busy 2-core
machine a spinning thread steals its partner's core (yolov3-tiny went from ~35 ms to 0.4-1.5 s a frame).
Sleeping at once (OMP_WAIT_POLICY=PASSIVE) costs ~50 µs a region and never collapses, so the Part C scripts
ask for it before the first `import torch` (OpenMP reads its environment once); a value the user set wins.
"""
import os

from common.errors import UserError


def prefer_passive_openmp():
    """OMP_WAIT_POLICY=PASSIVE unless the user chose a policy. Call before torch is imported."""
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")


def set_inference_threads(threads):
    """Use `threads` intra-op threads (0 or None: leave torch's default, one per core)."""
    import torch

    if threads is None or threads == 0:
        return torch.get_num_threads()
    if threads < 0:
        raise UserError(f"--threads must be >= 1 (or 0 for one per core), got {threads}")
    torch.set_num_threads(threads)
    return threads
