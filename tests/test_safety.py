"""Hostile files, shared folders and crashes: each case failed before the safety work (issue 11)."""
import json
import math
import os
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image, ImageOps

import common.runs as runs
import common.training as training
from common.checkpoints import load_checkpoint, model_from_checkpoint
from common.data import load_train_val
from common.errors import UserError, describe
from common.inference import predict
from common.io import save_json
from common.locks import held_or_refused
from common.run_records import best_run
from common.runs import claim_run_dir, release_run_dir
from common.training import TrainingDiverged
from partA.from_scratch import resume_scratch, run_scratch
from partA.sweep_config import validate_sweep_config
from partA.sweep_engine import LocalSweep, claim_next_run

from conftest import ROOT, TINY, options
from test_training import kill_at, patch_fit

class Exploit:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def hostile_run(tmp_path, marker):
    """A run folder whose checkpoints run `touch marker` when unpickled without weights_only."""
    run = tmp_path / "runs" / "evil"
    run.mkdir(parents=True)
    payload = {"format": "inat-lab/1", "model": {}, "x": Exploit(marker)}
    for name in ("best.pt", "last.pt"):
        torch.save(payload, run / name)
    (run / "record.json").write_text(json.dumps({"name": "evil", "kind": "scratch", "status": "interrupted",
                                                 "epochs": [], "summary": {"best_val_acc": 0.5}}))
    return run


@pytest.mark.parametrize("command", [
    ["partA/evaluate.py", "--run", "evil"],
    ["partA/train.py", "--resume", "evil"],
    ["partC/camera_trap.py", "--demo-clip", "--classifier", "{run}/best.pt"],
])
def test_a_hostile_checkpoint_is_refused_in_one_line_and_never_runs_code(tmp_path, command):
    marker = tmp_path / "pwned"
    run = hostile_run(tmp_path, marker)
    args = [a.replace("{run}", str(run)) for a in command] + (
        ["--runs-dir", str(tmp_path / "runs")] if "--run" in command or "--resume" in command else
        ["--out", str(tmp_path / "out")])
    result = subprocess.run([sys.executable, *args], capture_output=True, text=True, cwd=ROOT,
                            env={**os.environ, "WANDB_MODE": "disabled"})
    assert result.returncode != 0 and "refused" in result.stderr and "Traceback" not in result.stderr, result.stderr
    assert not marker.exists()


def test_a_file_that_is_no_checkpoint_at_all_is_called_that(tmp_path):
    weights = tmp_path / "yolov3-tiny.weights"
    weights.write_bytes(b"\x00\x00\x00\x00\x02\x00\x00\x00" + bytes(range(256)) * 8)  # a Darknet header, floats
    result = subprocess.run([sys.executable, "partC/camera_trap.py", "--demo-clip", "--classifier", str(weights),
                             "--out", str(tmp_path / "out")], capture_output=True, text=True, cwd=ROOT)
    assert result.returncode != 0 and "is not a PyTorch checkpoint" in result.stderr, result.stderr
    assert "run code" not in result.stderr and "Traceback" not in result.stderr


def test_a_damaged_record_is_rebuilt_from_last_pt_or_skipped_never_blocking_the_best_run_scan(tiny_data, tmp_path):
    for name in ("good", "torn", "lost"):
        run_scratch(options(tmp_path, epochs=1, run_name=name), data=tiny_data)
    runs = tmp_path / "runs"
    whole = (runs / "torn" / "record.json").read_text()
    (runs / "torn" / "record.json").write_text(whole[:len(whole) // 2])  # truncated mid-write by a full disk, say
    (runs / "lost" / "record.json").write_text("{")
    (runs / "lost" / "last.pt").write_bytes(b"not a checkpoint")
    with pytest.warns(UserWarning) as said:
        best_run(runs)
    messages = [str(w.message) for w in said]
    assert any("torn/record.json is damaged" in m and "rebuilt it from the run's last.pt" in m for m in messages)
    assert any("lost/record.json is damaged" in m and "skipped that run" in m for m in messages)
    rebuilt, original = json.loads((runs / "torn" / "record.json").read_text()), json.loads(whole)
    assert rebuilt["epochs"] == original["epochs"] and rebuilt["summary"] == original["summary"]  # no epoch lost


def test_two_runs_with_the_same_name_cannot_both_start(tiny_data, tmp_path):
    first = claim_run_dir(tmp_path / "runs" / "same")
    with pytest.raises(UserError, match="in use by process"):  # a second claimant (here: the same run again, new)
        code = ("import sys; from common.runs import claim_run_dir; claim_run_dir(sys.argv[1])")
        result = subprocess.run([sys.executable, "-c", code, str(first)], capture_output=True, text=True, cwd=ROOT)
        raise UserError(result.stderr.strip().splitlines()[-1])
    release_run_dir(first)
    run_scratch(options(tmp_path, epochs=1, run_name="same"), data=tiny_data)
    with pytest.raises(UserError, match="already exists"):
        run_scratch(options(tmp_path, epochs=1, run_name="same"), data=tiny_data)


@pytest.mark.parametrize("left", ["record", "record-being-written"])
def test_a_run_killed_before_its_first_checkpoint_starts_again_with_its_own_command(tiny_data, tmp_path, capsys, left):
    """kill -9 before epoch 1 leaves record.json (status running) or only its temp file, and run.lock whose holder
    is gone: the original command proceeds, saying so, and --resume points at it."""
    run = tmp_path / "runs" / "kr3"
    run.mkdir(parents=True)
    (run / "run.lock").write_text(json.dumps({"host": "h", "pid": 999999, "started": 1}))
    name = "record.json" if left == "record" else ".record.json.x1y2.tmp"
    (run / name).write_text(json.dumps({"name": "kr3", "status": "running", "epochs": []})[:30 if name[0] == "." else None])
    with pytest.raises(UserError, match="kr3 stopped before its first checkpoint.*start it again with the command"):
        resume_scratch("kr3", {}, runs_dir=str(tmp_path / "runs"), data=tiny_data)
    record = run_scratch(options(tmp_path, epochs=1, run_name="kr3"), data=tiny_data)
    assert record["status"] == "finished" and (run / "last.pt").is_file()
    assert "starting it again" in capsys.readouterr().err
    (run / "record.json").unlink()  # a checkpoint is never replaced, whatever the record says
    with pytest.raises(UserError, match="already exists"):
        run_scratch(options(tmp_path, epochs=1, run_name="kr3"), data=tiny_data)
    assert (run / "last.pt").is_file()


def test_a_run_that_is_still_training_cannot_be_resumed(demo_root, tmp_path):
    train = [sys.executable, "partA/train.py", "--data-dir", str(demo_root), "--image-size", "32", "--filters",
             "4,8,8,16,16", "--dense-units", "16", "--epochs", "200", "--wandb", "disabled", "--quiet",
             "--runs-dir", str(tmp_path / "runs"), "--cache-dir", str(tmp_path / "cache"), "--run-name", "live"]
    proc = subprocess.Popen(train, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        record = tmp_path / "runs" / "live" / "record.json"
        deadline = time.time() + 120
        while not (record.exists() and json.loads(record.read_text())["epochs"]) and time.time() < deadline:
            time.sleep(0.2)
        resumed = subprocess.run([sys.executable, "partA/train.py", "--resume", "live", "--runs-dir",
                                  str(tmp_path / "runs")], capture_output=True, text=True, cwd=ROOT)
        assert resumed.returncode != 0 and f"in use by process {proc.pid}" in resumed.stderr
        assert "Traceback" not in resumed.stderr
    finally:
        proc.kill()
        proc.wait()
    # once the process is gone (killed -9: no clean-up ran) the lock is free again
    release_run_dir(claim_run_dir(tmp_path / "runs" / "live", resume=True))


def test_resume_refuses_other_data_with_the_same_classes(tiny_data, demo_root, tmp_path, monkeypatch):
    patch_fit(monkeypatch, kill_at(1))
    with pytest.raises(KeyboardInterrupt):
        run_scratch(options(tmp_path, epochs=2, run_name="half", data_dir=str(demo_root)), data=tiny_data)
    monkeypatch.undo()
    other = load_train_val(demo_root, 32, seed=7, cache_dir=tmp_path / "cache2", progress=False)  # another split
    assert other.classes == tiny_data.classes
    with pytest.raises(UserError, match="not what run half trained on"):
        resume_scratch("half", {}, runs_dir=str(tmp_path / "runs"), data=other)


def test_resume_refuses_other_images_under_the_same_file_names(tiny_data, demo_root, tmp_path, monkeypatch):
    patch_fit(monkeypatch, kill_at(1))
    with pytest.raises(KeyboardInterrupt):
        run_scratch(options(tmp_path, epochs=2, run_name="half", data_dir=str(demo_root)), data=tiny_data)
    monkeypatch.undo()
    copy = tmp_path / "d3"
    shutil.copytree(demo_root, copy)
    for path in (copy / "inaturalist_12K" / "train").rglob("*.jpg"):  # same names, other pictures
        with Image.open(path) as image:
            ImageOps.mirror(image.convert("RGB")).save(path)
    other = load_train_val(copy, 32, cache_dir=tmp_path / "cache", progress=False)
    assert other.train.paths == tiny_data.train.paths  # the file names (and so the split) are the same
    with pytest.raises(UserError, match="not what run half trained on"):
        resume_scratch("half", {"data_dir": str(copy)}, runs_dir=str(tmp_path / "runs"), data=other)


def test_a_kill_between_last_pt_and_the_record_loses_no_epoch(tiny_data, tmp_path, monkeypatch):
    real_save = training.RunRecord.save

    def save_then_die(self):  # killed right after last.pt of epoch 2: no record write happens any more
        if self.data["epochs"] and self.data["epochs"][-1]["epoch"] == 2:
            raise KeyboardInterrupt
        real_save(self)

    monkeypatch.setattr(training.RunRecord, "save", save_then_die)
    with pytest.raises(KeyboardInterrupt):
        run_scratch(options(tmp_path, epochs=3, run_name="gap"), data=tiny_data)
    monkeypatch.undo()
    on_disk = json.loads((tmp_path / "runs/gap/record.json").read_text())
    assert [e["epoch"] for e in on_disk["epochs"]] == [1]  # the record lost epoch 2 ...
    assert load_checkpoint(tmp_path / "runs/gap/last.pt")["epoch"] == 2  # ... which last.pt holds
    record = resume_scratch("gap", {}, runs_dir=str(tmp_path / "runs"), data=tiny_data)
    assert [e["epoch"] for e in record["epochs"]] == [1, 2, 3]


@pytest.mark.parametrize("args, message", [
    (["--run-name", "../escape"], "must be a plain folder name"),
    (["--run-name", "/tmp/abs"], "must be a plain folder name"),
    (["--run-name", "two\nlines"], "must be a plain folder name"),
    (["--run-name", "x" * 300], "300 characters long; keep it to 120"),
    (["--padding", "1000"], "padding"),
    (["--momentum", "-5"], "momentum"),
    (["--image-size", "20000"], "image size"),
    (["--base-filters", "0"], "--base-filters must be >= 1"),
])
def test_bad_training_options_are_one_line_errors(demo_root, tmp_path, args, message):
    result = subprocess.run([sys.executable, "partA/train.py", "--data-dir", str(demo_root), "--wandb", "disabled",
                             "--runs-dir", str(tmp_path / "runs"), "--cache-dir", str(tmp_path / "cache"), *args],
                            capture_output=True, text=True, cwd=ROOT)
    assert result.returncode != 0 and message in result.stderr.lower() and "Traceback" not in result.stderr, result.stderr
    assert not (tmp_path / "escape").exists() and not list((tmp_path / "cache").glob("images/*"))


def test_a_read_only_runs_dir_fails_before_any_data_is_read(demo_root, tmp_path, monkeypatch):
    monkeypatch.setattr(runs.os, "access", lambda path, mode: False)  # root may write anywhere: pretend it may not
    with pytest.raises(UserError, match="is not writable"):
        run_scratch({**TINY, "runs_dir": str(tmp_path / "ro"), "cache_dir": str(tmp_path / "cache"), "epochs": 1,
                     "data_dir": str(demo_root)})
    assert not (tmp_path / "cache").exists()  # no split, no decode: the error came first
    monkeypatch.undo()
    (tmp_path / "afile").write_text("x")
    with pytest.raises(UserError, match="cannot create --runs-dir"):
        run_scratch({**TINY, "runs_dir": str(tmp_path / "afile" / "runs"), "cache_dir": str(tmp_path / "cache"),
                     "epochs": 1, "data_dir": str(demo_root)})


def test_resume_compares_what_options_mean_not_how_they_are_spelled(tiny_data, tmp_path, monkeypatch):
    patch_fit(monkeypatch, kill_at(1))
    with pytest.raises(KeyboardInterrupt):
        run_scratch(options(tmp_path, epochs=2, run_name="spell", filters=None, base_filters=4, organisation="double",
                            kernel_sizes="3"), data=tiny_data)
    monkeypatch.undo()
    runs = str(tmp_path / "runs")
    with pytest.raises(UserError, match="was trained with filters=\\[4, 8, 16, 32, 64\\]"):
        resume_scratch("spell", {"base_filters": 8, "organisation": "double"}, runs_dir=runs, data=tiny_data)
    with pytest.raises(UserError, match="was trained with filters"):
        resume_scratch("spell", {"organisation": "half", "base_filters": 4}, runs_dir=runs, data=tiny_data)
    # the same choices, spelled as given at the start (a single kernel size = one per block): accepted
    record = resume_scratch("spell", {"kernel_sizes": "3", "base_filters": 4, "organisation": "double"}, runs_dir=runs,
                            data=tiny_data)
    assert record["status"] == "finished"


def test_a_scalar_sweep_parameter_is_a_clear_error():
    config = {"method": "random", "metric": {"name": "val_acc", "goal": "maximize"},
              "parameters": {"epochs": 15, "lr": {"values": [0.001, 0.002]}}}
    with pytest.raises(UserError, match="parameter 'epochs' must be a mapping, e.g. epochs: {value: 15}"):
        validate_sweep_config(config)


def test_evaluate_refuses_zero_grid_images_per_class(tmp_path):
    result = subprocess.run([sys.executable, "partA/evaluate.py", "--per-class", "0", "--runs-dir", str(tmp_path)],
                            capture_output=True, text=True, cwd=ROOT)
    assert result.returncode != 0 and "--per-class" in result.stderr and "Traceback" not in result.stderr


def test_validation_loss_is_plain_cross_entropy_whatever_the_training_smoothing(tiny_data, tmp_path):
    record = run_scratch(options(tmp_path, epochs=4, run_name="ls", label_smoothing=0.3, augment=False, lr=1e-2),
                         data=tiny_data)
    ckpt = load_checkpoint(tmp_path / "runs/ls/last.pt")
    logits = predict(model_from_checkpoint(ckpt), tiny_data.val.images, ckpt["mean"], ckpt["std"], torch.device("cpu"),
                     precision=record["precision"], channels_last=True)
    smoothed = F.cross_entropy(logits, tiny_data.val.labels, label_smoothing=0.3).item()
    plain = F.cross_entropy(logits, tiny_data.val.labels).item()
    assert abs(plain - smoothed) > 1e-3  # the two differ here, so the check below can tell them apart
    assert record["epochs"][-1]["val_loss"] == pytest.approx(plain, rel=1e-4)  # runs with other smoothing compare
    assert record["train_loss_label_smoothing"] == 0.3  # the training loss is the smoothed one, and says so


def test_resume_restores_the_saved_random_generators(tiny_data, tmp_path, monkeypatch):
    patch_fit(monkeypatch, kill_at(1))
    with pytest.raises(KeyboardInterrupt):
        run_scratch(options(tmp_path, epochs=2, run_name="rng"), data=tiny_data)
    monkeypatch.undo()
    saved = load_checkpoint(tmp_path / "runs/rng/last.pt")["rng"]["torch"]
    restored = []
    real = torch.set_rng_state
    monkeypatch.setattr(torch, "set_rng_state", lambda state: (restored.append(state.clone()), real(state)))
    resume_scratch("rng", {}, runs_dir=str(tmp_path / "runs"), data=tiny_data)
    assert restored and torch.equal(restored[0], saved)


def test_temp_files_of_killed_writers_are_cleaned_up_and_live_ones_kept(tmp_path):
    target = tmp_path / "record.json"
    orphan = tmp_path / ".record.json.k1ll3d.tmp"  # what a kill -9 in the middle of a write leaves
    live = tmp_path / ".record.json.wr1t1ng.tmp"  # another process writing right now
    other = tmp_path / ".notes.txt.abc.tmp"  # not ours to touch
    for path in (orphan, live, other):
        path.write_text("partial")
    two_hours_ago = time.time() - 7200
    os.utime(orphan, (two_hours_ago, two_hours_ago))
    os.utime(other, (two_hours_ago, two_hours_ago))
    save_json(target, {"ok": 1})
    assert json.loads(target.read_text()) == {"ok": 1}
    assert not orphan.exists() and live.exists() and other.exists()


def test_sweep_proposals_are_plain_numbers_and_checkpoints_load_with_weights_only(tmp_path, tiny_data):
    """A sampler's or a caller's numpy scalars must not end up pickled in checkpoints that weights_only refuses
    (found when make assignment's bayes sweep handed its best run to test evaluation)."""
    config = {"method": "random", "metric": {"name": "val_acc", "goal": "maximize"},
              "parameters": {"lr": {"distribution": "log_uniform_values", "min": 1e-3, "max": 1e-2}}}
    sweep = LocalSweep.create_or_open(tmp_path / "sweeps" / "p", config, {"data_dir": "unused"})
    assert type(claim_next_run(sweep, 3)["params"]["lr"]) is float
    run_scratch(options(tmp_path, epochs=1, run_name="np", lr=np.float64(0.003)), data=tiny_data)
    ckpt = load_checkpoint(tmp_path / "runs/np/best.pt")
    assert type(ckpt["train_config"]["lr"]) is float
    legacy = {**ckpt, "train_config": {**ckpt["train_config"], "lr": np.float64(0.003)}}  # written by code before it
    torch.save(legacy, tmp_path / "legacy.pt")
    with pytest.raises(UserError, match="holds more than tensors and plain data"):  # one line, no allow-list for it
        load_checkpoint(tmp_path / "legacy.pt")


def test_a_diverged_epoch_is_never_saved_and_the_run_continues_with_a_smaller_step(tiny_data, tmp_path):
    # step schedule: lr 1e-3 in epoch 1, then × 1e13 — epoch 2 blows up (weights or batch-norm statistics go inf)
    diverging = options(tmp_path, epochs=2, run_name="div", optimizer="sgd", lr=1e-3, grad_clip=0.0, scheduler="step",
                        step_size=1, gamma=1e13, warmup_epochs=0.0)
    with pytest.raises(TrainingDiverged, match="epoch 2.*resume div --lr"):
        run_scratch(diverging, data=tiny_data)
    last = load_checkpoint(tmp_path / "runs/div/last.pt")
    assert last["epoch"] == 1
    assert all(torch.isfinite(t).all() for t in last["model"].values() if t.is_floating_point())
    record = json.loads((tmp_path / "runs/div/record.json").read_text())
    assert record["status"] == "diverged" and [e["epoch"] for e in record["epochs"]] == [1]
    # the way out the message names: the same run, a smaller step (epoch 2's lr becomes 1e-16 × 1e13 = 1e-3);
    # a run that did not diverge still refuses another --lr (test_training: test_resume_refuses_a_changed_option)
    resumed = resume_scratch("div", {"lr": 1e-16}, runs_dir=str(tmp_path / "runs"), data=tiny_data)
    assert resumed["status"] == "finished" and [e["epoch"] for e in resumed["epochs"]] == [1, 2]
    assert resumed["changed_on_resume"] == [{"epoch": 1, "lr": [1e-3, 1e-16]}]
    assert all(math.isfinite(e["val_loss"]) for e in resumed["epochs"])


def test_an_epoch_whose_batch_norm_statistics_went_inf_is_not_saved(tiny_data, tmp_path, monkeypatch):
    """What a huge learning rate does on real data (issue: --lr 1e12 --grad-clip 0 --optimizer sgd): the training
    loss stays finite — batch norm normalises with each batch's own statistics — while the running variance it
    keeps for evaluation overflows. Injected here after epoch 2's real training step, once."""
    real_epoch, poisoned = training.train_one_epoch, []

    def epoch_then_overflow(session, cfg, epoch, n_train, run_dir):
        result = real_epoch(session, cfg, epoch, n_train, run_dir)
        if epoch == 1 and not poisoned:
            bn = next(m for m in session.model.modules() if isinstance(m, torch.nn.BatchNorm2d))
            bn.running_var.fill_(float("inf"))
            poisoned.append(epoch)
        return result

    monkeypatch.setattr(training, "train_one_epoch", epoch_then_overflow)
    with pytest.raises(TrainingDiverged, match="running_var became NaN/inf in epoch 2; nothing of it was saved"):
        run_scratch(options(tmp_path, epochs=3, run_name="inf"), data=tiny_data)
    last = load_checkpoint(tmp_path / "runs/inf/last.pt")
    assert last["epoch"] == 1 and all(torch.isfinite(t).all() for t in last["model"].values() if t.is_floating_point())
    assert [e["epoch"] for e in json.loads((tmp_path / "runs/inf/record.json").read_text())["epochs"]] == [1]


def test_the_best_run_is_a_complete_run_of_the_named_sweep_never_a_foreign_or_interrupted_one(tmp_path):
    """make assignment takes its model from its own sweep: a better-scoring run left by another command, or an
    interrupted one (10 of 30 epochs, as `make demo` once left), must not be chosen."""
    def planted(name, acc, status, sweep=None):
        run = tmp_path / "runs" / name
        run.mkdir(parents=True)
        (run / "best.pt").write_bytes(b"")
        record = {"name": name, "kind": "scratch", "status": status, "summary": {"best_val_acc": acc},
                  **({"sweep": sweep} if sweep else {})}
        (run / "record.json").write_text(json.dumps(record))

    planted("assignment-a", 0.61, "finished", "assignment")
    planted("assignment-b", 0.66, "stopped", "assignment")  # stopped by hyperband: complete, and the sweep's best
    planted("assignment-c", 0.90, "interrupted", "assignment")  # killed mid-run: never chosen
    planted("demo-scratch", 0.95, "finished")  # another command's run, better than anything of the sweep's
    planted("halfway", 0.99, "interrupted")
    runs = tmp_path / "runs"
    assert best_run(runs, kind="scratch", sweep="assignment").name == "assignment-b"
    assert best_run(runs, kind="scratch").name == "demo-scratch"  # without a sweep: complete runs only
    with pytest.raises(UserError, match="no complete run of sweep other"):
        best_run(runs, sweep="other")
    result = subprocess.run([sys.executable, "partA/evaluate.py", "--sweep", "nosuch", "--runs-dir", str(runs)],
                            capture_output=True, text=True, cwd=ROOT)
    assert result.returncode != 0 and "no complete run of sweep nosuch" in result.stderr and "Traceback" not in result.stderr


@pytest.mark.parametrize("script", ["partA/train.py", "partB/finetune.py", "partC/detect.py", "handin/assignment.py"])
def test_a_script_started_without_the_projects_environment_says_in_one_line_how_to_start(script):
    # -S: no site-packages, as a system Python without the venv has none of torch, click, ...
    result = subprocess.run([sys.executable, "-S", script, "--help"], capture_output=True, text=True, cwd=ROOT)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines() == [
        f"torch is not installed for {sys.executable}: run `make setup` once, then start scripts with .venv/bin/python "
        f"(e.g. .venv/bin/python {script} --help), or `source .venv/bin/activate` first"]


@pytest.mark.parametrize("script", ["partA/train.py", "partB/finetune.py"])
def test_a_failed_start_leaves_no_empty_run_folder(script, tmp_path):
    result = subprocess.run([sys.executable, script, "--data-dir", str(tmp_path / "nowhere"), "--run-name", "r",
                             "--runs-dir", str(tmp_path / "runs")], capture_output=True, text=True, cwd=ROOT)
    assert result.returncode == 1 and f"--data-dir {tmp_path / 'nowhere'} not found" in result.stderr
    assert not (tmp_path / "runs" / "r").exists()


@pytest.mark.slow
def test_a_stopped_training_run_names_the_run_and_the_command_that_continues_it(demo_root, tmp_path):
    runs = tmp_path / "runs"
    child = subprocess.Popen([sys.executable, "partA/train.py", "--data-dir", str(demo_root), "--runs-dir", str(runs),
                              "--cache-dir", str(tmp_path / "cache"), "--image-size", "32", "--filters", "4,8,8,16,16",
                              "--dense-units", "16", "--batch-size", "16", "--epochs", "200", "--run-name", "stopme",
                              "--wandb", "disabled", "--device", "cpu"], cwd=ROOT, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    while time.time() < deadline and not (runs / "stopme" / "last.pt").exists():
        time.sleep(0.1)
    child.send_signal(signal.SIGTERM)
    _, stderr = child.communicate(timeout=60)
    assert child.returncode == 130
    assert stderr.strip().splitlines()[-1] == (f"interrupted: what finished is saved; continue run stopme with: python "
                                               f"partA/train.py --resume stopme --runs-dir {runs}")


@pytest.mark.parametrize("command", [
    ["partA/sweep.py", "--name", "../../evil"],
    ["partA/sweep.py", "--name", "a b"],
    ["handin/assignment.py", "--name", "../up"],
    ["handin/assignment.py", "--budget", "nan"],
    ["handin/assignment.py", "--budget", "-5"],
    ["partC/detect.py", "x.jpg", "--out", "{file}"],
    ["partC/camera_trap.py", "--demo-clip", "--out", "{file}/inside"],
    ["partA/evaluate.py", "--out", "{file}"],
    ["handin/report.py", "--out", "{file}"],
    ["handin/report.py", "--sweep", "../../etc", "--out", "{file}-out"],  # a folder, but no sweep's (issue 39)
    ["handin/report.py", "--sweep", "a b", "--out", "{file}-out"],
])
def test_names_that_become_folders_and_every_out_are_checked_before_anything_runs(command, tmp_path):
    """One check, shared by every command: a name is one plain folder name, an --out a folder that can be made."""
    afile = tmp_path / "afile"
    afile.write_text("not a folder")
    args = [a.replace("{file}", str(afile)) for a in command]
    result = subprocess.run([sys.executable, *args], capture_output=True, text=True, cwd=ROOT)
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr
    assert result.stderr.strip().splitlines()[-1].startswith("Error: Invalid value for")
    assert not (ROOT.parent / "evil").exists() and afile.read_text() == "not a folder"


def test_a_second_assignment_of_one_name_is_refused_at_once(tmp_path):
    out = tmp_path / "out"
    with held_or_refused(out / "assignment.lock", "held"):
        result = subprocess.run([sys.executable, "handin/assignment.py", "--name", "hw", "--out", str(out),
                                 "--data-dir", str(tmp_path / "nothing")], capture_output=True, text=True, cwd=ROOT)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert result.stderr.strip() == (f"Error: assignment hw is already running (process {os.getpid()}, --out {out}); "
                                     f"wait for it to finish, or give another --name")


def test_a_caught_library_error_is_named_in_one_line():
    # SQLAlchemy wraps the driver's error and appends its SQL and a link on further lines; wandb adds hints: a one-line
    # error that quoted such a message whole would span several lines
    class DriverError(Exception):
        pass

    wrapped = RuntimeError("(psycopg.OperationalError) connection refused\n[SQL: SELECT 1]\n(Background: https://…)")
    wrapped.orig = DriverError("connection to server at 127.0.0.1 failed: Connection refused\n\tIs the server running?")
    assert describe(wrapped) == "DriverError: connection to server at 127.0.0.1 failed: Connection refused"
    assert describe(ValueError("first\nsecond")) == "ValueError: first"
    assert describe(KeyError()) == "KeyError: no message" and len(describe(ValueError("x" * 500))) < 200


def test_a_failed_start_in_a_folder_the_user_made_never_deletes_it(tiny_data, tmp_path, monkeypatch):
    # --run-name naming an existing folder of the user's (no checkpoint in it): the run may use it, but a start that
    # fails before its first checkpoint removes only folders that hold nothing but a run's own files
    run = tmp_path / "runs" / "mine"
    run.mkdir(parents=True)
    (run / "notes.txt").write_text("the user's")

    def crash(*args, **kwargs):
        raise RuntimeError("the first epoch failed")

    monkeypatch.setattr(training, "train_one_epoch", crash)
    with pytest.raises(RuntimeError):
        run_scratch(options(tmp_path, epochs=1, run_name="mine"), data=tiny_data)
    assert (run / "notes.txt").read_text() == "the user's"
