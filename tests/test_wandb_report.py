"""The wandb report: built offline with wandb-workspaces' own (pydantic-validated) classes; never uploaded here."""
import subprocess
import sys

import pytest

from conftest import ROOT

wr = pytest.importorskip("wandb_workspaces.reports.v2")


def summary():
    return {"sweep": "demo", "run": {"name": "demo-abc", "val_acc": 0.8, "why": "Shows run demo-abc: the best"},
            "finetune_run": "demo-finetune", "observations": ["batch norm helps (n=12)"],
            "sweep_analysis": {"values_swept": {"lr": ["0.001", "0.01"], "batch_norm": ["False", "True"]}},
            "text": {"formulas": "params = ...", "strategy": "random + hyperband", "q4": "test acc 0.8",
                     "q5": "partA/", "b1": "224 px", "b2": "all-but-last", "b3": "fine-tuned wins", "c": "trap"}}


def test_the_wandb_report_has_the_assignments_sections_panels_and_run_filters():
    from wandb_workspaces import expr

    from handin.wandb_report import build_wandb_report

    report = build_wandb_report(summary(), entity="someone", project="inat-lab")
    headings = [(type(b).__name__, b.text) for b in report.blocks if isinstance(b, (wr.H1, wr.H2))]
    assert [h for h in headings if h[0] == "H1"] == [("H1", "Part A — training a CNN from scratch"),
                                                     ("H1", "Part B — fine-tuning a pretrained model"),
                                                     ("H1", "Part C — YOLOv3 in an application")]
    assert [text.split(":")[0] for kind, text in headings if kind == "H2"] == ["Q1", "Q2", "Q3", "Q4", "Q5",
                                                                              "Q1", "Q2", "Q3"]
    grids = [b for b in report.blocks if isinstance(b, wr.PanelGrid)]
    sweep_panels = {type(p).__name__ for p in grids[0].panels}
    assert sweep_panels == {"ScatterPlot", "ParallelCoordinatesPlot", "ParameterImportancePlot"}
    columns = [c.metric.name for c in next(p for p in grids[0].panels if isinstance(p, wr.ParallelCoordinatesPlot)).columns]
    assert columns == ["batch_norm", "lr", "best_val_acc"]
    # every run set's filter is an expression wandb's own parser accepts, naming the sweep's group or the runs shown
    def leaves(tree):
        return [tree] if tree.filters is None else [leaf for branch in tree.filters for leaf in leaves(branch)]

    parsed = {r.name: [(f.key.name, f.value) for f in leaves(expr.expr_to_filters(r.filters))]
              for g in grids for r in g.runsets}
    assert parsed["sweep demo"] == [("group", "demo")]
    assert parsed["the run shown"] == [("displayName", "demo-abc")]
    assert parsed["scratch vs fine-tuned"] == [("displayName", "demo-abc"), ("displayName", "demo-finetune")]
    media = [p.media_keys for g in grids for p in g.panels if isinstance(p, wr.MediaBrowser)]
    assert media == [["test_grid"], ["filters"], ["guided_backprop"], ["detections"], ["contact_sheet"]]


def test_offline_it_says_in_one_line_how_to_build_it_later(tmp_path):
    report_json = tmp_path / "report.json"
    report_json.write_text("{}")
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "WANDB_MODE": "offline"}  # no login anywhere
    later = subprocess.run([sys.executable, "handin/wandb_report.py", "--report", str(report_json), "--if-online"],
                           capture_output=True, text=True, cwd=ROOT, env=env)
    assert later.returncode == 0 and len(later.stdout.strip().splitlines()) == 1
    assert "wandb sync" in later.stdout and f"handin/wandb_report.py --report {report_json}" in later.stdout
    refused = subprocess.run([sys.executable, "handin/wandb_report.py", "--report", str(report_json)],
                             capture_output=True, text=True, cwd=ROOT, env=env)
    assert refused.returncode == 1 and refused.stderr.startswith("Error: wandb is not online")
