"""make assignment / make demo: the plan, stale steps, interruption and the report it ends with."""
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from handin import assignment, steps
from handin.sweep_report import MIN_SCORED_RUNS
from partA.sweep_engine import LocalSweep

from conftest import ROOT


def saved_plan(tmp_path, budget=10.0, count=10, rate=500.0, train_images=1200):
    """A plan as make_plan saves it, without the warm-up: 12-epoch sweep runs at `rate` images/s."""
    config = tmp_path / "sweep.yaml"
    config.write_text("method: random\nmetric: {name: val_acc, goal: maximize}\nparameters:\n"
                      "  lr: {values: [0.1, 0.2]}\n  epochs: {value: 12}\n")
    args = {"data_dir": str(tmp_path / "data"), "out": str(tmp_path / "out"), "runs_dir": str(tmp_path / "runs"),
            "cache_dir": str(tmp_path / "cache"), "count": count, "sweep_config": str(config), "sweep_epochs": 12,
            "search": "random", "backend": "local", "name": "hw", "finetune_epochs": 3, "finetune_rate_factor": 0.5,
            "inputs": ["dog.jpg"], "early_terminate": None}
    return {"args": args, "rate": rate, "train_images": train_images, "gpus": 0, "budget": budget, "demo": True,
            "device": "cpu", "image_size": 64, "dataset": "x",
            "finetune_model": {"model": "efficientnet_lite0", "freeze": "all-but-last", "extra": [], "others": [
                {"freeze": "none", "extra": [], "rate_factor": 0.4}]}}


def total_seconds(saved):
    return sum(s.estimate_s for s in assignment.steps_of(saved))


def test_the_expected_share_of_epochs_under_hyperband():
    # min_iter 5, eta 2, 20 epochs: half stop at 5, a quarter at 10, a quarter run 20 -> 10 of 20 epochs per run;
    # the first 2 runs have no one to trail and run all 20: (2 x 1 + 8 x 0.5) / 10 = 0.6
    assert assignment.hyperband_share({"min_iter": 5, "eta": 2}, 20, 10) == pytest.approx(0.6)
    assert assignment.hyperband_share(None, 20, 10) == 1.0


def test_a_count_below_what_the_report_needs_is_refused_before_anything_runs(tmp_path):
    result = subprocess.run([sys.executable, "handin/assignment.py", "--data-dir", str(tmp_path / "nothing"),
                             "--count", "2", "--out", str(tmp_path / "out")], capture_output=True, text=True, cwd=ROOT)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert "COUNT=2 is too small" in result.stderr and f"COUNT={MIN_SCORED_RUNS}" in result.stderr
    assert not (tmp_path / "out").exists()


def test_over_budget_advice_leads_to_a_plan_inside_the_budget(tmp_path):
    # 12 epochs x 1200 images / 500 img/s = 28.8 s per run (no early stopping); the other steps add up to ~2.6 min
    saved = saved_plan(tmp_path, budget=8.0, count=30)
    total = total_seconds(saved)
    assert total > 8 * 60
    advice = assignment.over_budget_advice(saved, total)
    lowered = int(advice.split("lower COUNT to ")[1].split(",")[0])
    assert MIN_SCORED_RUNS <= lowered < 30
    assert total_seconds(assignment.with_count(saved, lowered)) <= 8 * 60  # following the advice fits

    tight = saved_plan(tmp_path, budget=3.0, count=MIN_SCORED_RUNS)  # even the smallest sweep does not fit
    advice = assignment.over_budget_advice(tight, total_seconds(tight))
    raised = int(advice.split("raise BUDGET to ")[1].split(" ")[0])
    tight["budget"] = raised
    sized = assignment.with_count(tight, assignment.sized_count(tight))  # what the plan sizes with that budget
    assert sized["args"]["count"] >= MIN_SCORED_RUNS and total_seconds(sized) <= raised * 60


def plant_run(runs, name, val_acc, sweep="hw", status="finished"):
    folder = runs / name
    folder.mkdir(parents=True)
    (folder / "record.json").write_text(json.dumps({
        "name": name, "kind": "scratch", "status": status, "sweep": sweep, "config": {"image_size": 64},
        "epochs": [{"epoch": 1, "val_acc": val_acc}],
        "summary": {"best_val_acc": val_acc, "epochs_done": 1}}))
    (folder / "best.pt").write_bytes(b"")


def finish_step(out, step):
    """What run_step does after a step's commands succeed, with its outputs made by hand."""
    outputs = [o() if callable(o) else o for o in step.outputs]
    for output in map(Path, outputs):
        if output.suffix:  # a file (record.json, best.pt, config.yaml): kept when a test planted it
            output.parent.mkdir(parents=True, exist_ok=True)
            if not output.exists():
                output.write_text(json.dumps({"status": "finished"}) if output.name == "record.json" else "")
        else:  # a folder the step writes
            (output / "made.txt").parent.mkdir(parents=True, exist_ok=True)
            (output / "made.txt").write_text(step.name)
    steps.write_marker(out, step, steps.canonical(step.inputs()), steps.fingerprint(outputs), 1.0)


def test_a_better_sweep_run_makes_the_test_evaluation_and_what_follows_stale(tmp_path):
    saved = saved_plan(tmp_path)
    runs, out = tmp_path / "runs", saved["args"]["out"]
    plant_run(runs, "hw-a", 0.50)
    for step in assignment.steps_of(saved):
        finish_step(out, step)
    assert all(steps.is_done(out, s) for s in assignment.steps_of(saved))
    plant_run(runs, "other-command", 0.99, sweep=None)  # another command's run: changes nothing
    plant_run(runs, "hw-killed", 0.99, status="interrupted")  # an interrupted run of the sweep: changes nothing
    assert all(steps.is_done(out, s) for s in assignment.steps_of(saved))
    plant_run(runs, "hw-b", 0.70)  # the sweep improved
    stale = [s.name for s in assignment.steps_of(saved) if not steps.is_done(out, s)]
    assert stale == ["test-eval", "interpret", "finetune-eval", "report"]
    test_eval = next(s for s in assignment.steps_of(saved) if s.name == "test-eval")
    assert "hw-b" in test_eval.commands[0]()  # and it evaluates the better run


def test_a_failed_step_skips_what_needs_it_and_the_rest_still_runs(tmp_path, monkeypatch):
    saved = saved_plan(tmp_path)
    ran = []

    def fake_run_step(step, out, log):
        ran.append(step.name)
        if step.name == "sweep":
            raise steps.StepFailed("exit 1")

    monkeypatch.setattr(assignment, "run_step", fake_run_step)
    failed = assignment.run_steps(saved, assignment.STEP_NAMES, lambda *_: None)
    assert ran == ["sweep", "finetune", "detect", "watch", "report"]  # the report is written with what exists
    assert failed == ["sweep", "test-eval", "interpret", "finetune-eval"]


def test_part_b_runs_three_freezing_strategies_and_compares_them_all(demo_root, tmp_path, monkeypatch):
    """On a CPU: the main run on cached features at the weights' own size, then all-but-last, first-k and none at the
    sweep's input size with the same epochs and recipe, so that only the strategy differs. Each is evaluated on the
    test set, and compare.py takes them all."""
    monkeypatch.setattr(assignment, "measure_images_per_s", lambda *a: (500.0, 1200))
    saved = assignment.make_plan(str(demo_root), 30.0, MIN_SCORED_RUNS, None, "local", (), "cpu", None,
                                 str(tmp_path / "out"), str(tmp_path / "runs"), str(tmp_path / "cache"), "hw")
    steps = {s.name: s for s in assignment.steps_of(saved)}
    runs = [command() for command in steps["finetune"].commands]
    size = str(saved["image_size"])
    names = ["hw-finetune", f"hw-finetune-all-but-last-{size}px", "hw-finetune-first-k", "hw-finetune-none"]
    assert [r[r.index("--run-name") + 1] for r in runs] == names
    assert [r[r.index("--freeze") + 1] for r in runs] == ["all-but-last", "all-but-last", "first-k", "none"]
    assert [r[r.index("--epochs") + 1] for r in runs] == ["3"] * 4
    assert all("--no-augment" in r for r in runs) and "--k" in runs[2]
    assert [r[r.index("--image-size") + 1] for r in runs[1:]] == [size] * 3
    assert "--image-size" not in runs[0]  # the weights' own size: its backbone runs once, not every epoch
    plant_run(tmp_path / "runs", "hw-a", 0.5)
    *evaluations, compare = [c() if callable(c) else c for c in steps["finetune-eval"].commands]
    assert [e[e.index("--run") + 1] for e in evaluations] == names
    assert [compare[i + 1] for i, a in enumerate(compare) if a == "--run"] == ["hw-a", *names]
    sized = assignment.make_plan(str(demo_root), 30.0, MIN_SCORED_RUNS, None, "local", (), "cpu", 96,
                                 str(tmp_path / "out2"), str(tmp_path / "runs"), str(tmp_path / "cache"), "hw")
    runs = [command() for command in assignment.part_b_steps(sized, [], 1, None)[0].commands]
    assert len(runs) == 3  # one size for every run: the main run is the matched all-but-last
    assert all(r[r.index("--image-size") + 1] == "96" and r.count("--image-size") == 1 for r in runs)


@pytest.mark.slow
def test_the_whole_assignment_is_interrupted_twice_and_continues_to_the_report(demo_root, tmp_path):
    """The one command on the test-scale demo data: Ctrl-C (SIGINT) during the sweep and SIGTERM during a later step
    each stop it with one line; run again, it continues (the sweep is not restarted) and writes the report; a
    third run skips every step."""
    sweep = tmp_path / "tiny.yaml"
    sweep.write_text("method: grid\nmetric: {name: val_acc, goal: maximize}\nparameters:\n"
                     "  lr: {values: [0.002, 0.003, 0.004]}\n  epochs: {value: 5}\n  image_size: {value: 32}\n"
                     "  filters: {value: '4,8,8,16,16'}\n  dense_units: {value: 16}\n  batch_size: {value: 16}\n")
    out, runs = tmp_path / "out", tmp_path / "runs"
    command = [sys.executable, "handin/assignment.py", "--name", "hw", "--out", str(out), "--runs-dir", str(runs),
               "--cache-dir", str(tmp_path / "cache"), "--data-dir", str(demo_root), "--budget", "30", "--count", "3",
               "--sweep-config", str(sweep), "--backend", "local", "--device", "cpu", "--finetune-image-size", "64",
               "--inputs", str(ROOT / "docs" / "demo_test_grid.png"), "--again", "make demo", "--go-on"]
    env = {**os.environ, "WANDB_MODE": "disabled"}
    sweep_folder = runs / "sweeps" / "hw"

    def interrupt_when(ready, sig):
        # its own session, SIGINT at its default: a suite started in the background hands children SIGINT ignored
        child = subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                 text=True, start_new_session=True,
                                 preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
        deadline = time.time() + 300
        while time.time() < deadline and child.poll() is None and not ready():
            time.sleep(0.05)
        os.kill(child.pid, sig)
        stdout, stderr = child.communicate(timeout=180)
        return child.returncode, stdout, stderr

    def mid_run():  # Ctrl-C in the middle of a sweep run, after its first epoch of five
        started = LocalSweep(sweep_folder).runs() if (sweep_folder / "config.yaml").is_file() else []
        return any(len(r["history"]) >= 1 and r["state"] == "running" for r in started)

    code, stdout, stderr = interrupt_when(mid_run, signal.SIGINT)
    assert code == 130, stderr[-2000:]
    assert [line for line in stderr.splitlines() if line.strip()] == [
        f"interrupted: finished steps, sweep runs and checkpoints are kept in {out} and {runs}; `make demo` continues "
        f"from here"]
    assert not (out / "steps" / "sweep.done").exists()  # an interrupted step is not marked done

    code, stdout, stderr = interrupt_when(lambda: (out / "steps" / "sweep.done").exists(), signal.SIGTERM)
    assert code == 130 and "`make demo` continues from here" in stderr, stderr[-2000:]

    result = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True)
    assert result.returncode == 0, (result.stdout[-3000:], result.stderr[-3000:])
    states = [r["state"] for r in LocalSweep(sweep_folder).runs()]
    assert sorted(states) == ["finished"] * 3  # the interrupted sweep was continued, not restarted
    assert "[1/8] Q2: sweep, 3 runs (grid): done, its inputs unchanged — skipped" in result.stdout
    report = (out / "report" / "report.html").read_text()
    assert "Missing —" not in report and report.count("<h2>") == 3
    again = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True)
    assert again.returncode == 0 and again.stdout.count("— skipped") == 8


def gone(pid):
    """The process has exited (a zombie no one reaps counts: it runs nothing)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0] == "Z"
    except FileNotFoundError:
        return True


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="parent-death signals are Linux's")
def test_a_step_dies_with_the_assignment_even_when_the_assignment_is_killed(tmp_path):
    # a step runs in its own session, out of reach of its group's signals: `kill -9 -- -<pgid>` of make demo killed
    # the assignment and left its sweep training. The step now follows its parent
    started = tmp_path / "step.pid"
    step = f"import common, os, time; open({str(started)!r}, 'w').write(str(os.getpid())); time.sleep(120)"
    assignment = (f"import sys; sys.path.insert(0, {str(ROOT)!r}); from handin.steps import run_command; "
                  f"run_command([sys.executable, '-c', {step!r}])")
    parent = subprocess.Popen([sys.executable, "-c", assignment], cwd=ROOT)
    deadline = time.time() + 60
    while not started.is_file() or not started.read_text():
        assert time.time() < deadline and parent.poll() is None, "the step never started"
        time.sleep(0.2)
    step_pid = int(started.read_text())
    parent.kill()
    parent.wait()
    deadline = time.time() + 15
    while not gone(step_pid) and time.time() < deadline:
        time.sleep(0.2)
    alive = not gone(step_pid)
    if alive:
        os.kill(step_pid, signal.SIGKILL)
    assert not alive, "the step outlived the assignment"
