"""The wandb path end to end: a wandb-backend sweep inside the assignment, and what runs log to wandb.

The W&B server is the one thing not here: tests/fake_wandb/sitecustomize.py stands in for `wandb.sweep` and
`wandb.agent` (it hands out the grid the way wandb's agent does) and a local HTTP server answers for the W&B host;
every run is a real `train()` with a real offline `wandb.init`, read back from its offline run file."""
import json
import os
import re
import subprocess
import sys

import pytest

from partA.from_scratch import resume_scratch, run_scratch

from conftest import ROOT, options
from wandb_files import offline_runs


@pytest.mark.slow
def test_the_assignment_runs_on_the_wandb_backend_and_its_report_shows_that_sweeps_best_run(demo_root, tmp_path,
                                                                                           http_server):
    sweep_config = tmp_path / "tiny.yaml"
    sweep_config.write_text("method: grid\nmetric: {name: val_acc, goal: maximize}\nparameters:\n"
                            "  lr: {values: [0.002, 0.004]}\n  activation: {values: [relu, gelu]}\n  epochs: {value: 2}\n"
                            "  image_size: {value: 32}\n  filters: {value: '4,8,8,16,16'}\n  dense_units: {value: 16}\n"
                            "  batch_size: {value: 16}\n")
    out, runs = tmp_path / "out", tmp_path / "runs"
    command = [sys.executable, "handin/assignment.py", "--name", "zzwb", "--out", str(out), "--runs-dir", str(runs),
               "--cache-dir", str(tmp_path / "cache"), "--data-dir", str(demo_root), "--budget", "30", "--count", "3",
               "--sweep-config", str(sweep_config), "--backend", "wandb", "--device", "cpu",
               "--inputs", str(ROOT / "docs" / "demo_test_grid.png")]
    env = {**os.environ, "WANDB_MODE": "offline", "HOME": str(tmp_path), "WANDB_BASE_URL": http_server.url,
           "PYTHONPATH": str(ROOT / "tests" / "fake_wandb"), "FAKE_WANDB_SWEEPS": str(tmp_path / "server")}
    for step in ([], ["--step", "sweep"], ["--step", "test-eval"], ["--step", "report"]):
        result = subprocess.run(command + (step or ["--plan-only"]), cwd=ROOT, env=env, capture_output=True, text=True)
        assert result.returncode == 0, (step, result.stdout[-2000:], result.stderr[-3000:])

    folder = runs / "sweeps" / "zzwb"  # the sweep step's declared output, as a local sweep leaves it
    assert (folder / "config.yaml").is_file() and json.loads((folder / "wandb.json").read_text())["sweep_id"]
    records = [json.loads(p.read_text()) for p in runs.glob("zzwb-*/record.json")]
    assert len(records) == 3 and {r["sweep"] for r in records} == {"zzwb"} and {r["status"] for r in records} == {"finished"}
    page = (out / "report" / "report.html").read_text()
    shown = re.search(r"Shows run (zzwb-\w+): the best complete run of sweep zzwb", page).group(1)
    best_acc = max(r["summary"]["best_val_acc"] for r in records)
    assert next(r for r in records if r["name"] == shown)["summary"]["best_val_acc"] == best_acc
    assert f"python partA/evaluate.py --run {shown}" in page  # Q4: the test evaluation of that run
    logged = offline_runs(folder)
    assert len(logged) == 3 and {run["group"] for run in logged} == {"zzwb"}  # the report's run sets select them
    assert {run["name"] for run in logged} == {r["name"] for r in records}
    for run in logged:
        assert {"lr", "activation", "epochs", "batch_norm", "dense_units"} <= set(run["config"])


def test_a_run_logs_its_hyperparameters_flat_under_their_own_names_and_the_same_after_resume(tiny_data, tmp_path,
                                                                                             monkeypatch):
    """wandb's parallel-coordinates and importance panels read flat config keys: the model's hyperparameters are
    there once each — --base-filters/--organisation under their own names, without the filters they imply or a
    nested copy of the model; a resumed run logs the same config."""
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("HOME", str(tmp_path))

    def interrupt(epoch, metrics):
        raise KeyboardInterrupt

    opts = options(tmp_path, epochs=2, run_name="flat", wandb="offline", activation="mish", batch_norm=False)
    opts.pop("filters")
    with pytest.raises(KeyboardInterrupt):
        run_scratch({**opts, "base_filters": 4, "organisation": "double"}, data=tiny_data, should_stop=interrupt)
    resume_scratch("flat", {"quiet": True}, runs_dir=str(tmp_path / "runs"), data=tiny_data)
    first, resumed = offline_runs(tmp_path / "runs" / "flat")
    first["config"].pop("_wandb"), resumed["config"].pop("_wandb")
    assert first["config"] == resumed["config"]
    config = first["config"]
    assert config["base_filters"] == 4 and config["organisation"] == "double"
    assert config["activation"] == "mish" and config["batch_norm"] is False
    assert "filters" not in config and "model_spec" not in config


def test_a_run_hyperband_stopped_says_so_in_its_wandb_run(tiny_data, tmp_path, monkeypatch):
    """wandb shows a run that exits 0 as finished; the run's summary says it was stopped, for the panels to filter."""
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("HOME", str(tmp_path))
    run_scratch(options(tmp_path, epochs=3, run_name="cut", wandb="offline"), data=tiny_data,
                should_stop=lambda epoch, metrics: epoch == 1)
    run_scratch(options(tmp_path, epochs=1, run_name="whole", wandb="offline"), data=tiny_data)
    runs = {run["name"]: run for run in offline_runs(tmp_path / "runs")}
    assert runs["cut"]["summary"]["status"] == "stopped" and runs["whole"]["summary"]["status"] == "finished"
