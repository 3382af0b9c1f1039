"""The test set cannot leak: only test evaluation can reach it, and training never opens it."""
import ast
import json
import subprocess
import sys

from conftest import ROOT

# The only modules allowed to import the test-set loader, and the only ones allowed to import those.
TESTSET_IMPORTERS = {"partA/evaluation.py"}
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
    for folder in ("common", "partA", "partB", "partC", "bench", "handin"):
        for path in (ROOT / folder).rglob("*.py"):
            if module in imported_modules(path):
                found.add(str(path.relative_to(ROOT)))
    return found


def test_only_test_evaluation_imports_the_test_set_loader():
    assert importers_of("partA.testset") == TESTSET_IMPORTERS
    assert importers_of("partA.evaluation") <= EVALUATION_IMPORTERS


AUDIT = """
import runpy, sys, json
opened = []
def hook(event, args):
    if event == "open" and isinstance(args[0], str):
        opened.append(args[0])
sys.addaudithook(hook)
sys.argv = [sys.argv[1]] + json.loads(sys.argv[2])
try:
    runpy.run_path(sys.argv[0], run_name="__main__")
except SystemExit as e:
    code = e.code
else:
    code = 0
json.dump({"opened": opened, "code": code}, open(OUT, "w"))
"""


def audited(script, args, tmp_path, name):
    """Run `script` with `args` under an audit hook; the files it opened."""
    out = tmp_path / f"opened-{name}.json"
    code = AUDIT.replace("OUT", repr(str(out)))
    result = subprocess.run([sys.executable, "-c", code, script, json.dumps(args)], cwd=ROOT, capture_output=True,
                            text=True, env={**__import__("os").environ, "WANDB_MODE": "disabled"})
    assert result.returncode == 0, result.stderr
    recorded = json.loads(out.read_text())
    assert recorded["code"] in (0, None), (script, result.stdout[-2000:], result.stderr[-2000:])
    return recorded["opened"]


def test_no_training_sweep_fine_tune_compare_or_report_opens_a_test_file(demo_root, tmp_path):
    """Every command that is not a test evaluation, run for real under an audit hook: none opens a file in
    the test folder (Part B's feature cache included), while the training images are seen being opened."""
    common = ["--cache-dir", str(tmp_path / "cache"), "--wandb", "disabled"]
    runs = ["--runs-dir", str(tmp_path / "runs")]
    sweep_config = tmp_path / "tiny.yaml"
    sweep_config.write_text("method: grid\nmetric: {name: val_acc, goal: maximize}\nparameters:\n"
                            "  lr: {values: [0.002, 0.003, 0.004]}\n  epochs: {value: 1}\n  image_size: {value: 32}\n"
                            "  filters: {value: '4,4,8,8,8'}\n  dense_units: {value: 8}\n")
    commands = {
        "train": ("partA/train.py", ["--data-dir", str(demo_root), "--image-size", "32", "--filters", "4,4,8,8,8",
                                     "--dense-units", "8", "--epochs", "1", "--quiet", "--run-name", "audit",
                                     *runs, *common]),
        "sweep": ("partA/sweep.py", ["--config", str(sweep_config), "--backend", "local", "--count", "3", "--name",
                                     "tiny", "--data-dir", str(demo_root), *runs, *common]),
        "finetune": ("partB/finetune.py", ["--data-dir", str(demo_root), "--image-size", "32", "--epochs", "1",
                                           "--no-augment", "--quiet", "--run-name", "ft", *runs, *common]),
        "compare": ("partB/compare.py", [*runs, "--eval-dir", str(tmp_path / "eval"), "--out", str(tmp_path / "cmp")]),
        "report": ("handin/report.py", ["--sweep", "tiny", *runs, "--out", str(tmp_path / "report"), "--include",
                                       str(tmp_path / "cmp")]),
    }
    test_dir = str(demo_root / "inaturalist_12K" / "val")
    train_dir = str(demo_root / "inaturalist_12K" / "train")
    for name, (script, args) in commands.items():
        opened = audited(script, args, tmp_path, name)
        assert not [p for p in opened if p.startswith(test_dir)], name
        if name == "train":
            assert any(p.startswith(train_dir) for p in opened)  # the hook does see the images a run opens
    assert list((tmp_path / "cache" / "features").glob("*.pt"))  # the fine-tune took the feature-cache path
