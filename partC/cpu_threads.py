"""CPU thread settings for inference processes (why OpenMP waits passively: docs/measurements.md, "Detector speed")."""
import os

from common.errors import UserError


def prefer_passive_openmp():
    """OMP_WAIT_POLICY=PASSIVE unless the user chose a policy. Call before torch is imported."""
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")


def set_inference_threads(threads):
    """Use `threads` intra-op threads (0 or None: leave torch's default, one per core)."""
    import torch

    if threads is not None and threads < 0:
        raise UserError(f"--threads must be >= 1 (or 0 for one per core), got {threads}")
    if threads:
        torch.set_num_threads(threads)
