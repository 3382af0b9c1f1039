"""make sweep-bench: the replay of recorded histories through the real controller, and the command itself."""
import itertools
import json
import subprocess
import sys
from html import unescape

import pytest
from PIL import Image

from conftest import ROOT

sys.path.insert(0, str(ROOT / "bench"))
import sweep_bench as bench  # noqa: E402
from handin.answers import sweep_bench_evidence
from handin.html_report import render


def synthetic_histories(epochs=6):
    """Every config of the bench's space with a rising curve; one config (lr 0.003, double, 0.0, batch norm) is best."""
    histories = {}
    for values in itertools.product(*bench.SPACE.values()):
        p = dict(zip(bench.SPACE, values))
        best = (0.5 + 0.1 * (p["lr"] == 0.003) + 0.05 * (p["organisation"] == "double") - 0.05 * p["dropout"]
                + 0.05 * p["batch_norm"])
        histories[bench.config_key(p)] = [best * e / epochs for e in range(1, epochs + 1)]
    return histories


@pytest.mark.parametrize("method", ["random", "bayes+hyperband"])
def test_a_replay_proposes_each_config_once_and_spends_what_it_trained(tmp_path, method):
    histories = synthetic_histories()
    budget = len(histories) * 6
    curve, runs = bench.run_method(method, 6, budget, tmp_path / "sweep", bench.replay_trainer(histories),
                                   {"seed": 3}, max_runs=4 * len(histories))
    keys = [bench.config_key(r["params"]) for r in runs]
    assert len(keys) == len(set(keys)) and set(keys) <= set(histories)
    assert len(curve) == sum(len(r["history"]) for r in runs) <= budget  # one point per epoch spent
    assert [spent for spent, _ in curve] == list(range(1, len(curve) + 1))
    assert all(a[1] <= b[1] for a, b in zip(curve, curve[1:]))  # best so far never falls
    for r in runs:  # each run saw the recorded history of its config, cut where hyperband stopped it
        assert [h["val_acc"] for h in r["history"]] == histories[bench.config_key(r["params"])][:len(r["history"])]
    target = max(max(h) for h in histories.values())
    reached = bench.epochs_to_reach(curve, target)
    assert reached is not None and bench.fraction_needed(curve, target, budget) == reached / budget


def test_mismatches_count_runs_that_did_not_reproduce_the_grid():
    params = {"lr": 0.001, "organisation": "same", "dropout": 0.0, "batch_norm": True}
    grid = {bench.config_key(params): [0.1, 0.2, 0.3]}
    same = {"params": params, "history": [{"val_acc": 0.1}, {"val_acc": 0.2}]}  # stopped early: a prefix
    other = {"params": params, "history": [{"val_acc": 0.1}, {"val_acc": 0.25}]}
    unknown = {"params": {**params, "lr": 0.009}, "history": [{"val_acc": 0.9}]}
    assert bench.mismatches([same, unknown], grid) == 0
    assert bench.mismatches([same, other], grid) == 1


def test_a_run_given_a_target_stops_once_it_is_reached(tmp_path):
    # the best config reaches 0.7 at epoch 6 of its run; whatever the order, the sweep stops right there
    histories = synthetic_histories()
    target = max(max(h) for h in histories.values())
    curve, runs = bench.run_method("random", 6, len(histories) * 6, tmp_path / "sweep", bench.replay_trainer(histories),
                                   {"seed": 1}, max_runs=4 * len(histories), target=target)
    assert curve[-1][1] >= target and all(best < target for _, best in curve[:-1])
    assert max(max(h["val_acc"] for h in r["history"]) for r in runs[:-1]) < target  # only the last run reached it


def test_the_summary_ranks_not_reached_last():
    # median of (0.1, 0.3, not reached) is 0.3; of (0.1, not reached, not reached) it is "not reached"
    assert bench.summarise([0.1, None, 0.3])["median"] == 0.3
    assert bench.summarise([None, 0.1, None])["median"] is None
    assert bench.summarise([0.1, 0.25, None, 0.2])["within_goal"] == 0.5


def test_the_command_runs_real_training_and_replays_exactly(tmp_path, demo_root):
    out = tmp_path / "out"
    result = subprocess.run([sys.executable, "bench/sweep_bench.py", "--data-dir", str(demo_root), "--epochs", "1",
                             "--seeds", "1", "--replays", "1", "--runs-dir", str(tmp_path / "runs"),
                             "--cache-dir", str(tmp_path / "cache"), "--out", str(out)],
                            cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-2000:]
    report = json.loads((out / "sweep_bench.json").read_text())
    assert [row["method"] for row in report["table"]] == ["grid", "random", "bayes+hyperband", "random+hyperband"]
    assert report["table"][-1]["fraction_of_grid_epochs"] == [] and report["table"][-1]["replayed"]["tries"] == 1
    # the premise of the replays: the same config, data and seed train to the same history
    assert report["history_mismatches"] == 0
    assert report["early_terminate"] == bench.default_early_terminate()
    assert (out / "sweep_efficiency.png").stat().st_size > 10_000
    assert "| bayes+hyperband |" in result.stdout


def test_the_report_shows_the_benchmarks_fractions_beside_its_plot(tmp_path):
    (tmp_path / "sweep_bench.json").write_text(json.dumps({"replays": 10, "image_size": 32, "seeds": 2, "table": [
        {"method": "grid", "fraction_of_grid_epochs": [0.33, 0.25]},
        {"method": "bayes+hyperband", "fraction_of_grid_epochs": [0.38, None],
         "replayed": {"median": 0.35, "within_goal": 0.23}},
        {"method": "random+hyperband", "fraction_of_grid_epochs": [], "replayed": {"median": 0.2, "within_goal": 0.5}}]}))
    Image.new("RGB", (40, 30)).save(tmp_path / "sweep_efficiency.png")
    random_sweep = {"method": "random", "early_terminate": {"type": "hyperband", "min_iter": 3, "eta": 2}}
    html = render(sweep_bench_evidence(tmp_path, random_sweep))
    assert "<td>0.33 / 0.25</td>" in html and "<td>0.38 / not reached</td>" in html
    assert "median 0.35, ≤ 1/5 in 23%" in html and "data:image/png;base64" in html
    assert "<td>random+hyperband</td><td>(replayed only)</td><td>median 0.20, ≤ 1/5 in 50%</td>" in html
    # the evidence quoted is that of the method the sweep used, not the best method's
    assert "This sweep's method, random+hyperband, needed a median 0.20 of the grid's epochs" in unescape(html)
    assert "This sweep's method, grid, was not measured" in unescape(render(sweep_bench_evidence(tmp_path,
                                                                                                {"method": "grid"})))
    assert sweep_bench_evidence(tmp_path / "missing", random_sweep) == []
    # the committed measurement the report shows is make sweep-bench's own output format, with its date
    committed = render(sweep_bench_evidence(ROOT / "docs", random_sweep))
    assert "bayes+hyperband" in committed and "Measured 2026-12-01" in committed
