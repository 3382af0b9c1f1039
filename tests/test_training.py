"""Part A training: learning, exact resume, divergence, run records, bad input, evaluation."""
import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch import nn

import common.training as training
import partA.from_scratch as scratch
import partA.sweep_engine as engine
from common.checkpoints import load_checkpoint, model_from_checkpoint
from common.errors import UserError
from common.inference import predict
from common.io import save_json
from common.recipe import build_optimizer, lr_multiplier, weight_decay_groups
from common.training import TrainingDiverged
from partA.evaluation import evaluate_on_test
from partA.from_scratch import resume_scratch, run_scratch
from partA.sweep_engine import LocalSweep, run_agent, scratch_trainer
from partA.testset import load_test_set

from conftest import ROOT, TINY, options  # noqa: F401 (the tiny_data fixture is in conftest)
from conftest import write_image

def test_a_few_epochs_reduce_the_training_loss(tiny_data, tmp_path):
    record = run_scratch(options(tmp_path, epochs=15, run_name="learn", augment=False, label_smoothing=0.0,
                                         dropout=0.0, scheduler="none"),
                         data=tiny_data)
    losses = [e["train_loss"] for e in record["epochs"]]
    assert losses[-1] < losses[0] * 0.6
    assert record["status"] == "finished" and record["summary"]["epochs_done"] == 15


def test_run_record_holds_config_metrics_summary_and_environment(tiny_data, tmp_path):
    run_scratch(options(tmp_path, epochs=2, run_name="rec"), data=tiny_data)
    record = json.loads((tmp_path / "runs" / "rec" / "record.json").read_text())
    assert record["config"]["epochs"] == 2 and record["model_spec"]["config"]["filters"] == [4, 8, 8, 16, 16]
    assert set(record["epochs"][0]) >= {"train_loss", "train_acc", "val_loss", "val_acc", "lr", "epoch_time",
                                        "images_per_s"}
    assert record["summary"]["best_val_acc"] == max(e["val_acc"] for e in record["epochs"])
    assert "torch" in record["environment"] and record["split_file"].endswith(".json")


def patch_fit(monkeypatch, on_epoch_start):
    """Make run_scratch's training loop call `on_epoch_start(epoch, model)` (to kill or poison a run)."""
    real_fit = training.fit
    monkeypatch.setattr(scratch, "fit", lambda *a, **kw: real_fit(*a, **{**kw, "on_epoch_start": on_epoch_start}))


def kill_at(epoch_to_kill):
    def hook(epoch, model):
        if epoch == epoch_to_kill:
            raise KeyboardInterrupt  # what Ctrl-C or a killed job does mid-run

    return hook


def _weights(path):
    return load_checkpoint(path)["model"]


@pytest.mark.parametrize("deterministic", [False, True])
def test_resume_after_interruption_matches_an_uninterrupted_run(tiny_data, tmp_path, monkeypatch, deterministic):
    run_scratch(options(tmp_path, epochs=3, run_name="whole", deterministic=deterministic), data=tiny_data)
    patch_fit(monkeypatch, kill_at(2))
    with pytest.raises(KeyboardInterrupt):
        run_scratch(options(tmp_path, epochs=3, run_name="cut", deterministic=deterministic), data=tiny_data)
    monkeypatch.undo()
    assert load_checkpoint(tmp_path / "runs" / "cut" / "last.pt")["epoch"] == 2
    record = resume_scratch("cut", {}, runs_dir=str(tmp_path / "runs"), data=tiny_data)
    assert record["status"] == "finished" and [e["epoch"] for e in record["epochs"]] == [1, 2, 3]
    whole, cut = _weights(tmp_path / "runs/whole/last.pt"), _weights(tmp_path / "runs/cut/last.pt")
    assert all(torch.equal(whole[k], cut[k]) for k in whole)
    assert record["backends"]["deterministic"] is deterministic
    assert torch.are_deterministic_algorithms_enabled() is deterministic


def test_a_run_resumed_by_its_path_is_named_where_it_is(tiny_data, tmp_path, monkeypatch, capsys):
    from common.cli import echo_run_summary
    patch_fit(monkeypatch, kill_at(1))
    with pytest.raises(KeyboardInterrupt):
        run_scratch(options(tmp_path, epochs=2, run_name="dfull", runs_dir=str(tmp_path / "other")), data=tiny_data)
    monkeypatch.undo()
    record = resume_scratch(str(tmp_path / "other" / "dfull"), {}, runs_dir="runs", data=tiny_data)
    echo_run_summary(record, "runs")  # train.py's last line, with its default --runs-dir
    assert capsys.readouterr().out.strip().endswith(f"-> {tmp_path / 'other' / 'dfull'}")


def test_a_finished_run_cannot_be_resumed_and_an_existing_run_is_not_overwritten(tiny_data, tmp_path):
    run_scratch(options(tmp_path, epochs=1, run_name="done"), data=tiny_data)
    before = (tmp_path / "runs/done/last.pt").read_bytes()
    with pytest.raises(UserError, match="already finished"):
        resume_scratch("done", {}, runs_dir=str(tmp_path / "runs"), data=tiny_data)
    with pytest.raises(UserError, match="already exists"):
        run_scratch(options(tmp_path, epochs=1, run_name="done"), data=tiny_data)
    assert (tmp_path / "runs/done/last.pt").read_bytes() == before


def test_resume_refuses_a_changed_option_and_a_missing_run(tiny_data, tmp_path, monkeypatch):
    patch_fit(monkeypatch, kill_at(1))
    with pytest.raises(KeyboardInterrupt):
        run_scratch(options(tmp_path, epochs=2, run_name="half"), data=tiny_data)
    monkeypatch.undo()
    with pytest.raises(UserError, match="was trained with lr=0.003, you gave 0.1"):
        resume_scratch("half", {"lr": 0.1}, runs_dir=str(tmp_path / "runs"), data=tiny_data)
    with pytest.raises(UserError, match="was trained with filters="):
        resume_scratch("half", {"filters": "8,8,8,8,8"}, runs_dir=str(tmp_path / "runs"), data=tiny_data)
    assert resume_scratch("half", {"quiet": True, "filters": "4,8,8,16,16"}, runs_dir=str(tmp_path / "runs"),
                          data=tiny_data)["status"] == "finished"
    with pytest.raises(UserError, match="no run"):
        resume_scratch("missing", {}, runs_dir=str(tmp_path / "runs"))


def test_nan_loss_stops_the_run_and_keeps_the_last_good_checkpoint(tiny_data, tmp_path, monkeypatch):
    def poison(epoch, model):
        if epoch == 1:
            with torch.no_grad():
                next(model.parameters()).fill_(float("nan"))

    patch_fit(monkeypatch, poison)
    with pytest.raises(TrainingDiverged, match="holds the last good epoch"):
        run_scratch(options(tmp_path, epochs=3, run_name="nan"), data=tiny_data)
    ckpt = load_checkpoint(tmp_path / "runs/nan/last.pt")
    assert ckpt["epoch"] == 1 and all(torch.isfinite(v).all() for v in ckpt["model"].values() if v.is_floating_point())
    assert json.loads((tmp_path / "runs/nan/record.json").read_text())["status"] == "diverged"


def test_cosine_schedule_warms_up_then_decays():
    values = [lr_multiplier("cosine", s, 100, 10, 10) for s in range(100)]
    assert values[0] == pytest.approx(0.1) and values[9] == pytest.approx(1.0)
    assert all(a >= b for a, b in zip(values[10:], values[11:])) and values[-1] < 0.01
    assert lr_multiplier("step", 25, 100, 0, 10, step_size=2, gamma=0.1) == pytest.approx(0.1)


def test_evaluation_writes_accuracy_confusion_matrix_and_grid(demo_root, tiny_data, tmp_path):
    run_scratch(options(tmp_path, epochs=1, run_name="ev"), data=tiny_data)
    summary = evaluate_on_test(tmp_path / "runs/ev", demo_root, tmp_path / "out", cache_dir=tmp_path / "cache",
                               progress=False)
    # the accuracy, recomputed independently: the best checkpoint's predictions on the 30 test images, by hand
    ckpt = load_checkpoint(tmp_path / "runs/ev/best.pt")
    test, _ = load_test_set(demo_root, ckpt["classes"], 32, tmp_path / "cache", progress=False)
    logits = predict(model_from_checkpoint(ckpt), test.images, ckpt["mean"], ckpt["std"], torch.device("cpu"))
    assert summary["test_images"] == 30
    assert summary["test_acc"] == pytest.approx((logits.argmax(1) == test.labels).float().mean().item())
    assert (tmp_path / "out/test_grid.png").stat().st_size > 10_000
    assert (tmp_path / "out/confusion_matrix.png").exists()
    assert sum(map(sum, summary["confusion_matrix"])) == 30


def test_evaluation_rejects_a_checkpoint_of_another_config(demo_root, tiny_data, tmp_path):
    run_scratch(options(tmp_path, epochs=1, run_name="cfg"), data=tiny_data)
    path = tmp_path / "runs/cfg/best.pt"
    ckpt = torch.load(path, weights_only=False)
    ckpt["model_spec"]["config"]["dense_units"] = 32
    torch.save(ckpt, path)
    with pytest.raises(UserError, match="does not match the model"):
        evaluate_on_test(tmp_path / "runs/cfg", demo_root, tmp_path / "out", cache_dir=tmp_path / "cache")


def test_evaluation_rejects_data_with_other_classes(demo_root, tiny_data, tmp_path):
    run_scratch(options(tmp_path, epochs=1, run_name="cls"), data=tiny_data)
    other = tmp_path / "other" / "inaturalist_12K"
    for split in ("train", "val"):
        write_image(other / split / "Aves" / "a.jpg")
        write_image(other / split / "Fungi" / "b.jpg")
    with pytest.raises(UserError, match="classes"):
        evaluate_on_test(tmp_path / "runs/cls", other.parent, tmp_path / "out", cache_dir=tmp_path / "cache")


def run_cli(*args, cwd=None):
    return subprocess.run([sys.executable, *args], capture_output=True, text=True, cwd=cwd or ROOT)


@pytest.mark.parametrize("args, message", [
    (["--activation", "swish9"], "Invalid value for '--activation'"),
    (["--optimizer", "adagradx"], "Invalid value for '--optimizer'"),
    (["--lr", "-0.1"], "learning rate must be a positive number"),
    (["--lr", "0"], "learning rate must be a positive number"),
    (["--resume", "no-such-run"], "no run 'no-such-run'"),
])
def test_train_cli_bad_input_is_one_clear_line(args, message, tmp_path):
    result = run_cli(str(ROOT / "partA/train.py"), "--runs-dir", str(tmp_path), "--data-dir", str(tmp_path), *args)
    assert result.returncode != 0 and message in result.stderr and "Traceback" not in result.stderr


def test_evaluate_cli_missing_checkpoint_is_one_clear_line(tmp_path):
    (tmp_path / "runs/empty").mkdir(parents=True)
    result = run_cli(str(ROOT / "partA/evaluate.py"), "--runs-dir", str(tmp_path / "runs"), "--run", "empty")
    assert result.returncode != 0 and "does not exist" in result.stderr and "Traceback" not in result.stderr


def test_a_resumed_run_continues_the_same_offline_wandb_run(tiny_data, tmp_path, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_DIR", str(tmp_path / "wandb"))
    patch_fit(monkeypatch, kill_at(1))
    with pytest.raises(KeyboardInterrupt):
        run_scratch(options(tmp_path, epochs=2, run_name="wb", wandb="offline"), data=tiny_data)
    monkeypatch.undo()
    monkeypatch.setenv("WANDB_MODE", "offline")
    first_id = json.loads((tmp_path / "runs/wb/record.json").read_text())["wandb_id"]
    assert first_id and load_checkpoint(tmp_path / "runs/wb/last.pt")["wandb_id"] == first_id
    record = resume_scratch("wb", {"wandb": "offline"}, runs_dir=str(tmp_path / "runs"), data=tiny_data)
    assert record["wandb_id"] == first_id and record["wandb_mode"] == "offline"


def test_bench_prints_both_speed_ratios(demo_root, tmp_path):
    result = run_cli("bench/pipeline.py", "--data-dir", str(demo_root), "--images", "32", "--image-size", "32",
                     "--batch-size", "16", "--epochs", "1", "--cache-dir", str(tmp_path / "cache"))
    assert result.returncode == 0, result.stderr
    for pipeline in ("seed epoch 1", "competent epoch 1", "ours epoch 1"):
        assert pipeline in result.stdout
    assert "x the seed's" in result.stdout and "x the competent pipeline's" in result.stdout


@pytest.mark.parametrize("optimizer, scheduler", [("sgd", "cosine"), ("adam", "cosine"), ("nadam", "cosine"),
                                                  ("radam", "cosine"), ("adamw", "onecycle"), ("adamw", "step")])
def test_every_optimizer_and_schedule_trains_through_the_real_loop(tiny_data, tmp_path, optimizer, scheduler):
    record = run_scratch(options(tmp_path, epochs=2, run_name="o", optimizer=optimizer, scheduler=scheduler,
                                 step_size=1), data=tiny_data)
    first = load_checkpoint(tmp_path / "runs/o/last.pt")
    assert record["status"] == "finished" and first["optimizer"]["state"]  # the optimiser took real steps
    assert all(torch.isfinite(torch.tensor(e["train_loss"])) for e in record["epochs"])
    lrs = [e["lr"] for e in record["epochs"]]
    if scheduler == "step":  # step_size 1 epoch, gamma 0.1: the second epoch runs at a tenth (peak 3e-3 → 3e-4)
        assert lrs[1] == pytest.approx(3e-4)


def test_no_weight_decay_on_biases_and_norm_layers():
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.Flatten(), nn.LazyLinear(2))
    model(torch.zeros(1, 3, 5, 5))
    optimizer = build_optimizer("adamw", weight_decay_groups(model, 0.5), lr=0.1)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    for p in model.parameters():
        p.grad = torch.zeros_like(p)  # no gradient: only weight decay can move a parameter
    optimizer.step()
    for name, p in model.named_parameters():
        moved = not torch.equal(p, before[name])
        assert moved == (p.ndim > 1), name  # conv/linear weights shrink; biases and BN weight/bias do not


def test_an_orphaned_sweep_run_resumes_through_the_real_trainer(demo_root, tmp_path, monkeypatch):
    config = {"method": "grid", "metric": {"name": "val_acc", "goal": "maximize"},
              "parameters": {"lr": {"values": [0.003]}, "epochs": {"value": 3}, "image_size": {"value": 32},
                             "filters": {"value": "4,8,8,16,16"}, "dense_units": {"value": 16}}}
    sweep = LocalSweep.create_or_open(tmp_path / "sweeps" / "o", config,
                                      {"data_dir": str(demo_root), "cache_dir": str(tmp_path / "cache"),
                                       "wandb": "disabled", "batch_size": 16})
    patch_fit(monkeypatch, kill_at(2))  # the agent dies during epoch 3, after 2 epochs were saved
    with pytest.raises(KeyboardInterrupt):
        run_agent(sweep, 1, str(tmp_path / "runs"), log=lambda *_: None)
    monkeypatch.undo()
    (run,) = sweep.runs()
    assert run["state"] == "running" and len(run["history"]) == 2
    monkeypatch.setattr("partA.sweep_engine._alive", lambda run: False)  # that agent is gone
    done = run_agent(sweep, 1, str(tmp_path / "runs"), train=scratch_trainer(str(tmp_path / "runs")),
                     log=lambda *_: None)
    assert done == [run["id"]] and sweep.runs()[0]["state"] == "finished"
    record = json.loads((tmp_path / "runs" / f"o-{run['id']}" / "record.json").read_text())
    assert record["resumed_from_epoch"] == 2 and [e["epoch"] for e in record["epochs"]] == [1, 2, 3]


@pytest.mark.parametrize("status", ["finished", "interrupted"])
def test_a_sweep_run_that_trained_to_the_end_before_its_agent_died_is_not_trained_again(demo_root, tmp_path,
                                                                                      monkeypatch, status):
    """The signal arrives after the last epoch was saved, before the sweep was told (found by the clean-clone CI:
    the resumed run then failed with 'nothing to resume'): the rerun takes the run's own result."""
    config = {"method": "grid", "metric": {"name": "val_acc", "goal": "maximize"},
              "parameters": {"lr": {"values": [0.003]}, "epochs": {"value": 2}, "image_size": {"value": 32},
                             "filters": {"value": "4,8,8,16,16"}, "dense_units": {"value": 16}}}
    sweep = engine.LocalSweep.create_or_open(tmp_path / "sweeps" / "e", config,
                                             {"data_dir": str(demo_root), "cache_dir": str(tmp_path / "cache"),
                                              "wandb": "disabled", "batch_size": 16})
    real_finish = engine._finish

    def killed_before_telling_the_sweep(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(engine, "_finish", killed_before_telling_the_sweep)
    with pytest.raises(KeyboardInterrupt):
        engine.run_agent(sweep, 1, str(tmp_path / "runs"), log=lambda *_: None)
    (run,) = sweep.runs()
    record_path = tmp_path / "runs" / f"e-{run['id']}" / "record.json"
    if status == "interrupted":  # Ctrl-C between the last epoch's save and the end of the loop
        save_json(record_path, {**json.loads(Path(record_path).read_text()), "status": "interrupted"})
    monkeypatch.setattr(engine, "_finish", real_finish)
    monkeypatch.setattr(engine, "_alive", lambda run: False)  # that agent is gone
    engine.run_agent(sweep, 1, str(tmp_path / "runs"), log=lambda *_: None)
    (after,) = sweep.runs()
    assert after["state"] == "finished" and json.loads(Path(record_path).read_text())["status"] == "finished"
    assert "resumed_from_epoch" not in json.loads(Path(record_path).read_text())  # nothing was trained again
