"""notebooks/assignment.ipynb, run headless as Colab would run it: its cells in order on this machine's Python, on
the demo data, the assignment only planned (--plan-only). The cells that clone or log in need a network and a
person: they are skipped here."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import ROOT

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")

SKIPPED_UNDER_TEST = {"clone", "login"}


@pytest.mark.slow
def test_the_notebook_installs_into_the_runtime_fetches_the_data_and_plans_the_assignment(demo_root, tmp_path,
                                                                                         monkeypatch):
    notebook = nbformat.read(ROOT / "notebooks" / "assignment.ipynb", as_version=4)
    tags = [set(cell.metadata.get("tags", [])) for cell in notebook.cells]
    assert {"parameters", "clone", "install", "login", "data", "assignment", "report"} <= set().union(*tags)
    notebook.cells = [cell for cell, tag in zip(notebook.cells, tags) if not tag & SKIPPED_UNDER_TEST]
    parameters = next(cell for cell in notebook.cells if "parameters" in cell.metadata["tags"])
    out = tmp_path / "out"
    parameters.source += (f"\nDATA = {str(demo_root)!r}\nFLAGS = '--plan-only --count 3 --out {out} "
                          f"--runs-dir {tmp_path / 'runs'} --cache-dir {tmp_path / 'cache'}'")
    # 'python3' in the cells is the runtime's Python: here, the one running the tests
    monkeypatch.setenv("PATH", f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("WANDB_MODE", "disabled")
    client = nbclient.NotebookClient(notebook, timeout=240, kernel_name="python3", resources={"metadata": {"path": str(ROOT)}})
    client.execute()
    printed = "".join(o.get("text", "") for cell in notebook.cells for o in cell.get("outputs", []))
    assert str(demo_root) in printed  # the data cell found the data set
    assert "plan (demo data" in printed and "total still to run" in printed
    assert (out / "plan.json").is_file()


@pytest.mark.slow
def test_installing_the_project_where_torch_and_numpy_are_keeps_them(tmp_path):
    """The notebook's `make setup PYTHON=python3` on Colab or Kaggle: pyproject's ranges must take the runtime's own
    torch, torchvision and numpy — this venv has them, so pip's plan must install the project alone."""
    plan = tmp_path / "plan.json"
    result = subprocess.run([sys.executable, "-m", "pip", "install", "--dry-run", "--no-build-isolation", "--quiet",
                             "--report", str(plan), "-e", str(ROOT)], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-2000:]
    installs = {item["metadata"]["name"].lower() for item in json.loads(plan.read_text())["install"]}
    assert installs == {"inat-lab"}, f"pip install -e . would replace {sorted(installs - {'inat-lab'})}"
