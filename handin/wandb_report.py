"""The hand-in as the course asks for it: a wandb report, rendered from the same answers as report.html.

    python handin/wandb_report.py --report outputs/assignment/report/report.json
    python handin/wandb_report.py --report outputs/demo/report/report.json --dry-run     # print it, send nothing

Each block of report.json becomes wandb-workspaces (reports.v2) blocks (docs/design.md, "One set of answers, two
renderings"). Online needs a login and the network; offline it says in one line how to build it later.
"""
import hashlib
import json
import re
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import common  # noqa: E402,F401 (first: without the project's environment it says how to start)

import click
import pydantic
from PIL import Image

from common.cli import OneLineErrors
from common.errors import UserError
from common.state import read_output
from common.tracking import wandb_online
from handin.blocks import markdown_table

# Q2's plots are drawn by wandb itself over the sweep's runs (the figure's caption starts with its name)
LIVE_PLOTS = ("Plot 1:", "Plot 2:", "Plot 3:")


def media_blocks(summary):
    """[(media key, block)] of every figure and clip in the report, in order: the keys they are logged under."""
    out = []
    for section in [{"blocks": summary.get("preamble", [])}] + summary.get("sections", []):
        for block in section["blocks"] or []:
            items = block["items"] if block["type"] == "photos" else [block]
            for item in items:
                if item["type"] in ("figure", "video") and not item["caption"].startswith(LIVE_PLOTS):
                    stem = re.sub(r"[^a-z0-9]+", "_", Path(item["path"]).stem.lower()).strip("_")
                    out.append((f"fig{len(out) + 1:02d}_{stem}", item))
    return out


def report_run_name(summary):
    return f"{summary['sweep']}-report"


def full_width(wr, path=None):
    """A panel across the report's 24 columns, as tall as the figure's shape needs (a 10 × 3 grid, a wide plot):
    one row unit is about 1/48 of the report's width, so height = 48 × (image height / width), within 8-40."""
    ratio = 0.5
    if path is not None:
        try:
            with Image.open(path) as image:
                ratio = image.height / image.width
        except OSError:  # a figure that is missing is said by the report; the panel keeps its default shape
            pass
    return wr.Layout(x=0, y=0, w=24, h=max(8, min(40, round(48 * ratio))))


def render_block(wr, block, live, media_key_of, figures_runset):
    """One answer block as wandb report blocks."""
    kind = block["type"]
    simple = {"p": lambda b: wr.P(b["text"]), "note": lambda b: wr.MarkdownBlock("> **Note:** " + b["text"]),
              "h4": lambda b: wr.H3(b["text"]), "pre": lambda b: wr.CodeBlock(b["text"], language="python"),
              "command": lambda b: wr.CodeBlock(b["text"], language=None),  # a shell line: no highlighter for it
              "link": lambda b: wr.MarkdownBlock(f"[{b['text']}]({b['url']})"),
              "list": lambda b: wr.UnorderedList(list(b["items"])),
              "table": lambda b: wr.MarkdownBlock(markdown_table(b["header"], b["rows"]))}
    if kind in simple:
        return [simple[kind](block)]
    items = block["items"] if kind == "photos" else [block]
    out = []
    for item in items:
        caption = item["caption"]
        if caption.startswith(LIVE_PLOTS):
            out += [wr.H3(caption), live[caption.split(":")[0]]]
        else:
            key = media_key_of[id(item)]
            out += [wr.P(caption), wr.PanelGrid(runsets=[figures_runset], panels=[wr.MediaBrowser(
                title=caption[:120], media_keys=[key], layout=full_width(wr, item["path"]))])]
    return out


def build_wandb_report(summary, entity, project, video_url=None):
    """The wandb-workspaces Report (nothing is sent): every block of report.json, in the assignment's numbering."""
    import wandb_workspaces.reports.v2 as wr

    sweep, run = summary["sweep"], summary.get("run", {})
    analysis = summary.get("sweep_analysis", {})
    swept = sorted(analysis.get("values_swept", {}))
    sweep_runs = wr.Runset(entity=entity, project=project, name=f"sweep {sweep}", filters=f"Group = '{sweep}'")
    figures = wr.Runset(entity=entity, project=project, name="the report's figures",
                        filters=f"Name = '{report_run_name(summary)}'")
    finetune = summary.get("finetune_run")
    compared = wr.Runset(entity=entity, project=project, name="scratch vs fine-tuned",
                         filters=f"Name = '{run.get('name', '')}' or Name = '{finetune or ''}'")
    live = {
        "Plot 1": wr.PanelGrid(runsets=[sweep_runs], panels=[wr.ScatterPlot(
            title="validation accuracy vs created", x=wr.Metric("CreatedTimestamp"), y=wr.SummaryMetric("best_val_acc"),
            layout=full_width(wr))]),
        "Plot 2": wr.PanelGrid(runsets=[sweep_runs], panels=[wr.ParallelCoordinatesPlot(
            columns=[wr.ParallelCoordinatesPlotColumn(metric=wr.Config(p)) for p in swept]
            + [wr.ParallelCoordinatesPlotColumn(metric=wr.SummaryMetric("best_val_acc"))], layout=full_width(wr))]),
        "Plot 3": wr.PanelGrid(runsets=[sweep_runs], panels=[wr.ParameterImportancePlot(
            with_respect_to="best_val_acc", layout=full_width(wr))]),
    }
    media_key_of = {id(item): key for key, item in media_blocks(summary)}
    blocks = [b for block in summary.get("preamble", []) for b in render_block(wr, block, live, media_key_of, figures)]
    for section in summary.get("sections", []):
        if section["blocks"] is None:
            blocks.append(wr.H1(section["heading"]))
            continue
        blocks.append(wr.H2(section["heading"]))
        for block in section["blocks"]:
            blocks += render_block(wr, block, live, media_key_of, figures)
        if section["heading"].startswith("Q3: from scratch"):
            blocks.append(wr.PanelGrid(runsets=[compared], panels=[
                wr.LinePlot(title="validation accuracy per epoch", x="epoch", y=["val_acc"], layout=full_width(wr))]))
    if video_url:
        blocks += [wr.P("Part C's clip, hosted:"), wr.Video(url=video_url)]
    return wr.Report(project=project, entity=entity, title=summary.get("title", f"iNaturalist-12K ({sweep})"),
                     description="Part A, B and C in the assignment's numbering, built by handin/wandb_report.py",
                     blocks=blocks)


def report_as_json(report):
    """The report as plain JSON through wandb-workspaces' own pydantic model (public; needs no server), each block
    with its type's name added (the dump alone does not say which block a dict is)."""
    import wandb_workspaces.reports.v2 as wr

    data = pydantic.TypeAdapter(wr.Report).dump_python(report, mode="json")
    for block, dumped in zip(report.blocks, data["blocks"]):
        dumped["type"] = type(block).__name__
        for panel, panel_dump in zip(getattr(block, "panels", None) or [], dumped.get("panels") or []):
            panel_dump["type"] = type(panel).__name__
    return data


def log_figures(summary, project, runs_dir):
    """Log every figure and Part C's clip into the report's own run (its id fixed by its name: a rebuild reuses it)."""
    import wandb

    name = report_run_name(summary)
    run_id = hashlib.sha1(f"{project}/{name}".encode()).hexdigest()[:16]
    media = {}
    for key, item in media_blocks(summary):
        if Path(item["path"]).is_file():
            kind = wandb.Video if item["type"] == "video" else wandb.Image
            media[key] = kind(item["path"], caption=item["caption"])
    folder = Path(runs_dir) / "sweeps" / summary["sweep"]
    with wandb.init(project=project, id=run_id, name=name, resume="allow", job_type="report", reinit="finish_previous",
                    dir=str(folder) if folder.is_dir() else None) as active:
        active.log(media)


def read_summary(report_json):
    summary = read_output(report_json)
    if not isinstance(summary, dict) or not isinstance(summary.get("sections"), list) or "sweep" not in summary:
        raise UserError(f"{report_json} is not a report.json of this version: rebuild it with handin/report.py")
    return summary


def offline_hint(report_json):
    return (f"wandb is not online here (no login or no network): the runs were logged offline. To hand in the wandb "
            f"report: wandb login, then `.venv/bin/wandb sync runs/*/wandb/offline-run-* runs/sweeps/*/wandb/offline-run-*` and "
            f"`.venv/bin/python handin/wandb_report.py --report {report_json}`")


@click.command(cls=OneLineErrors, context_settings={"show_default": True})
@click.option("--report", "report_json", required=True, help="report.json written by handin/report.py.")
@click.option("--runs-dir", default="runs")
@click.option("--entity", default=None, help="[default: your wandb default entity]")
@click.option("--project", default="inat-lab")
@click.option("--video-url", default=None, help="A hosted copy of Part C's clip (YouTube, Vimeo) to embed as well.")
@click.option("--dry-run", is_flag=True, help="Print the report as JSON; log nothing, send nothing (no login needed).")
@click.option("--if-online", is_flag=True, help="Offline: print how to build it later and exit 0 (make assignment).")
def main(report_json, runs_dir, entity, project, video_url, dry_run, if_online):
    """Build the wandb report of an assignment (online), or print it (--dry-run)."""
    if not Path(report_json).is_file():
        raise UserError(f"no {report_json}: build the report first (make assignment, or handin/report.py)")
    if dry_run:
        report = build_wandb_report(read_summary(report_json), entity or "your-entity", project, video_url)
        click.echo(json.dumps(report_as_json(report), indent=1, ensure_ascii=False))
        return
    if not wandb_online():
        if if_online:
            click.echo(offline_hint(report_json))
            return
        raise UserError(offline_hint(report_json))
    import wandb

    summary = read_summary(report_json)

    log_figures(summary, project, runs_dir)
    report = build_wandb_report(summary, entity or wandb.Api().default_entity, project, video_url)
    report.save()
    click.echo(f"wandb report: {report.url}")


if __name__ == "__main__":
    main()
