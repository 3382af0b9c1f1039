"""The wandb report: the same answers as report.html, rendered with wandb-workspaces' own (pydantic-validated)
classes; printed with --dry-run, never uploaded here."""
import json
import os
import subprocess
import sys
from html.parser import HTMLParser

import pytest
from PIL import Image

from handin import html_report
from handin.blocks import link
from handin.report import code_link
from handin.wandb_report import build_wandb_report, log_figures, media_blocks, render_block

from conftest import ROOT
from test_sweep import handin_outputs
from wandb_files import offline_runs

wr = pytest.importorskip("wandb_workspaces.reports.v2")

TEXT_TAGS = {"td", "th", "p", "li", "pre", "code", "figcaption", "h2", "h3", "h4", "a"}


class PageText(HTMLParser):
    """Every text node of the page's answers (cells, paragraphs, list items, code, captions, headings)."""

    def __init__(self):
        super().__init__()
        self.open, self.texts, self.captions = [], [], []

    def handle_starttag(self, tag, attrs):
        self.open.append(tag)

    def handle_endtag(self, tag):
        while self.open and self.open.pop() != tag:
            pass

    def handle_data(self, data):
        if self.open and self.open[-1] in TEXT_TAGS and data.strip():
            self.texts.append(data.strip())
            if self.open[-1] == "figcaption":
                self.captions.append(data.strip())


def strings(tree):
    if isinstance(tree, str):
        return [tree]
    if isinstance(tree, dict):
        return [s for v in tree.values() for s in strings(v)]
    if isinstance(tree, list):
        return [s for v in tree for s in strings(v)]
    return []


@pytest.mark.slow
def test_every_cell_number_and_caption_of_the_page_is_in_the_wandb_report(tmp_path):
    outputs, build = handin_outputs(tmp_path)
    page = PageText()
    page.feed(build())
    report_json = outputs / "report" / "report.json"
    dry = subprocess.run([sys.executable, "handin/wandb_report.py", "--report", str(report_json), "--dry-run",
                          "--entity", "someone"], capture_output=True, text=True, cwd=ROOT,
                         env={**os.environ, "WANDB_MODE": "disabled"})
    assert dry.returncode == 0, dry.stderr
    report = json.loads(dry.stdout)
    rendered = "\n".join(s.replace("\\|", "|") for s in strings(report["blocks"]))
    answers = page.texts[page.texts.index("Part A — training a CNN from scratch"):]
    missing = [t for t in answers if t not in rendered]
    assert not missing, missing[:10]
    assert len(answers) > 150 and "0.7500" in rendered and "all-but-last (run below)" in rendered
    # each figure: its caption, then the panel that shows it (a media panel, or wandb's own plot for Q2's three)
    blocks = report["blocks"]
    for caption in page.captions:
        at = next(i for i, b in enumerate(blocks) if b.get("text") == caption)
        panels = [p["type"] for p in blocks[at + 1]["panels"]]
        assert panels in (["MediaBrowser"], ["ScatterPlot"], ["ParallelCoordinatesPlot"], ["ParameterImportancePlot"])
    assert {b["type"] for b in blocks} >= {"H1", "H2", "H3", "P", "MarkdownBlock", "CodeBlock", "UnorderedList",
                                          "PanelGrid"}
    # every panel spans the report (a 10 × 3 grid in wandb's default 8-of-24 panel is unreadable)
    layouts = [p["layout"] for b in blocks if b["type"] == "PanelGrid" for p in b["panels"]]
    assert layouts and all(layout["w"] >= 16 for layout in layouts)


def test_the_report_run_logs_every_figure_under_the_key_its_panel_shows(tmp_path, monkeypatch):
    """Offline: the figures go into the report's own run (a real offline wandb run), keyed as the media panels say."""
    for name in ("grid.png", "sheet.png"):
        Image.new("RGB", (30, 20)).save(tmp_path / name)
    figure = {"type": "figure", "path": str(tmp_path / "grid.png"), "caption": "Test predictions", "width": 400}
    summary = {"sweep": "s1", "run": {"name": "s1-a"}, "sections": [
        {"heading": "Part A", "blocks": None},
        {"heading": "Q2: the sweep", "blocks": [{"type": "figure", "path": str(tmp_path / "grid.png"),
                                                  "caption": "Plot 1: validation accuracy vs created", "width": 9}]},
        {"heading": "Q4: test", "blocks": [figure, {"type": "photos", "items": [
            {"type": "figure", "path": str(tmp_path / "sheet.png"), "caption": "dog.jpg: dog 0.57", "width": 9}]}]}]}
    keys = [key for key, _ in media_blocks(summary)]
    assert keys == ["fig01_grid", "fig02_sheet"]  # the live plot is drawn by wandb, not logged
    import wandb

    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.chdir(tmp_path)
    wandb.teardown()  # wandb reads WANDB_MODE once per process: an earlier test may have set it up disabled
    log_figures(summary, "inat-lab", str(tmp_path / "runs"))
    (run,) = offline_runs(tmp_path)
    assert run["name"] == "s1-report" and set(keys) <= run["logged"], run
    report = build_wandb_report(summary, "someone", "inat-lab")
    shown = [p.media_keys for b in report.blocks if isinstance(b, wr.PanelGrid) for p in b.panels
             if isinstance(p, wr.MediaBrowser)]
    assert shown == [["fig01_grid"], ["fig02_sheet"]]


def test_the_run_sets_are_filters_wandbs_own_parser_accepts():
    from wandb_workspaces import expr

    summary = {"sweep": "demo", "run": {"name": "demo-abc"}, "finetune_run": "demo-finetune",
               "sweep_analysis": {"values_swept": {"lr": [], "batch_norm": []}},
               "sections": [{"heading": "Q3: from scratch vs fine-tuned", "blocks": []},
                            {"heading": "Q2", "blocks": [{"type": "figure", "path": "x.png", "width": 9,
                                                          "caption": "Plot 2: parallel coordinates"}]}]}
    report = build_wandb_report(summary, entity="someone", project="inat-lab")

    def leaves(tree):
        return [tree] if tree.filters is None else [leaf for branch in tree.filters for leaf in leaves(branch)]

    grids = [b for b in report.blocks if isinstance(b, wr.PanelGrid)]
    parsed = {r.name: [(f.key.name, f.value) for f in leaves(expr.expr_to_filters(r.filters))]
              for g in grids for r in g.runsets}
    assert parsed["scratch vs fine-tuned"] == [("displayName", "demo-abc"), ("displayName", "demo-finetune")]
    assert parsed["sweep demo"] == [("group", "demo")]
    columns = [c.metric.name for g in grids for p in g.panels if isinstance(p, wr.ParallelCoordinatesPlot)
               for c in p.columns]
    assert columns == ["batch_norm", "lr", "best_val_acc"]


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
    damaged = subprocess.run([sys.executable, "handin/wandb_report.py", "--report", str(report_json), "--dry-run"],
                             capture_output=True, text=True, cwd=ROOT, env=env)
    assert damaged.returncode == 1 and "not a report.json of this version" in damaged.stderr
    assert "Traceback" not in damaged.stderr


def test_each_part_links_its_code_at_the_commit_in_both_renderings():
    code = {"repository": "https://github.com/someone/inat-lab", "commit": "a" * 40, "changed": False}
    block = code_link(code, "partB")
    assert block == link(f"The partB/ code at commit {'a' * 12}", f"https://github.com/someone/inat-lab/tree/{'a' * 40}/partB")
    page = html_report.render(block)
    assert f'<a href="https://github.com/someone/inat-lab/tree/{"a" * 40}/partB">The partB/ code' in page
    rendered = render_block(wr, block[0], {}, {}, None)[0]
    assert rendered.text == f"[The partB/ code at commit {'a' * 12}](https://github.com/someone/inat-lab/tree/{'a' * 40}/partB)"
    # no web repository (no remote, or a local path): one line that says how to give one
    for repository in ("(no git remote; give --repo-url)", "/srv/git/inat-lab"):
        [said] = code_link({**code, "repository": repository}, "partA")
        assert said["type"] == "p" and "--repo-url https://github.com/<you>/<repo>" in said["text"]
        assert "git remote add origin" in said["text"] and "\n" not in said["text"]


def test_a_figure_panel_is_as_tall_as_its_shape_needs(tmp_path):
    # a 10 × 3 grid saved 3 columns wide: 900 × 2400 px → 48 × 2400 / 900 = 128 rows, capped at 40; a 1000 × 400
    # plot → 48 × 0.4 ≈ 19; a missing file keeps the 2:1 default → 24
    Image.new("RGB", (900, 2400)).save(tmp_path / "grid.png")
    Image.new("RGB", (1000, 400)).save(tmp_path / "plot.png")
    figures = wr.Runset(entity="someone", project="inat-lab")
    layouts = []
    for name in ("grid.png", "plot.png", "gone.png"):
        block = {"type": "figure", "path": str(tmp_path / name), "caption": name}
        _, grid = render_block(wr, block, {}, {id(block): "fig01"}, figures)
        layouts.append((grid.panels[0].layout.w, grid.panels[0].layout.h))
    assert layouts == [(24, 40), (24, 19), (24, 24)]
