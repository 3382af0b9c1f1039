"""The hand-in report: Q1 … Q5, Part B and Part C in one HTML page, plus the sweep's figures.

    python handin/report.py --sweep sweep                       # runs/sweeps/sweep
    python handin/report.py --sweep sweep_demo --include outputs/demo

Reads the local sweep state (works offline) and writes into --out: accuracy_vs_created.png,
parallel_coordinates.png, importance.png, report.json and report.html — one self-contained
document in the assignment's order, each answer with its command, numbers as tables and figures
sized to read. --include names the folders where the other commands wrote their outputs (test
evaluation, filters, guided backprop, comparison, detections, camera trap); each run's newest
output appears once.
"""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import click

from common.cli import OneLineErrors
import yaml

from handin import html_report as handin
from common.errors import UserError
from common.io import load_json, save_json
from handin.sweep_report import (collect_sweep, observations, parameter_importance, plot_accuracy_vs_created, plot_importance,
                           plot_parallel_coordinates, swept_parameters)


def sweep_bench_table(path):
    """The fractions of the grid's epochs each method needed, from make sweep-bench's JSON ('' when absent)."""
    if not path.is_file():
        return ""
    bench = load_json(path)
    shown = lambda f: "not reached" if f is None else f"{f:.2f}"  # noqa: E731
    rows = []
    for row in bench["table"]:
        replay = row.get("replayed")
        rows.append([row["method"], " / ".join(shown(f) for f in row["fraction_of_grid_epochs"]) or "(replayed only)",
                     "" if not replay else f"median {shown(replay['median'])}, ≤ 1/5 in {replay['within_goal']:.0%}"])
    return handin.table(["method", "fraction of the grid's epochs (real runs, per seed)",
                         f"replays ({bench.get('replays', 0)} per seed)"], rows)


def searched_parameters(folder):
    """Parameters the sweep config searches (a list of values or a range), whether or not runs varied them."""
    config_path = Path(folder) / "config.yaml"
    if not config_path.is_file():
        return []
    parameters = yaml.safe_load(config_path.read_text()).get("parameters", {})
    return sorted(n for n, spec in parameters.items()
                  if isinstance(spec, dict) and (len(spec.get("values", [])) > 1 or "min" in spec))


def sweep_sections(folder, rows, out, searched, include=None):
    created = plot_accuracy_vs_created(rows, out / "accuracy_vs_created.png")
    parallel = plot_parallel_coordinates(rows, out / "parallel_coordinates.png", searched)
    table = parameter_importance(rows)
    importance = plot_importance(table, out / "importance.png")
    notes = observations(rows, searched)
    swept = sorted(set(swept_parameters(rows)) | set(searched))
    scored = [r for r in rows if r["val_acc"] is not None]
    best = max(scored, key=lambda r: r["val_acc"])
    fixed = {k: v for k, v in best["params"].items() if k not in swept}
    states = {s: sum(r["state"] == s for r in rows) for s in ("finished", "stopped", "failed", "running")}
    values = {p: sorted({handin.fmt_value(r["params"].get(p)) for r in rows}) for p in swept}
    options = load_json(folder / "options.json") if (folder / "options.json").is_file() else {}
    noise = (f" With {len(scored)} scored runs these importances are at noise level: a ranking to test, not a finding."
             if len(scored) < 10 else "")
    q2 = (handin.table(["runs", "trained to the end", "stopped early (hyperband)", "failed", "best val acc"],
                       [[len(rows), states["finished"], states["stopped"], states["failed"], f"{best['val_acc']:.4f}"]])
          + "<h4>Best run's searched values</h4>"
          + handin.table(["parameter", "value"], [[p, handin.fmt_value(best["params"].get(p))] for p in swept])
          + "<h4>Values tried</h4>" + handin.table(["parameter", "values"], [[p, ", ".join(v)] for p, v in values.items()])
          + (handin.paragraph("Fixed for every run: " + ", ".join(f"{k}={handin.fmt_value(v)}" for k, v in fixed.items()))
             if fixed else "")
          + handin.command(f"python partA/sweep.py --config {folder / 'config.yaml'} --name {folder.name} "
                           f"--data-dir {options.get('data_dir', 'data')}   # the sweep's own config")
          + "<h4>Validation accuracy vs time created</h4>" + handin.embed_image(created, handin.DISPLAY["plot"])
          + "<h4>Parallel coordinates</h4>" + handin.embed_image(parallel, handin.DISPLAY["plot"])
          + "<h4>Parameter importance and correlation</h4>" + handin.embed_image(importance, handin.DISPLAY["plot"])
          + handin.paragraph("Importance: share of the variance of validation accuracy a random forest attributes to "
                             "each parameter (what wandb's panel computes)." + noise)
          + handin.table(["parameter", "importance", "correlation with val acc"],
                         [[f, f"{i:.3f}", f"{c:+.3f}"] for f, i, c in table]))
    efficiency = handin.find(include, "sweep_efficiency.png", out) if include else []
    if efficiency:
        q2 += ("<h4>How much the sweep saves (make sweep-bench)</h4>" + handin.embed_image(efficiency[0], handin.DISPLAY["plot"])
               + handin.paragraph("Best validation accuracy so far, in points from each seed's grid best, against the "
                                  "fraction of the grid's epochs spent by grid, random and bayes + hyperband with at most "
                                  "the grid's total epoch budget (random and bayes stop once they reach the grid's best), "
                                  "one line per seed; dashed: the goal of 1/5.")
               + sweep_bench_table(Path(efficiency[0]).with_name("sweep_bench.json")))
    q3 = "<ul>" + "".join(f"<li>{handin.html.escape(n)}</li>" for n in notes) + "</ul>"
    summary = {"sweep": folder.name, "runs": len(rows), "states": states, "values_swept": values,
               "best": {"id": best["id"], "val_acc": best["val_acc"], "params": best["params"]},
               "importance": [{"feature": f, "importance": i, "correlation": c} for f, i, c in table],
               "observations": notes}
    return [("Q2: the hyperparameter sweep", q2), ("Q3: what the sweep shows", q3)], summary, (created, parallel, importance)


def best_scratch_record(runs_dir):
    from common.checkpoints import load_record
    from common.runs import best_run

    try:
        return load_record(best_run(runs_dir, kind="scratch"))
    except UserError:
        return None


@click.command(cls=OneLineErrors, context_settings={"show_default": True})
@click.option("--sweep", "sweep_name", default="sweep", help="Sweep name (folder under RUNS_DIR/sweeps) or folder.")
@click.option("--runs-dir", default="runs")
@click.option("--out", default=None, help="Output folder [default: outputs/report/<sweep>].")
@click.option("--include", multiple=True, help="Folders where the other commands wrote their outputs.")
def main(sweep_name, runs_dir, out, include):
    """Build the hand-in report (sweep PNGs + one HTML document in the assignment's order)."""
    folder = Path(sweep_name) if Path(sweep_name).is_dir() else Path(runs_dir) / "sweeps" / sweep_name
    rows = collect_sweep(folder)
    out = Path(out or Path("outputs/report") / folder.name)
    sweep_parts, summary, figures = sweep_sections(folder, rows, out, searched_parameters(folder), include)
    found = handin.collect_outputs(include, exclude=out)
    record = best_scratch_record(runs_dir)
    sections = [("Q1: parameters and computations",
                 handin.q1_section(record) if record else handin.paragraph("No from-scratch run yet: make train."))]
    sections += sweep_parts
    scratch_tests = {run: v for run, v in found["tests"].items() if v[1].get("kind") == "scratch"}
    best_test = scratch_tests.get(record["name"]) if record else None
    best_test = best_test or next(iter(scratch_tests.values()), None)
    sections.append(("Q4: the best from-scratch model on the test set",
                     handin.test_section(*best_test) if best_test else
                     handin.paragraph("No test evaluation yet: make test-eval.")))
    if best_test:
        sections.append(("Q5: first-layer filters and guided backpropagation",
                         handin.interpretation_section(include, best_test[1]["run"], out)))
    part_b = handin.compare_section(found["compare"]) if found["compare"] else handin.paragraph(
        "No comparison yet: make finetune, make test-eval RUN=<fine-tune run>, make compare.")
    for run, (path, test) in sorted(found["tests"].items()):
        if test.get("kind") == "finetune":
            part_b += f"<h3>Fine-tuned run {handin.html.escape(run)} on the test set</h3>" + handin.test_section(path, test)
    sections.append(("Part B: fine-tuning a pretrained model", part_b))
    part_c = ""
    if found["detect"]:
        part_c += "<h3>YOLOv3-tiny on photos</h3>" + handin.detect_section(found["detect"])
    if found["trap"]:
        part_c += "<h3>The application: a camera-trap watcher</h3>" + handin.trap_section(found["trap"])
    sections.append(("Part C: YOLOv3 detection", part_c or handin.paragraph("No detections yet: make detect, make watch.")))
    classes = (best_test[1]["classes"] if best_test else record["classes"] if record else [])
    note = ("These results are on the synthetic demo data (shapes, not taxa) that make demo generates: they show the "
            "pipeline works, not how well it does on iNaturalist-12K." if classes and handin.is_demo_data(classes) else None)
    save_json(out / "report.json", summary)
    page = handin.build_document(f"iNaturalist-12K lab report — sweep {folder.name}", sections, out / "report.html", note)
    click.echo(f"{len(rows)} runs; best val acc {summary['best']['val_acc']:.4f}. Observations:")
    for n in summary["observations"]:
        click.echo(f"  - {n}")
    click.echo(f"wrote {', '.join(map(str, figures))}, {out / 'report.json'}, {page}")


if __name__ == "__main__":
    main()
