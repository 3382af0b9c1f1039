"""The hand-in as the course asks for it: a wandb report, built by API from the same answers as report.html.

    python handin/wandb_report.py --report outputs/assignment/report/report.json

Needs wandb online (a login and the network). It logs the figures (test grid, filters, guided backprop,
detections) as media of the runs they come from, then builds the report with `wandb-workspaces`
(reports.v2): the assignment's sections in order, a parallel-coordinates panel, a parameter-importance
panel and validation accuracy vs created over the sweep's runs, and the media — and prints its URL.
Offline it says in one line how to sync the offline runs and build the report later.
"""
import hashlib
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import common  # noqa: E402,F401 (first: without the project's environment it says how to start)

import click

from common.cli import OneLineErrors
from common.errors import UserError
from common.io import load_json

MEDIA_KEYS = {"test_grid": "Q4: test predictions", "filters": "Q4: first-layer filters",
              "guided_backprop": "Q4: guided backprop, 10 CONV5 neurons", "detections": "Part C: detections",
              "contact_sheet": "Part C: camera-trap visits"}


def runset(wr, entity, project, name, filters):
    return wr.Runset(entity=entity, project=project, name=name, filters=filters)


def build_wandb_report(summary, entity, project):
    """The wandb-workspaces Report object (nothing is sent): built from report.json's summary."""
    import wandb_workspaces.reports.v2 as wr

    sweep, run = summary["sweep"], summary.get("run", {})
    analysis = summary.get("sweep_analysis", {})
    swept = sorted(analysis.get("values_swept", {}))
    sweep_runs = runset(wr, entity, project, f"sweep {sweep}", f"Group = '{sweep}'")
    shown = runset(wr, entity, project, "the run shown", f"Name = '{run.get('name', '')}'")
    finetune = summary.get("finetune_run")
    compared = runset(wr, entity, project, "scratch vs fine-tuned",
                      f"Name = '{run.get('name', '')}' or Name = '{finetune or ''}'")
    part_c = runset(wr, entity, project, "Part C", f"Name = '{sweep}-part-c'")
    text = summary.get("text", {})
    blocks = [
        wr.P(f"Sweep {sweep}. {run.get('why', '')}"),
        wr.H1("Part A — training a CNN from scratch"),
        wr.H2("Q1: parameters and computations"),
        wr.CodeBlock(text.get("formulas", ""), language="python"),
        wr.H2("Q2: the hyperparameter sweep"),
        wr.P(text.get("strategy", "")),
        wr.PanelGrid(runsets=[sweep_runs], panels=[
            wr.ScatterPlot(title="validation accuracy vs created", x=wr.Metric("CreatedTimestamp"),
                           y=wr.SummaryMetric("best_val_acc")),
            wr.ParallelCoordinatesPlot(columns=[wr.ParallelCoordinatesPlotColumn(metric=wr.Config(p)) for p in swept]
                                       + [wr.ParallelCoordinatesPlotColumn(metric=wr.SummaryMetric("best_val_acc"))]),
            wr.ParameterImportancePlot(with_respect_to="best_val_acc"),
        ]),
        wr.H2("Q3: what the sweep shows"),
        wr.UnorderedList(summary.get("observations") or ["(no observations: the sweep has no scored run)"]),
        wr.H2("Q4: the best model on the test set, its filters and guided backpropagation"),
        wr.P(text.get("q4", "")),
        wr.PanelGrid(runsets=[shown], panels=[wr.MediaBrowser(title=MEDIA_KEYS[k], media_keys=[k])
                                              for k in ("test_grid", "filters", "guided_backprop")]),
        wr.H2("Q5: the code and how to run it"),
        wr.P(text.get("q5", "")),
        wr.H1("Part B — fine-tuning a pretrained model"),
        wr.H2("Q1: input size and the 1000-class head"), wr.P(text.get("b1", "")),
        wr.H2("Q2: freezing strategies"), wr.P(text.get("b2", "")),
        wr.H2("Q3: from scratch vs fine-tuned"), wr.P(text.get("b3", "")),
        wr.PanelGrid(runsets=[compared], panels=[wr.LinePlot(title="validation accuracy", x="epoch", y=["val_acc"])]),
        wr.H1("Part C — YOLOv3 in an application"),
        wr.P(text.get("c", "")),
        wr.PanelGrid(runsets=[part_c], panels=[wr.MediaBrowser(title=MEDIA_KEYS[k], media_keys=[k])
                                               for k in ("detections", "contact_sheet")]),
    ]
    return wr.Report(project=project, entity=entity, title=f"iNaturalist-12K: the assignment's answers ({sweep})",
                     description="Part A, B and C in the assignment's numbering, built by handin/wandb_report.py",
                     blocks=blocks)


def log_figures(figures, project, runs_dir):
    """Log each run's figures as media of that run (resumed by its wandb id), and Part C's into a run of its own."""
    import wandb

    from common.runs import readable_record

    for run_name, files in figures.items():
        record = readable_record(Path(runs_dir) / run_name) if (Path(runs_dir) / run_name).is_dir() else None
        # a training run's own wandb id; Part C's run gets one fixed by its name, so a rebuild logs into it again
        run_id = (record or {}).get("wandb_id") or hashlib.sha1(f"{project}/{run_name}".encode()).hexdigest()[:16]
        with wandb.init(project=project, id=run_id, name=run_name, resume="allow",
                        dir=str(Path(runs_dir) / run_name) if record else None, job_type="figures") as active:
            active.log({key: [wandb.Image(str(p)) for p in paths] for key, paths in files.items()})


def offline_hint(report_json):
    return (f"wandb is not online here (no login or no network): the runs were logged offline. To hand in the wandb "
            f"report: wandb login, then `.venv/bin/wandb sync runs/*/wandb/offline-run-*` and "
            f"`.venv/bin/python handin/wandb_report.py --report {report_json}`")


@click.command(cls=OneLineErrors, context_settings={"show_default": True})
@click.option("--report", "report_json", required=True, help="report.json written by handin/report.py.")
@click.option("--runs-dir", default="runs")
@click.option("--entity", default=None, help="[default: your wandb default entity]")
@click.option("--project", default="inat-lab")
@click.option("--if-online", is_flag=True, help="Offline: print how to build it later and exit 0 (make assignment).")
def main(report_json, runs_dir, entity, project, if_online):
    """Build the wandb report of an assignment (online)."""
    from common.tracking import resolve_wandb_mode, wandb_credentials_present, wandb_reachable

    if not Path(report_json).is_file():
        raise UserError(f"no {report_json}: build the report first (make assignment, or handin/report.py)")
    if not (wandb_credentials_present() and wandb_reachable() and resolve_wandb_mode("auto", probe=False) == "online"):
        if if_online:
            click.echo(offline_hint(report_json))
            return
        raise UserError(offline_hint(report_json))
    import wandb

    summary = load_json(report_json)
    log_figures(summary.get("figures", {}), project, runs_dir)
    report = build_wandb_report(summary, entity or wandb.Api().default_entity, project)
    report.save()
    click.echo(f"wandb report: {report.url}")


if __name__ == "__main__":
    main()
