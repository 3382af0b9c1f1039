"""The test set cannot leak: only test evaluation can reach it, and training never opens it."""
import ast
import json
import subprocess
import sys

from conftest import ROOT

# The only modules allowed to import the test-set loader, and the only ones allowed to import those.
TESTSET_IMPORTERS = {"common/evaluation.py"}
EVALUATION_IMPORTERS = {"partA/evaluate.py", "partA/filters.py", "partA/guided_backprop.py"}


def imported_modules(path):
    tree = ast.parse(path.read_text())
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
            names |= {f"{node.module}.{alias.name}" for alias in node.names}
    return names


def importers_of(module):
    found = set()
    for folder in ("common", "partA", "partB", "partC"):
        for path in (ROOT / folder).rglob("*.py"):
            if module in imported_modules(path):
                found.add(str(path.relative_to(ROOT)))
    return found


def test_only_test_evaluation_imports_the_test_set_loader():
    assert importers_of("common.testset") == TESTSET_IMPORTERS
    assert importers_of("common.evaluation") <= EVALUATION_IMPORTERS


AUDIT = """
import runpy, sys, json
opened = []
def hook(event, args):
    if event == "open" and isinstance(args[0], str):
        opened.append(args[0])
sys.addaudithook(hook)
sys.argv = ["partA/train.py"] + json.loads(sys.argv[1])
try:
    runpy.run_path("partA/train.py", run_name="__main__")
except SystemExit as e:
    code = e.code
else:
    code = 0
json.dump({"opened": opened, "code": code}, open(OUT, "w"))
"""


def test_a_training_run_opens_no_file_under_the_test_folder(demo_root, tmp_path):
    out = tmp_path / "opened.json"
    args = ["--data-dir", str(demo_root), "--image-size", "32", "--filters", "4,4,8,8,8", "--dense-units", "8",
            "--epochs", "1", "--runs-dir", str(tmp_path / "runs"), "--cache-dir", str(tmp_path / "cache"),
            "--wandb", "disabled", "--quiet", "--run-name", "audit"]
    script = AUDIT.replace("OUT", repr(str(out)))
    subprocess.run([sys.executable, "-c", script, json.dumps(args)], cwd=ROOT, check=True, capture_output=True)
    result = json.loads(out.read_text())
    assert result["code"] in (0, None)
    test_dir = str(demo_root / "inaturalist_12K" / "val")
    train_dir = str(demo_root / "inaturalist_12K" / "train")
    assert any(p.startswith(train_dir) for p in result["opened"])  # the hook does see the images it opens
    assert not [p for p in result["opened"] if p.startswith(test_dir)]
