"""Shared library of the iNaturalist-12K lab: data, models, training, tracking, visualisation.

Every script imports this package first: started by a Python without the project's environment, it stops with
one line that says how to start it, instead of an ImportError traceback from the first missing package."""
import importlib.util
import sys

_NEEDED = ("torch", "torchvision", "click", "yaml")
_missing = [name for name in _NEEDED if importlib.util.find_spec(name) is None]
if _missing:
    sys.exit(f"{_missing[0]} is not installed for {sys.executable}: run `make setup` once, then start scripts with "
             f".venv/bin/python (e.g. .venv/bin/python {' '.join(sys.argv) or 'partA/train.py --help'}), or "
             f"`source .venv/bin/activate` first")
