"""The local sweep controller (on a fast fake objective), config validation, and the report."""
import copy
import json
import multiprocessing
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest
from PIL import Image

from common.demo_data import CLASSES
from common.errors import UserError
from common.locks import process_identity
from common.models import CNNConfig
from common.recipe import TrainConfig
from handin.sweep_report import _axis_positions, confounded_pairs, observations
from partA.sweep_config import load_sweep_config, validate_sweep_config
from partA.sweep_engine import (STALE_AFTER_SECONDS, Heartbeat, LocalSweep, _alive, claim_next_run, run_agent,
                                scratch_trainer)

from conftest import ROOT

GRID = {"method": "grid", "metric": {"name": "val_acc", "goal": "maximize"},
        "parameters": {"dropout": {"values": [0.0, 0.1, 0.2]}, "batch_norm": {"values": [True, False]}}}


def fake_trainer(epochs=6, delay=0.0, fail_when=None, calls=None):
    """A stand-in for training: val_acc rises towards a quality set by the params, one 'epoch' at a time."""
    def train(options, should_stop, resume, extra):
        if calls is not None:
            calls.append((options["run_name"], resume))
        if fail_when and fail_when(options):
            raise RuntimeError("this config crashes")
        quality = options.get("lr", 0.5) if "lr" in options else 0.9 - options.get("dropout", 0.0)
        status, best = "finished", 0.0
        for epoch in range(1, epochs + 1):
            time.sleep(delay)
            acc = quality * (1 - 0.5 ** epoch)
            best = max(best, acc)
            if should_stop(epoch, {"epoch": epoch, "val_acc": acc, "val_loss": 1 - acc}):
                status = "stopped"
                break
        return {"name": options["run_name"], "status": status, "summary": {"best_val_acc": best, "epochs_done": epoch}}

    return train


def new_sweep(tmp_path, config, name="s"):
    return LocalSweep.create_or_open(tmp_path / "sweeps" / name, config, {"data_dir": "unused"})


def configs(sweep):
    return [tuple(sorted(r["params"].items())) for r in sweep.runs()]


def test_grid_proposes_every_point_once_then_stops(tmp_path):
    sweep = new_sweep(tmp_path, GRID)
    run_agent(sweep, count=100, runs_dir=str(tmp_path), train=fake_trainer(), log=lambda *_: None)
    assert len(configs(sweep)) == 6 and len(set(configs(sweep))) == 6
    assert all(r["state"] == "finished" for r in sweep.runs())


@pytest.mark.parametrize("method", ["random", "bayes"])
def test_random_and_bayes_propose_values_inside_the_space(tmp_path, method):
    config = {"method": method, "metric": {"name": "val_acc", "goal": "maximize"},
              "parameters": {"lr": {"distribution": "uniform", "min": 0.1, "max": 0.9},
                             "dropout": {"values": [0.0, 0.3]}}}
    sweep = new_sweep(tmp_path, config)
    run_agent(sweep, count=6, runs_dir=str(tmp_path), train=fake_trainer(epochs=2), log=lambda *_: None)
    runs = sweep.runs()
    assert len(runs) == 6
    assert all(0.1 <= r["params"]["lr"] <= 0.9 and r["params"]["dropout"] in (0.0, 0.3) for r in runs)
    assert len({r["params"]["lr"] for r in runs}) == 6


@pytest.mark.parametrize("method", ["random", "bayes"])
def test_no_config_of_a_discrete_space_is_run_twice(tmp_path, method):
    # 6 configs: drawn with replacement, random repeats one within 6 draws with probability 1 − 6!/6⁶ ≈ 0.98,
    # and bayes re-proposes its best point; a repeat would train to the same result (same data, seed, config)
    config = {**GRID, "method": method}
    sweep = new_sweep(tmp_path, config)
    run_agent(sweep, count=10, runs_dir=str(tmp_path), train=fake_trainer(epochs=2), log=lambda *_: None)
    assert len(configs(sweep)) == 6 and len(set(configs(sweep))) == 6  # every point once, then the sweep is done


def test_hyperband_stops_runs_that_trail(tmp_path):
    """wandb's hyperband (min_iter 2, eta 2: rungs at epochs 2, 4, 8) recounted by hand from the records: a run
    stops at a rung exactly when it is not in the best half (rounded down, at least the best one) of the
    runs that had reached that rung by then, itself included — what Optuna's successive halving decides."""
    config = {"method": "grid", "metric": {"name": "val_acc", "goal": "maximize"},
              "early_terminate": {"type": "hyperband", "min_iter": 2, "eta": 2},
              "parameters": {"lr": {"values": [0.9, 0.85, 0.1, 0.8, 0.05, 0.15]}}}
    sweep = new_sweep(tmp_path, config)
    run_agent(sweep, count=6, runs_dir=str(tmp_path), train=fake_trainer(epochs=8), log=lambda *_: None)
    runs = sweep.runs()  # oldest first: the order the rungs saw them
    assert len(runs) == 6 and {r["state"] for r in runs} <= {"finished", "stopped"}
    stopped_somewhere = False
    for k, run in enumerate(runs):
        epochs = len(run["history"])
        for rung in (2, 4, 8):
            if epochs < rung:
                break
            at_rung = [r["history"][rung - 1]["val_acc"] for r in runs[:k + 1] if len(r["history"]) >= rung]
            keep = max(1, len(at_rung) // 2)
            in_best = run["history"][rung - 1]["val_acc"] >= sorted(at_rung, reverse=True)[keep - 1]
            if rung < 8:
                assert (run["state"] == "stopped" and epochs == rung) == (not in_best), (run["params"], rung)
                stopped_somewhere |= not in_best
    assert stopped_somewhere  # the six learning rates spread widely: some run must trail
    # val_acc = lr·(1 − 0.5^epoch) ranks the runs by lr at every epoch: the largest lr is never cut
    assert max(runs, key=lambda r: r["params"]["lr"])["state"] == "finished"


def _agent(folder, runs_dir, count=100):
    run_agent(LocalSweep(folder), count, runs_dir, train=fake_trainer(epochs=3, delay=0.1), log=lambda *_: None)


@pytest.mark.parametrize("config", [GRID, {**GRID, "method": "bayes",
                                            "early_terminate": {"type": "hyperband", "min_iter": 2, "eta": 2}}],
                         ids=["grid", "bayes+hyperband"])
def test_two_agents_on_one_sweep_never_duplicate_a_config(tmp_path, config):
    # bayes sees the other agent's run in flight (not at hyperband's first rung yet) and must not propose it again
    sweep = new_sweep(tmp_path, config)
    context = multiprocessing.get_context("fork")
    agents = [context.Process(target=_agent, args=(sweep.folder, str(tmp_path))) for _ in range(2)]
    for a in agents:
        a.start()
    for a in agents:
        a.join(60)
    assert [a.exitcode for a in agents] == [0, 0]
    assert len(configs(sweep)) == 6 and len(set(configs(sweep))) == 6
    assert len({r["agent"]["pid"] for r in sweep.runs()}) == 2  # both agents did work


def dead_agent():
    return {"host": __import__("socket").gethostname(), "pid": 2 ** 22 + 12345, "started": 1}  # no such process


def test_an_interrupted_sweep_resumes_the_orphaned_run(tmp_path):
    sweep = new_sweep(tmp_path, GRID)
    orphan = claim_next_run(sweep, count=3)
    orphan["trial"].report(0.5, 1)  # one epoch done before its agent died
    orphan["trial"].set_user_attr("agent", dead_agent())
    calls = []
    run_agent(sweep, count=3, runs_dir=str(tmp_path), train=fake_trainer(calls=calls), log=lambda *_: None)
    assert calls[0] == (f"s-{orphan['id']}", True)  # the orphan first, resumed
    runs = sweep.runs()
    assert len(runs) == 3 and all(r["state"] == "finished" for r in runs)
    resumed = next(r for r in runs if r["id"] == orphan["id"])
    assert resumed["params"] == orphan["params"] and resumed["history"][0] == {"epoch": 1, "val_acc": 0.5}


def test_a_crashing_run_is_recorded_as_failed_and_the_sweep_goes_on(tmp_path):
    sweep = new_sweep(tmp_path, GRID)
    run_agent(sweep, count=6, runs_dir=str(tmp_path), log=lambda *_: None,
              train=fake_trainer(fail_when=lambda o: o["dropout"] == 0.1))
    states = [r["state"] for r in sweep.runs()]
    assert states.count("failed") == 2 and states.count("finished") == 4
    assert all("crashes" in r["error"] for r in sweep.runs() if r["state"] == "failed")


def test_a_sweep_whose_runs_all_failed_ends_in_an_error_when_its_configs_ran_out(tmp_path, capsys):
    from partA.sweep import say_outcome
    config = {**GRID, "parameters": {"dropout": {"values": [0.0, 0.1]}}}  # 2 configs: under the failure limit
    sweep = new_sweep(tmp_path, config)
    run_agent(sweep, count=5, runs_dir=str(tmp_path), train=fake_trainer(fail_when=lambda o: True), log=lambda *_: None)
    with pytest.raises(UserError, match="all 2 runs of sweep s failed, the last with RuntimeError: this config crashes"):
        say_outcome(sweep.folder)
    assert "2 runs (2 failed)" in capsys.readouterr().out


def test_a_different_config_in_an_existing_sweep_folder_is_refused(tmp_path):
    new_sweep(tmp_path, GRID)
    with pytest.raises(UserError, match="different config"):
        new_sweep(tmp_path, {**GRID, "method": "random"})


VALID = {"method": "bayes", "metric": {"name": "val_acc", "goal": "maximize"},
         "parameters": {"activation": {"values": ["relu", "gelu"]}, "lr": {"min": 0.0001, "max": 0.01,
                                                                          "distribution": "log_uniform_values"}}}


@pytest.mark.parametrize("change, message", [
    (lambda c: c["parameters"].update(colour={"values": ["red"]}), "unknown parameter"),
    (lambda c: c["parameters"].update(activation={"values": ["relu", "swish9"]}), "activation='swish9' is rejected"),
    (lambda c: c["parameters"].update(lr={"values": [0.01, -1.0]}), "lr=-1.0 is rejected"),
    (lambda c: c.update(parameters={}), "search space is empty"),
    (lambda c: c["parameters"].update(activation={"values": []}), "search space is empty"),
    (lambda c: c.update(metric={"name": "accuracy", "goal": "maximize"}), "metric name must be one of"),
    (lambda c: c.update(method="genetic"), "method must be one of"),
    # each value checked on its own: a wrong fixed value is named, not the parameter checked beside it (issue 39)
    (lambda c: c["parameters"].update(lr={"value": -1}), "parameter lr=-1 is rejected.*learning rate"),
    (lambda c: c["parameters"].update(lr={"value": float("nan")}), "parameter lr=nan is rejected"),
    (lambda c: c["parameters"].update(image_size={"value": 0}), "parameter image_size=0 is rejected.*image size"),
    (lambda c: c["parameters"].update(epochs={"value": 1e9}), "parameter epochs=1000000000.0 .*must be a whole number"),
    (lambda c: c["parameters"].update(augment={"values": [True, "no"]}), "parameter augment='no' .*true or false"),
    (lambda c: c["parameters"].update(num_classes={"value": 3}), "unknown parameter.*num_classes"),
    (lambda c: c["parameters"].update(in_channels={"value": 1}), "unknown parameter.*in_channels"),
    (lambda c: c["parameters"].update(padding={"value": "valid"}, image_size={"values": [128, 64]}),
     "image_size=64 together with the fixed values {'padding': 'valid'}"),
])
def test_bad_sweep_configs_fail_before_any_run(change, message):
    config = copy.deepcopy(VALID)
    validate_sweep_config(config)
    change(config)
    with pytest.raises(UserError, match=message):
        validate_sweep_config(config)


def test_sweep_cli_rejects_a_bad_config_in_one_line(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("method: bayes\nmetric: {name: val_acc, goal: maximize}\nparameters:\n  activation: {values: [swish9]}\n")
    result = subprocess.run([sys.executable, str(ROOT / "partA/sweep.py"), "--config", str(bad), "--backend", "local",
                             "--runs-dir", str(tmp_path / "runs")], capture_output=True, text=True, cwd=ROOT)
    assert result.returncode != 0 and "swish9" in result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / "runs").exists()


def test_the_shipped_sweep_configs_are_valid():
    for name in ("sweep.yaml", "sweep_demo.yaml"):
        config = load_sweep_config(ROOT / "partA" / name)
        assert config["early_terminate"]["type"] == "hyperband"


def test_a_real_sweep_run_trains_on_validation_data_only(demo_root, tmp_path):
    config = {"method": "grid", "metric": {"name": "val_acc", "goal": "maximize"},
              "parameters": {"activation": {"values": ["relu", "gelu"]}, "epochs": {"value": 1},
                             "image_size": {"value": 32}, "base_filters": {"value": 4}, "dense_units": {"value": 8}}}
    sweep = LocalSweep.create_or_open(tmp_path / "sweeps" / "real", config,
                                      {"data_dir": str(demo_root), "cache_dir": str(tmp_path / "cache"),
                                       "wandb": "disabled"})
    run_agent(sweep, 2, str(tmp_path / "runs"), train=scratch_trainer(str(tmp_path / "runs")), log=lambda *_: None)
    runs = sweep.runs()
    assert [r["state"] for r in runs] == ["finished", "finished"] and all(r["history"] for r in runs)

    record = json.loads(Path(tmp_path / "runs" / f"real-{runs[0]['id']}" / "record.json").read_text())
    assert record["sweep"] == "real" and record["val_images"] == 20  # 2 of 12 per class; the test split has 30


def test_report_builds_from_stored_run_records_with_all_three_plots(tmp_path):
    config = {"method": "grid", "metric": {"name": "val_acc", "goal": "maximize"},
              "parameters": {"lr": {"values": [0.9, 0.7, 0.5, 0.3, 0.1, 0.2]},
                             "activation": {"values": ["relu", "gelu"]}}}
    sweep = new_sweep(tmp_path, config, name="rep")
    run_agent(sweep, count=12, runs_dir=str(tmp_path), train=fake_trainer(epochs=6), log=lambda *_: None)
    result = subprocess.run([sys.executable, str(ROOT / "handin/report.py"), "--sweep", str(sweep.folder),
                             "--out", str(tmp_path / "report")], capture_output=True, text=True, cwd=ROOT)
    assert result.returncode == 0, result.stderr
    for name in ("accuracy_vs_created.png", "parallel_coordinates.png", "importance.png", "report.html"):
        assert (tmp_path / "report" / name).stat().st_size > 5000
    report = json.loads((tmp_path / "report/report.json").read_text())
    analysis = report["sweep_analysis"]
    assert analysis["runs"] == 12 and analysis["best"]["params"]["lr"] == 0.9
    assert analysis["importance"][0]["feature"] == "lr"  # the fake objective depends on lr alone
    assert any(o.startswith("Learning rate: doubling the learning rate changed validation accuracy by +")
               for o in report["observations"]), report["observations"]
    assert any(o.startswith("Activation: not clear") for o in report["observations"])
    html = (tmp_path / "report/report.html").read_text()
    # the three plots, what early stopping saved in this sweep, and make sweep-bench's measurement from docs/
    assert html.count("data:image/png;base64") == 5 and "what early stopping saved" not in html  # (a figure title)
    assert (tmp_path / "report" / "sweep_savings.png").stat().st_size > 5000


def test_the_same_seed_proposes_the_same_random_sweep(tmp_path):
    config = {"method": "random", "metric": {"name": "val_acc", "goal": "maximize"},
              "parameters": {"lr": {"distribution": "log_uniform_values", "min": 1e-4, "max": 1e-1},
                             "activation": {"values": ["relu", "gelu", "mish"]}}}
    proposals = []
    for name in ("a", "b"):
        sweep = new_sweep(tmp_path, config, name=name)
        run_agent(sweep, count=4, runs_dir=str(tmp_path), train=fake_trainer(epochs=1), log=lambda *_: None)
        proposals.append(sorted(configs(sweep)))
    assert proposals[0] == proposals[1]


def test_the_same_seed_proposes_the_same_bayes_sweep_in_the_same_order(tmp_path):
    # run files are named by random ids; the search code must see the history in the order it happened,
    # or two sweeps with the same seed drift apart once the Gaussian process fits it
    config = {"method": "bayes", "metric": {"name": "val_acc", "goal": "maximize"},
              "parameters": {"lr": {"distribution": "log_uniform_values", "min": 1e-4, "max": 0.9},
                             "dropout": {"values": [0.0, 0.1, 0.2, 0.3]}}}
    proposals = []
    for name in ("a", "b", "c"):
        sweep = new_sweep(tmp_path, config, name=name)
        run_agent(sweep, count=10, runs_dir=str(tmp_path), train=fake_trainer(epochs=2), log=lambda *_: None)
        runs = sweep.runs()
        assert [r["created"] for r in runs] == sorted(r["created"] for r in runs)  # oldest first
        proposals.append([tuple(sorted(r["params"].items())) for r in runs])
    assert len(proposals[0]) == 10 and proposals[0] == proposals[1] == proposals[2]


def test_a_recycled_pid_does_not_keep_an_orphan_alive():
    me = process_identity()
    assert _alive({"agent": me})
    # a live process (this one) now has the dead agent's pid, but it started at another time
    assert not _alive({"agent": {**me, "started": (me["started"] or 0) + 12345}})
    assert not _alive({"agent": {**me, "pid": 2 ** 22 + 12345}}) and os.getpid() == me["pid"]


def test_an_agent_on_another_host_is_judged_by_its_heartbeat(tmp_path):
    remote = {"agent": {"host": "elsewhere", "pid": 1, "started": 1}, "heartbeat": time.time()}
    assert _alive(remote)
    remote["heartbeat"] = time.time() - STALE_AFTER_SECONDS - 1
    assert not _alive(remote)


def test_the_heartbeat_thread_keeps_a_long_run_fresh(tmp_path):
    sweep = new_sweep(tmp_path, GRID)
    run = claim_next_run(sweep, count=3)
    run["trial"].set_user_attr("heartbeat", 0)
    with Heartbeat(run["trial"], every=0.05):
        time.sleep(0.3)  # a long epoch: no epoch-end write, yet the heartbeat moves
    assert time.time() - sweep.runs()[0]["heartbeat"] < 5


def test_continuing_a_sweep_with_other_data_or_seed_is_refused_and_context_changes_are_said(tmp_path):
    folder = tmp_path / "sweeps" / "s"
    LocalSweep.create_or_open(folder, GRID, {"data_dir": "data", "seed": 1, "device": "auto"})
    with pytest.raises(UserError, match="started with --data-dir data, you gave data/demo: use --name"):
        LocalSweep.create_or_open(folder, GRID, {"data_dir": "data/demo", "seed": 1, "device": "auto"})
    with pytest.raises(UserError, match="started with --seed 1, you gave 2"):
        LocalSweep.create_or_open(folder, GRID, {"data_dir": "data", "seed": 2, "device": "auto"})
    said = []
    LocalSweep.create_or_open(folder, GRID, {"data_dir": "data", "seed": 1, "device": "cpu"}, log=said.append)
    assert said and "device=cpu" in said[0] and LocalSweep(folder).base_options["device"] == "cpu"


def test_failed_runs_do_not_use_up_the_count_but_a_failing_sweep_stops(tmp_path):
    sweep = new_sweep(tmp_path, {**GRID, "method": "random"})
    calls = []
    run_agent(sweep, count=2, runs_dir=str(tmp_path), log=lambda *_: None,
              train=fake_trainer(calls=calls, fail_when=lambda o: len(calls) == 1))  # the first run crashes
    states = [r["state"] for r in sweep.runs()]
    assert states.count("finished") == 2 and states.count("failed") == 1
    always = new_sweep(tmp_path / "b", {**GRID, "method": "random"})
    with pytest.raises(UserError, match="3 runs failed"):
        run_agent(always, count=2, runs_dir=str(tmp_path / "b"), log=lambda *_: None,
                  train=fake_trainer(fail_when=lambda o: True))


def test_a_run_that_reached_its_last_epoch_finished_and_was_not_stopped(tmp_path, monkeypatch):
    """Successive halving also has a rung at the last epoch (2, 4, 8 of 8): a run there trained to the end, so a
    'stop' there (forced here at every run's epoch 8) must leave it finished, not stopped."""
    monkeypatch.setattr(optuna.pruners.SuccessiveHalvingPruner, "prune", lambda self, study, trial: trial.last_step >= 8)
    config = {"method": "grid", "metric": {"name": "val_acc", "goal": "maximize"},
              "early_terminate": {"type": "hyperband", "min_iter": 2, "eta": 2},
              "parameters": {"lr": {"values": [0.9, 0.1, 0.5]}, "epochs": {"value": 8}}}
    sweep = new_sweep(tmp_path, config)
    run_agent(sweep, count=3, runs_dir=str(tmp_path), train=fake_trainer(epochs=8), log=lambda *_: None)
    assert [(len(r["history"]), r["state"]) for r in sweep.runs()] == [(8, "finished")] * 3


def test_a_run_hyperband_had_stopped_is_not_resumed_to_the_end(tmp_path):
    config = {**GRID, "early_terminate": {"type": "hyperband", "min_iter": 1, "eta": 2}}
    sweep = new_sweep(tmp_path, config)
    run_agent(sweep, count=2, runs_dir=str(tmp_path), train=fake_trainer(epochs=2), log=lambda *_: None)
    orphan = claim_next_run(sweep, count=3)
    orphan["trial"].report(0.0, 1)  # far behind both earlier runs at the first rung (epoch 1: ≥ 0.35) ...
    orphan["trial"].set_user_attr("agent", dead_agent())  # ... and its agent died before marking it stopped
    calls = []
    run_agent(sweep, count=3, runs_dir=str(tmp_path), train=fake_trainer(calls=calls), log=lambda *_: None)
    assert (f"s-{orphan['id']}", True) not in calls
    assert next(r for r in sweep.runs() if r["id"] == orphan["id"])["state"] == "stopped"


def test_exponents_pyyaml_reads_as_strings_are_numbers(tmp_path):
    path = tmp_path / "s.yaml"
    path.write_text("method: grid\nmetric: {name: val_acc, goal: maximize}\nparameters:\n"
                    "  lr: {values: [1e-05, 3e-4, 0.001]}\n  kernel_sizes: {values: ['3', '5,5,3,3,3']}\n")
    params = load_sweep_config(path)["parameters"]
    assert params["lr"]["values"] == [1e-05, 3e-4, 0.001] and params["kernel_sizes"]["values"] == ["3", "5,5,3,3,3"]


def test_hyperband_stopped_runs_count_in_the_observations_up_to_the_epoch_they_reached():
    def row(i, state, dropout, accs):
        return {"id": f"r{i}", "params": {"dropout": dropout}, "val_acc": max(accs), "created": i, "state": state,
                "epochs": len(accs), "error": None,
                "history": [{"epoch": e + 1, "val_acc": a} for e, a in enumerate(accs)]}

    config = {"early_terminate": {"type": "hyperband", "min_iter": 2, "eta": 2}, "metric": {"name": "val_acc"}}
    rows = [row(0, "finished", 0.0, [0.5, 0.6, 0.7, 0.8]), row(1, "finished", 0.2, [0.5, 0.61, 0.7, 0.79]),
            row(2, "stopped", 0.2, [0.3, 0.32]), row(3, "stopped", 0.0, [0.31, 0.3])]
    text = "\n".join(observations(rows, config=config))
    assert "Dropout: not clear" in text and "4 runs at epoch 1" in text  # the stopped runs are in the comparison
    assert "Hyperband stopped 2 of 4 runs early, after 2 epochs; they count in the comparisons" in text


def test_confounded_parameters_are_reported_together_not_as_two_findings():
    # the demo's case: dense 128 occurs exactly when dropout = 0 — one split of the runs, two names
    rows = [{"id": f"r{i}", "params": {"dense_units": d, "dropout": p, "activation": a}, "val_acc": acc, "created": i,
             "state": "finished", "epochs": 12, "error": None, "history": [{"epoch": 12, "val_acc": acc}]}
            for i, (d, p, a, acc) in enumerate([(128, 0.0, "relu", 0.80), (128, 0.0, "gelu", 0.82),
                                                (64, 0.2, "relu", 0.60), (64, 0.2, "gelu", 0.62),
                                                (128, 0.0, "gelu", 0.81), (64, 0.2, "relu", 0.61)])]
    pairs = confounded_pairs(rows, ["activation", "dense_units", "dropout"])
    assert [(a, b) for a, b, _ in pairs] == [("dense_units", "dropout")] and pairs[0][2] == pytest.approx(1.0)
    text = "\n".join(observations(rows))
    assert "dense_units and dropout changed together" in text
    assert "Dropout:" not in text  # no second, separate 'finding' for the same split
    assert "Activation:" in text  # an independent parameter is still analysed


def test_parallel_coordinates_ticks_only_at_values_that_were_tried():
    _, ticks, labels = _axis_positions([0.002, 0.004, 0.008, 0.004], log=True)
    assert labels == ["0.002", "0.004", "0.008"] and ticks == pytest.approx([0.0, 0.5, 1.0])  # log: equal steps
    _, ticks, labels = _axis_positions(["relu"] * 3)
    assert labels == ["relu"] and ticks == [0.5]  # a searched parameter that drew one value still has an axis


def _png(path, colour=(90, 120, 200), size=(300, 200)):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, colour).save(path)
    return path


def _record(runs, name, **fields):
    (runs / name).mkdir(parents=True)
    (runs / name / "best.pt").write_bytes(b"")
    record = {"name": name, "kind": "scratch", "status": "finished", "classes": CLASSES,
              "epochs": [{"epoch": 1, "val_acc": 0.5, "epoch_time": 2.0, "images_per_s": 600.0}],
              "summary": {"best_val_acc": 0.5, "epochs_done": 1, "mean_images_per_s": 600.0},
              "model_spec": {"kind": "cnn", "config": CNNConfig(filters=[4, 8, 8, 16, 16], dense_units=16,
                                                                input_size=32).to_dict()},
              "config": TrainConfig(image_size=32).to_dict(), "train_images": 40, "val_images": 10, **fields}
    (runs / name / "record.json").write_text(json.dumps(record))


def _test_summary(folder, run, kind, test_acc):
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "test_summary.json").write_text(json.dumps({
        "run": run, "kind": kind, "epoch": 3, "best_val_acc": 0.8, "test_acc": test_acc, "test_images": 30,
        "classes": CLASSES, "per_class_acc": {c: test_acc for c in CLASSES}}))


def handin_outputs(tmp_path):
    """A sweep and everything the other commands write (test evaluations, figures, comparison, detections, camera
    trap) — with a better run of another command planted — and build(), which runs handin/report.py on them."""
    config = {"method": "grid", "metric": {"name": "val_acc", "goal": "maximize"},
              "parameters": {"lr": {"values": [0.0021538462071213733, 0.7, 0.5]},
                             "activation": {"values": ["relu", "gelu"]}}}
    sweep = new_sweep(tmp_path, config, name="rep")
    run_agent(sweep, count=6, runs_dir=str(tmp_path), train=fake_trainer(epochs=3), log=lambda *_: None)
    runs, outputs = tmp_path / "runs", tmp_path / "outputs"
    _record(runs, "rep-best", sweep="rep", summary={"best_val_acc": 0.81, "epochs_done": 1, "mean_images_per_s": 1.0})
    _record(runs, "foreign", summary={"best_val_acc": 0.99, "epochs_done": 1, "mean_images_per_s": 1.0})
    _record(runs, "ft", kind="finetune", config={"image_size": 224, "resize_size": 256},
            finetune={"model": "efficientnet_lite0", "weights": "default", "weights_source": "/x/lite0.pth",
                      "freeze": "all-but-last"})
    _test_summary(outputs / "test-eval" / "rep-best", "rep-best", "scratch", 0.75)
    _test_summary(outputs / "test-eval" / "foreign", "foreign", "scratch", 0.98)
    _test_summary(outputs / "test-eval" / "ft", "ft", "finetune", 0.95)
    for name in ("test_grid.png", "confusion_matrix.png"):
        _png(outputs / "test-eval" / "rep-best" / name, size=(3000, 2000))  # as large as the real grids
    for name in ("filters.png", "feature_maps.png", "guided_backprop.png"):
        _png(outputs / "interpret" / "rep-best" / name, size=(3000, 2000))
    for name in ("test_grid.png", "confusion_matrix.png"):  # the fine-tuned run's figures are shown too
        _png(outputs / "test-eval" / "ft" / name)
    (outputs / "compare").mkdir()
    _png(outputs / "compare" / "learning_curves.png")
    (outputs / "compare" / "compare.json").write_text(json.dumps({"same_split": True, "insights": ["ft wins"], "rows": [
        {"run": "rep-best", "kind": "scratch", "model": "5-block CNN", "freeze": "-", "image_size": 64, "val_acc": 0.8,
         "test_acc": 0.75, "trainable_params": 658074, "epochs": 12, "s_per_epoch": 1.1, "feature_pass_s": None,
         "total_s": 13.2, "images_per_s": 1100},
        {"run": "ft", "kind": "finetune", "model": "efficientnet_lite0", "freeze": "all-but-last", "image_size": 224,
         "val_acc": 0.9, "test_acc": 0.95, "trainable_params": 12810, "epochs": 3, "s_per_epoch": 0.1,
         "feature_pass_s": 14.7, "total_s": 15.0, "images_per_s": 9000, "resize_size": 256,
         "settings": {"epochs": 3, "image_size": 224, "augment": False}}],
        "differences": ["The number of epochs differs: rep-best 12, ft 3."]}))
    _png(outputs / "detect" / "dog.jpg")
    (outputs / "detect" / "detections.jsonl").write_text(json.dumps(
        {"source": "/x/dog.jpg", "frame": None, "label": "dog", "score": 0.5703, "box": [1, 2, 3, 4]}) + "\n")
    (outputs / "detect" / "run.json").write_text(json.dumps({"command": "python partC/detect.py /x/dog.jpg",
                                                             "model": "yolov3-tiny", "input_size": 416}))
    (outputs / "trap").mkdir()
    (outputs / "trap" / "summary.json").write_text(json.dumps(
        {"frames": 72, "frames_per_s": 14.0, "kept": 48, "alerts": 1, "cooldown_s": 3, "bad_frames": 0,
         "classifier": None, "alerts_list": [{"time": 0.0, "class": "horse", "score": 0.55, "source": "/x/c.mp4"}],
         "visits": [{"class": "horse", "visit": 1, "start": 0.0, "best_score": 0.89, "alert_score": 0.55}],
         "command": "python partC/camera_trap.py --demo-clip --cooldown 3"}))
    _png(outputs / "trap" / "contact_sheet.png")
    stale = tmp_path / "older" / "rep-best"  # the same run evaluated earlier, elsewhere: must not appear twice
    shutil.copytree(outputs / "test-eval" / "rep-best", stale)
    for path in stale.iterdir():
        os.utime(path, (1, 1))

    def build():
        result = subprocess.run([sys.executable, str(ROOT / "handin/report.py"), "--sweep", str(sweep.folder),
                                 "--finetune-run", "ft", "--runs-dir", str(runs), "--out", str(outputs / "report"),
                                 "--include", str(outputs), "--include", str(tmp_path / "older")],
                                capture_output=True, text=True, cwd=ROOT)
        assert result.returncode == 0, result.stderr
        return (outputs / "report" / "report.html").read_text()

    return outputs, build


@pytest.mark.slow
def test_the_handin_report_answers_the_assignment_in_its_numbering(tmp_path):
    """Every question under its own number, each answer from this sweep's best complete run (a better-scoring run of
    another command is in runs/ and its test evaluation in the outputs: never shown), rebuilt without duplicates."""
    outputs, build = handin_outputs(tmp_path)
    first = build()
    second = build()  # rebuilt with the first report inside --include: nothing doubles
    parts = [h.split("</h2>")[0] for h in second.split("<h2>")[1:]]
    questions = [h.split("</h3>")[0] for h in second.split("<h3>")[1:]]
    assert parts == ["Part A — training a CNN from scratch", "Part B — fine-tuning a pretrained model",
                     "Part C — a pretrained YOLOv3 (yolov3-tiny) in an application"]
    assert questions == ["Q1: parameters and computations", "Q2: the hyperparameter sweep", "Q3: what the sweep shows",
                         "Q4: the best model on the test set, its filters and guided backpropagation",
                         "Q5: the code and how to run it", "Q1: input size and the 1000-class head",
                         "Q2: freezing strategies", "Q3: from scratch vs fine-tuned", "Q4: the code",
                         "The detector and the camera-trap watcher"]
    assert "Missing —" not in second
    # Q2's facts: the split, the settings every run shared, where dropout sits
    assert "Validation: 20% of each class of the training folder (10 images; stratified, drawn with seed 42" in second
    assert "batch 64, adamw with weight decay 0.05" in second and "Dropout sits before and after the dense" in second
    # aug_strength unset: the default 30 epochs give (30 − 10) / 50 = 0.40 on the ramp from 0 at 10 epochs to 1 at 60
    assert "unset, as here, it follows the epochs: 0 up to 10, 1 at 60 (0.40 at 30)." in second
    assert "best-validation checkpoint: the weights of epoch 3" in second  # Q4: which weights the test score is of
    assert "m·H_5·W_5·n" in second and "checked against the real model" in second and ": match." in second  # Q1
    assert "Shows run rep-best: the best complete run of sweep rep" in second and "<td>0.7500</td>" in second  # Q4
    assert "foreign" not in second and "0.9800" not in second  # another command's run is never shown
    assert "Guided backpropagation from 10 CONV5 neurons" in second and "First-layer filters" in second
    assert "1280 → 1000" in second and "classifier.1" in second  # Part B Q1: the head that is replaced
    assert all(f"<td>{s}" in second for s in ("all-but-last (run below)", "first-k", "gradual", "none"))  # Part B Q2
    assert "feature pass (s, once)" in second and "The number of epochs differs: rep-best 12, ft 3." in second
    assert "this one has 40 images" in second and "ft wins" in second  # Part B Q3
    # Part B Q4: each compared run's own command (the weights' own size: no --image-size)
    assert "python partB/finetune.py --model efficientnet_lite0 --freeze all-but-last --epochs 3 --no-augment" in second
    # A-Q5 and B-Q4 link their part's code, or say how to name the repository where the checkout has no web remote
    assert second.count("There is no web repository to link") + second.count("/tree/") == 2
    assert "33.1 mAP" in second  # Part C names the detector's limits
    assert "python partC/detect.py /x/dog.jpg" in second and "dog 0.57" in second  # the command that ran
    assert "python partC/camera_trap.py --demo-clip --cooldown 3" in second and "<td>0.89</td>" in second
    assert "synthetic demo data" in second and "0.00215" in second and "0.0021538462071213733" not in second
    assert len(second) == pytest.approx(len(first), rel=0.01) and second.count("Per-class test accuracy") == 2
    assert len(second) < 3_000_000  # 3000-px figures are downscaled, not embedded whole
    summary = json.loads((outputs / "report" / "report.json").read_text())
    assert summary["run"]["name"] == "rep-best" and summary["finetune_run"] == "ft"
    captions = [b["caption"] for s in summary["sections"] for b in s["blocks"] or [] if b["type"] == "figure"]
    assert {"Test predictions of rep-best (green ✓ right, red ✗ wrong)", "First-layer filters",
            "Guided backpropagation from 10 CONV5 neurons", "Test predictions of ft (green ✓ right, red ✗ wrong)",
            "One crop per visit"} <= set(captions)
    assert "Produced by this lab&#x27;s pipeline" in second and not any(w in second.lower() for w in ("i declare", "my own work"))


def test_the_report_is_written_with_notes_when_parts_are_missing(tmp_path):
    """Only a sweep, nothing else: every missing answer is a visible note naming the command that makes it."""
    sweep = new_sweep(tmp_path, GRID, name="only")
    run_agent(sweep, count=3, runs_dir=str(tmp_path), train=fake_trainer(epochs=2), log=lambda *_: None)
    result = subprocess.run([sys.executable, str(ROOT / "handin/report.py"), "--sweep", str(sweep.folder),
                             "--runs-dir", str(tmp_path / "runs"), "--out", str(tmp_path / "report")],
                            capture_output=True, text=True, cwd=ROOT)
    assert result.returncode == 0, result.stderr
    page = (tmp_path / "report" / "report.html").read_text()
    assert page.count("<h3>") == 10 and "Plot 3: parameter importance" in page
    assert "Missing — no complete run of sweep only yet: run make sweep" in page
    assert f"Missing — no fine-tuning run in {tmp_path / 'runs'} yet: make finetune" in page
    assert "missing:" in result.stderr and "answer(s) missing" in result.stdout


def test_a_torn_last_journal_line_is_skipped_and_damage_before_it_is_one_clear_line(tmp_path):
    sweep = new_sweep(tmp_path, GRID)
    run_agent(sweep, count=2, runs_dir=str(tmp_path), train=fake_trainer(epochs=2), log=lambda *_: None)
    journal = sweep.folder / "journal.log"
    whole = journal.read_text()
    journal.write_text(whole + '{"op_code": 5, "trial_id": 1, "step"')  # a writer killed mid-line
    with pytest.warns(UserWarning, match="dropped a torn last entry"):
        sweep.runs()
    run_agent(sweep, count=3, runs_dir=str(tmp_path), train=fake_trainer(epochs=2), log=lambda *_: None)
    assert [r["state"] for r in sweep.runs()] == ["finished"] * 3
    lines = whole.splitlines(keepends=True)
    journal.write_text("".join(lines[:3]) + "#garbage#\n" + "".join(lines[3:]))
    with pytest.raises(UserError, match=f"sweep journal {journal} is damaged .* move it aside"):
        sweep.runs()


@pytest.mark.slow
def test_a_fixed_sweep_is_bit_identical_twice_even_on_a_busy_machine(demo_root, tmp_path):
    """make demo's promise: a fixed COUNT and seed give the same configurations, stops and accuracies on any run —
    here once on a quiet machine and once beside a process that keeps a core busy."""
    config = tmp_path / "fixed.yaml"
    config.write_text("method: random\nmetric: {name: val_acc, goal: maximize}\n"
                      "early_terminate: {type: hyperband, min_iter: 1, eta: 2}\nparameters:\n"
                      "  lr: {distribution: log_uniform_values, min: 0.001, max: 0.01}\n"
                      "  activation: {values: [relu, gelu]}\n  epochs: {value: 3}\n  image_size: {value: 32}\n"
                      "  filters: {value: '4,8,8,16,16'}\n  dense_units: {value: 16}\n  batch_size: {value: 16}\n")

    def sweep(where, busy):
        burner = subprocess.Popen([sys.executable, "-c", "while True: pass"]) if busy else None
        try:
            result = subprocess.run([sys.executable, "partA/sweep.py", "--config", str(config), "--count", "4",
                                     "--backend", "local", "--name", "fixed", "--runs-dir", str(where),
                                     "--cache-dir", str(tmp_path / "cache"), "--data-dir", str(demo_root),
                                     "--device", "cpu", "--wandb", "disabled"], cwd=ROOT, capture_output=True, text=True)
        finally:
            if burner:
                burner.kill()
                burner.wait()
        assert result.returncode == 0, result.stderr[-2000:]
        return [(r["params"], r["state"], r["history"]) for r in LocalSweep(where / "sweeps" / "fixed").runs()]

    quiet, busy = sweep(tmp_path / "quiet", False), sweep(tmp_path / "busy", True)
    assert len(quiet) == 4 and quiet == busy


def test_where_importance_ranks_a_parameter_that_equal_epochs_do_not_the_sentence_is_about_its_runs():
    # batch norm's runs went on to epoch 4 (best 0.60-0.62) while hyperband stopped the others at 2 (best 0.40-0.42):
    # the best accuracies differ by ~0.2, yet at the same epoch (1) the two groups are level (0.30 ± 0.01)
    def row(i, bn, accs):
        return {"id": f"r{i}", "params": {"batch_norm": bn, "dropout": 0.2 * (i % 2)}, "val_acc": max(accs),
                "created": i, "state": "finished" if len(accs) == 4 else "stopped", "epochs": len(accs), "error": None,
                "history": [{"epoch": e + 1, "val_acc": a} for e, a in enumerate(accs)]}

    config = {"early_terminate": {"type": "hyperband", "min_iter": 2, "eta": 2}, "metric": {"name": "val_acc"}}
    rows = ([row(i, True, [0.30 + 0.01 * (i % 3), 0.4, 0.5, 0.60 + 0.01 * (i % 3)]) for i in range(4)]
            + [row(i, False, [0.31 - 0.01 * (i % 3), 0.40 + 0.01 * (i % 3)]) for i in range(4, 8)])
    importance = [("batch_norm=True", 0.6, 0.9), ("batch_norm=False", 0.3, -0.9)]  # two columns, one parameter
    text = "\n".join(observations(rows, config=config, importance=importance, chance=0.1))
    assert text.count("Batch normalisation ranks") == 1 and "Best run: r2, 0.620" in text
    assert "Batch normalisation ranks 1 in Q2's importance (0.60, r = +0.90): its 4 runs with true reached 0.608" in text
    assert "the other 4 runs reached 0.410 after 2.0" in text and "Batch normalisation: not clear" in text
