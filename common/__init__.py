"""Shared library of the iNaturalist-12K lab: data, models, training, tracking, visualisation.

Every script imports this package first: started by a Python without the project's environment, it stops with
one line that says how to start it, instead of an ImportError traceback from the first missing package."""
import ctypes
import importlib.util
import os
import signal
import sys

_NEEDED = ("torch", "torchvision", "click", "yaml")
_missing = [name for name in _NEEDED if importlib.util.find_spec(name) is None]
if _missing:
    sys.exit(f"{_missing[0]} is not installed for {sys.executable}: run `make setup` once, then start scripts with "
             f".venv/bin/python (e.g. .venv/bin/python {' '.join(sys.argv) or 'partA/train.py --help'}), or "
             f"`source .venv/bin/activate` first")

# A step of `make assignment` runs in a session of its own (so a Ctrl-C reaches it once, from the assignment), which
# puts it out of reach of its process group's signals: it follows its parent instead. The kernel sends it SIGTERM
# (a clean stop that saves its run) when the parent dies, however it died (Linux prctl PR_SET_PDEATHSIG); its own
# children follow it the same way.
FOLLOW_PARENT_ENV = "INAT_LAB_FOLLOW_PARENT"
if os.environ.get(FOLLOW_PARENT_ENV) and sys.platform.startswith("linux"):
    ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # 1 = PR_SET_PDEATHSIG
    if os.getppid() != int(os.environ[FOLLOW_PARENT_ENV]):  # the parent died before the call: no signal will come
        os.kill(os.getpid(), signal.SIGTERM)
    os.environ[FOLLOW_PARENT_ENV] = str(os.getpid())
