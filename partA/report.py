"""Q2–Q3: the sweep report — three plots, parameter importance, observations, one HTML page.

    python partA/report.py --sweep sweep                       # runs/sweeps/sweep
    python partA/report.py --sweep sweep_demo --include outputs/demo

Reads the local sweep state (works offline) and writes into --out:
  accuracy_vs_created.png, parallel_coordinates.png, importance.png, report.json and
  report.html (self-contained: every image embedded). --include adds the PNGs that the other
  commands wrote (test grid, filters, guided backprop, comparison, camera trap) as sections.
"""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import click

from common.io import save_json
from common.report import (format_params, embed_png, build_html, collect_sweep, extra_sections, observations,
                           parameter_importance, plot_accuracy_vs_created, plot_importance, plot_parallel_coordinates,
                           swept_parameters, table_html)


@click.command(context_settings={"show_default": True})
@click.option("--sweep", "sweep_name", default="sweep", help="Sweep name (folder under RUNS_DIR/sweeps) or folder.")
@click.option("--runs-dir", default="runs")
@click.option("--out", default=None, help="Output folder [default: outputs/report/<sweep>].")
@click.option("--include", multiple=True, help="Folders whose figures join the report as sections.")
def main(sweep_name, runs_dir, out, include):
    """Build the sweep report (PNGs + one HTML page)."""
    folder = Path(sweep_name) if Path(sweep_name).is_dir() else Path(runs_dir) / "sweeps" / sweep_name
    rows = collect_sweep(folder)
    out = Path(out or Path("outputs/report") / folder.name)
    created = plot_accuracy_vs_created(rows, out / "accuracy_vs_created.png")
    parallel = plot_parallel_coordinates(rows, out / "parallel_coordinates.png")
    table = parameter_importance(rows)
    importance = plot_importance(table, out / "importance.png")
    notes = observations(rows)
    swept = swept_parameters(rows)
    values = {p: sorted({repr(r["params"].get(p)).strip("'") for r in rows}) for p in swept}
    scored = [r for r in rows if r["val_acc"] is not None]
    best = max(scored, key=lambda r: r["val_acc"])
    states = {s: sum(r["state"] == s for r in rows) for s in ("finished", "stopped", "failed", "running")}
    summary = {"sweep": folder.name, "runs": len(rows), "states": states, "values_swept": values,
               "best": {"id": best["id"], "val_acc": best["val_acc"], "params": best["params"]},
               "importance": [{"feature": f, "importance": i, "correlation": c} for f, i, c in table],
               "observations": notes}
    save_json(out / "report.json", summary)
    sections = [
        ("Sweep", table_html(["runs", "finished", "stopped early", "failed", "best val acc", "best config"],
                             [[len(rows), states["finished"], states["stopped"], states["failed"], f"{best['val_acc']:.4f}",
                               format_params(best["params"])]])
         + "<h3>Values swept</h3>" + table_html(["parameter", "values"], [[p, ", ".join(v)] for p, v in values.items()])),
        ("Q2: validation accuracy vs created", embed_png(created)),
        ("Q2: parallel coordinates", embed_png(parallel)),
        ("Q2: parameter importance and correlation", embed_png(importance) + table_html(
            ["feature", "importance", "correlation with val acc"], [[f, f"{i:.3f}", f"{c:+.3f}"] for f, i, c in table])),
        ("Q3: observations (computed from the runs)", "<ul>" + "".join(f"<li>{n}</li>" for n in notes) + "</ul>"),
    ] + extra_sections(include)
    page = build_html(f"iNaturalist-12K lab report — sweep {folder.name}", sections, out / "report.html")
    click.echo(f"{len(rows)} runs; best val acc {best['val_acc']:.4f}. Observations:")
    for n in notes:
        click.echo(f"  - {n}")
    click.echo(f"wrote {created}, {parallel}, {importance}, {out / 'report.json'}, {page}")


if __name__ == "__main__":
    main()
