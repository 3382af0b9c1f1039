"""CPU thread settings for inference processes.

PyTorch's OpenMP threads spin-wait between parallel regions by default. On a busy machine (two
cores, another process running) a spinning thread steals the core its partner needs, and
yolov3-tiny went from ~35 ms to 391-1,472 ms a frame. A passive wait policy makes idle threads
sleep: measured here with one core busy, 2 threads ran at a 56 ms median (p90 61 ms) passive
against 62 ms (p90 197 ms) spinning, and at the same 33 ms when the machine was idle.

OpenMP reads its environment once, when torch loads it: `prefer_passive_openmp()` must run
before the first `import torch` of the process (the Part C scripts call it first thing). A
value the user set in the environment wins.
"""
import os


def prefer_passive_openmp():
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")


def set_inference_threads(threads):
    """Use `threads` intra-op threads (0 or None: leave torch's default, one per core)."""
    import torch

    if threads is None or threads == 0:
        return torch.get_num_threads()
    if threads < 0:
        from common.errors import UserError

        raise UserError(f"--threads must be >= 1 (or 0 for one per core), got {threads}")
    torch.set_num_threads(threads)
    return threads
