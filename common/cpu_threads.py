"""CPU thread settings for inference processes: how PyTorch's OpenMP threads wait for work.

Between two parallel regions (a convolution, a pool, a large element-wise op: ~55 in a yolov3-tiny
frame) a worker thread waits for the next one. How it waits decides speed and manners:
- spinning (OpenMP's default: ~300,000 spins, milliseconds) takes a core whether or not there is
  work. On a busy machine (two cores, another process running) a spinning thread steals the core
  its partner needs: yolov3-tiny went from ~35 ms to 391-1,472 ms a frame.
- sleeping at once (OMP_WAIT_POLICY=PASSIVE) is polite, but every region must then wake a sleeping
  thread: on this virtual machine a region that takes 22 µs on one thread took 66 µs on two threads
  passive, 14 µs with a 1,000-round spin (20 µs with 500) — ~3-5 ms of a 30 ms frame.
- spinning briefly, then sleeping, is what OpenCV's own thread pool does (~2,000 rounds).

So: OMP_WAIT_POLICY=PASSIVE always, and a short spin (GOMP_SPINCOUNT=SHORT_SPIN) only when the
cores this process may use are idle when it starts — sampled from /proc/stat over 0.1 s.
Measured (before the bench took turns in blocks; README: "How the threads wait") with one core
busy elsewhere: 51 ms a frame passive, 55 ms with 1,000 rounds, 60 ms with 2,000 — so a busy machine
gets passive; on an idle one the 1,000-round spin cut the wake-up per region from 66 to 14 µs.
Load that starts later is not seen: such a process keeps its short spin,
~8 % slower there than passive, not the collapse of a long spin.

OpenMP reads its environment once, when torch loads it: `choose_openmp_waiting()` must run before
the first `import torch` of the process (the Part C scripts call it first thing). A value the user
set for OMP_WAIT_POLICY or GOMP_SPINCOUNT wins.
"""
import os
import time

SHORT_SPIN = 1000  # libgomp spin rounds before sleeping ("~100,000 per ms": ~10 µs, longer on slower cores)
IDLE_SAMPLE_SECONDS = 0.1
IDLE_ENOUGH = 0.9  # share of each core's time idle in the sample for the machine to count as idle


def cpu_times(stat_text):
    """/proc/stat text → {cpu index: (idle jiffies, total jiffies)} for each cpuN line."""
    times = {}
    for line in stat_text.splitlines():
        name, *fields = line.split()
        if not name.startswith("cpu") or name == "cpu":
            continue
        values = [int(v) for v in fields[:8]]  # user nice system idle iowait irq softirq steal (guest is in user)
        times[int(name[3:])] = (values[3] + values[4], sum(values))
    return times


def idle_share(before, after, cpus):
    """The smallest share of time any of `cpus` spent idle between two `cpu_times` samples (None: unknown)."""
    shares = []
    for cpu in cpus:
        if cpu not in before or cpu not in after:
            return None
        idle, total = after[cpu][0] - before[cpu][0], after[cpu][1] - before[cpu][1]
        shares.append(idle / total if total > 0 else 1.0)
    return min(shares) if shares else None


def spin_count_for(idle):
    """GOMP_SPINCOUNT for a machine whose least idle core was idle `idle` of the time (None: unknown)."""
    return SHORT_SPIN if idle is not None and idle >= IDLE_ENOUGH else 0


def sample_idle_share(seconds=IDLE_SAMPLE_SECONDS, stat_path="/proc/stat"):
    try:
        cpus = os.sched_getaffinity(0)
        with open(stat_path) as handle:
            before = cpu_times(handle.read())
        time.sleep(seconds)
        with open(stat_path) as handle:
            after = cpu_times(handle.read())
    except (OSError, ValueError, AttributeError):  # no /proc (macOS) or an odd one: be polite
        return None
    return idle_share(before, after, cpus)


def choose_openmp_waiting(sample=sample_idle_share):
    """Set OMP_WAIT_POLICY=PASSIVE and, on an idle machine, a short GOMP_SPINCOUNT — unless the user set either.
    Returns the spin count chosen (None when the user's settings were kept)."""
    if "OMP_WAIT_POLICY" in os.environ or "GOMP_SPINCOUNT" in os.environ:
        return None
    os.environ["OMP_WAIT_POLICY"] = "PASSIVE"
    spin = spin_count_for(sample())
    os.environ["GOMP_SPINCOUNT"] = str(spin)
    return spin


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
