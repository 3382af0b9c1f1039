"""Q3: scratch vs fine-tuned runs side by side, on the same split.

    python partB/compare.py                                   # best scratch run + every fine-tune run
    python partB/compare.py --run demo-scratch --run demo-finetune --eval-dir outputs/demo

Test accuracy comes from `partA/evaluate.py`'s test_summary.json (this script never opens the test
folder). Writes compare.md, compare.json and learning_curves.png to --out.
"""
import json
import sys
from itertools import accumulate
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import common  # noqa: E402,F401 (first: without the project's environment it says how to start)

import click

from common.cli import OUTPUT_FOLDER, OneLineErrors, invoked_command

from common.checkpoints import load_record, resolve_run_dir
from common.errors import UserError
from common.io import save_json
from common.state import read_output
from common.run_records import COMPLETE, best_run, readable_record
from common.viz import learning_curves


def default_runs(runs_dir):
    """The best complete from-scratch run and every complete fine-tuning run."""
    records = {p.parent: readable_record(p.parent) for p in Path(runs_dir).glob("*/record.json")}
    finetune = [d for d, r in records.items() if r and r.get("kind") == "finetune" and r.get("status") in COMPLETE]
    try:
        best = [best_run(runs_dir, kind="scratch")]
    except UserError:
        best = []
    return best + sorted(finetune)


def insights(rows):
    """Scratch against the best fine-tuned run by validation accuracy (Part B's Q3), in sentences from their numbers;
    the other strategies are compared among themselves (strategies)."""
    scratch = next((r for r in rows if r["kind"] == "scratch"), None)
    tuned = [r for r in rows if r["kind"] == "finetune"]
    if scratch is None or not tuned:
        return []
    ft = max(tuned, key=lambda r: r["val_acc"])
    accuracy = "test" if ft["test_acc"] is not None and scratch["test_acc"] is not None else "val"
    a, b = scratch[f"{accuracy}_acc"], ft[f"{accuracy}_acc"]
    fewer = ft["trainable_params"] < scratch["trainable_params"]
    said = (f"{ft['run']} ({ft['model']}, --freeze {ft['freeze']}){', the best fine-tuned run,' if tuned[1:] else ''} "
            f"reaches {b:.3f} {accuracy} accuracy; the scratch run reaches {a:.3f} ({(b - a) * 100:+.1f} points). It trains "
            f"{ft['trainable_params']:,} parameters against {scratch['trainable_params']:,}, in {ft['total_s']:.0f} s "
            f"against {scratch['total_s']:.0f} s."
            + (" ImageNet features carry over, so few parameters have to learn from this data." if fewer else ""))
    level = max((r for r in tuned if r["image_size"] == scratch["image_size"]), key=lambda r: r["val_acc"], default=ft)
    c = level[f"{accuracy}_acc"]  # the best fine-tuned run at the scratch run's input size, when it is another run
    same_size = None if level is ft or c is None else (
        f"At the scratch run's own {scratch['image_size']} px, the best fine-tuned run is {level['run']} (--freeze "
        f"{level['freeze']}) at {c:.3f} {accuracy} accuracy ({(c - a) * 100:+.1f} points against scratch)"
        + (f": the gain needs the larger input size ({ft['image_size']} px)." if c < a < b else "."))
    return [said] + [line for line in (same_size, time_to_reach(scratch, ft), overfitting(scratch, ft),
                                       class_gains(scratch, ft)) if line]


def same_run_but(row, *free):
    """A key equal for runs that differ only in the settings `free` (and the strategy, when "freeze" is among them)."""
    kept = {k: v for k, v in row["settings"].items() if k not in free}
    return json.dumps([row["model"], row["split_file"], kept, "freeze" in free or row["freeze"]], sort_keys=True)


def strategies(rows):
    """The freezing strategies that ran with the same model and settings, best first, and what the input size alone
    changed in one strategy (Part B's Q2)."""
    groups, tuned = {}, sorted((r for r in rows if r["kind"] == "finetune"), key=lambda r: -r["image_size"])
    for r in tuned:
        groups.setdefault(same_run_but(r, "freeze", "backbone_lr_scale"), []).append(r)
    out = []
    for group in (g for g in groups.values() if len({r["freeze"] for r in g}) > 1):
        s = group[0]["settings"]
        ranked = [r["freeze"] + ("" if r["settings"]["backbone_lr_scale"] is None else
                                 f" (backbone at {r['settings']['backbone_lr_scale']:g} × the learning rate)")
                  + f" {r['val_acc']:.3f}" + ("" if r["test_acc"] is None else f" ({r['test_acc']:.3f} test)")
                  + f", {r['trainable_params']:,} parameters trained in {r['total_s']:.0f} s"
                  for r in sorted(group, key=lambda r: -r["val_acc"])]
        out.append(f"Where only the strategy differs ({group[0]['model']}, {s['image_size']} px, {s['epochs']} epochs, "
                   f"the same recipe and split), validation accuracy, best first: "
                   + "; ".join(ranked) + ".")
    return out + [f"{a['freeze']} at {a['image_size']} px reached {a['val_acc']:.3f} validation accuracy, at "
                  f"{b['image_size']} px {b['val_acc']:.3f}: {(a['val_acc'] - b['val_acc']) * 100:+.1f} points from the "
                  f"input size and its resizing, the recipe otherwise the same."
                  for i, a in enumerate(tuned) for b in tuned[i + 1:]
                  if a["image_size"] != b["image_size"] and same_run_but(a, "image_size") == same_run_but(b, "image_size")]


# the training settings whose differences between compared runs are named (Q2, Q3)
SETTINGS = {"epochs": "number of epochs", "image_size": "input size (px)", "batch_size": "batch size", "lr": "learning rate",
            "weight_decay": "weight decay", "augment": "augmentation", "optimizer": "optimizer",
            "label_smoothing": "label smoothing", "warmup_epochs": "warm-up epochs", "grad_clip": "gradient clipping norm"}


def differences(rows):
    """One sentence per setting that differs between the runs, one naming those they share, and the backbone's
    lower learning rate where a run trains its backbone."""
    out, same = [], []
    for key, label in SETTINGS.items():
        texts = [shown(r["settings"].get(key)) for r in rows]  # a compare of older runs may lack a setting
        if len(set(texts)) == 1:
            same.append(f"{label} {texts[0]}")
        else:
            common = max(texts, key=texts.count)  # shared by several runs: said once, not run by run
            out.append(f"The {label} differs: " + ", ".join(f"{r['run']} {t}" for r, t in zip(rows, texts)
                                                          if t != common or texts.count(t) == 1)
                       + (f", the other runs {common}." if texts.count(common) > 1 else "."))
    out += [f"{r['run']} trains its backbone at {r['settings']['backbone_lr_scale']:g} × the learning rate."
            for r in rows if r["settings"].get("backbone_lr_scale") is not None]
    return out + ([f"The same in every run: {', '.join(same)}."] if same else [])


def shown(value):
    if isinstance(value, bool):
        return "on" if value else "off"
    return f"{value:.3g}" if isinstance(value, float) else str(value)


def time_to_reach(scratch, ft):
    """How soon the fine-tuned run passed the scratch run's best validation accuracy, against the scratch run."""
    target = scratch["val_acc"]
    own = next((c for c in scratch.get("curve", []) if c["val_acc"] >= target), None)
    passed = next((c for c in ft.get("curve", []) if c["val_acc"] >= target), None)
    if own is None:
        return None
    scratch_took = f"the scratch run took {own['epoch']} epochs, {own['elapsed_s']:.0f} s, to get there"
    if passed is None:
        return f"{ft['run']} never reached the scratch run's best validation accuracy ({target:.3f}); {scratch_took}."
    features = " (feature pass included)" if ft.get("feature_pass_s") else ""
    return (f"{ft['run']} passed the scratch run's best validation accuracy ({target:.3f}) after {passed['epoch']} "
            f"epoch{'s' if passed['epoch'] > 1 else ''}, {passed['elapsed_s'] + (ft.get('feature_pass_s') or 0):.0f} "
            f"s{features}; {scratch_took}.")


def overfitting(scratch, ft):
    """Train-vs-val accuracy gap at each run's last epoch (train accuracy is on augmented batches where augmentation
    is on, so a small or negative gap does not mean underfitting)."""
    def gap(row):
        last = (row.get("curve") or [{}])[-1]
        return None if last.get("train_acc") is None else last["train_acc"] - last["val_acc"]

    gaps = gap(scratch), gap(ft)
    if None in gaps:
        return None
    closer = "the scratch run" if gaps[0] > gaps[1] else "the fine-tuned run"
    return (f"Train minus validation accuracy at the last epoch: {gaps[0]:+.3f} from scratch, {gaps[1]:+.3f} "
            f"fine-tuned ({closer} fits its training images more).")


def class_gains(scratch, ft, top=3):
    """The classes whose test accuracy rose and fell most, when both runs were evaluated on the test set."""
    a, b = scratch.get("per_class"), ft.get("per_class")
    if not a or not b:
        return None
    changes = sorted((b[c] - a[c], c) for c in a if c in b)
    listed = lambda group: ", ".join(f"{c} {a[c]:.2f} → {b[c]:.2f}" for _, c in group)  # noqa: E731
    up, down = [x for x in reversed(changes) if x[0] > 0][:top], [x for x in changes if x[0] < 0][:top]
    moved = ([f"rose most in {listed(up)}"] if up else []) + ([f"fell most in {listed(down)}"] if down else [])
    return f"Per class, test accuracy {' and '.join(moved) or 'did not change'}."


def row_for(run_dir, eval_dir):
    record = load_record(run_dir)
    epochs = record.get("epochs", [])
    if not epochs:
        raise UserError(f"run {run_dir.name} has no finished epoch yet")
    test_file = Path(eval_dir) / run_dir.name / "test_summary.json"
    test = read_output(test_file) if test_file.is_file() else {}
    ft = record.get("finetune", {})
    elapsed = list(accumulate(e["epoch_time"] for e in epochs))
    curve = [{"epoch": e["epoch"], "val_acc": e["val_acc"], "train_acc": e.get("train_acc"), "elapsed_s": t}
             for e, t in zip(epochs, elapsed)]
    return {
        "run": run_dir.name,
        "kind": record.get("kind", "?"),
        "model": ft.get("model", "5-block CNN"),
        "freeze": ft.get("freeze", "-") + (f" k={ft['k']}" if ft.get("freeze") == "first-k" else ""),
        "image_size": record["config"]["image_size"],
        "resize_size": record["config"].get("resize_size"),  # set: the weights' own resize-and-crop, no --image-size
        "val_acc": record["summary"]["best_val_acc"],
        "test_acc": test.get("test_acc"),
        "per_class": test.get("per_class_acc"),
        "curve": curve,
        "trainable_params": record.get("trainable_params", record.get("params")),
        "params": record.get("params"),
        "s_per_epoch": elapsed[-1] / len(epochs),
        "feature_pass_s": record.get("feature_pass_s"),  # Part B's one backbone pass when the head trains on features
        "total_s": elapsed[-1] + (record.get("feature_pass_s") or 0.0),
        "images_per_s": record["summary"]["mean_images_per_s"],
        "epochs": len(epochs),
        "settings": {**{k: record["config"].get(k) for k in SETTINGS}, "epochs": len(epochs),
                     "backbone_lr_scale": ft.get("backbone_lr_scale") if ft.get("freeze") in ("none", "gradual") else None},
        "split_file": record.get("split_file"),
    }


@click.command(cls=OneLineErrors, context_settings={"show_default": True})
@click.option("--run", "runs", multiple=True, help="Runs to compare [default: best scratch run + all fine-tune runs].")
@click.option("--runs-dir", default="runs")
@click.option("--eval-dir", default="outputs/test-eval", help="Where partA/evaluate.py wrote test summaries.")
@click.option("--out", type=OUTPUT_FOLDER, default="outputs/compare")
def main(runs, runs_dir, eval_dir, out):
    """Compare scratch and fine-tuned runs: accuracy, trainable parameters, time, curves."""
    run_dirs = [resolve_run_dir(r, runs_dir) for r in runs] if runs else default_runs(runs_dir)
    if not run_dirs:
        raise UserError(f"no finished runs in {runs_dir}; train with partA/train.py and partB/finetune.py first")
    rows = [row_for(d, eval_dir) for d in run_dirs]
    same_split = len({r["split_file"] for r in rows}) == 1
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    learning_curves({r["run"]: load_record(d) for r, d in zip(rows, run_dirs)}, out / "learning_curves.png",
                    title="scratch vs fine-tuned: learning curves")
    fmt = lambda v: "n/a" if v is None else f"{v:.4f}"  # noqa: E731
    lines = ["| run | kind | model | freeze | input | best val acc | test acc | trainable params | epochs | s/epoch "
             "| feature pass (s) | training time (s) |", "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['run']} | {r['kind']} | {r['model']} | {r['freeze']} | {r['image_size']} | {fmt(r['val_acc'])} "
                     f"| {fmt(r['test_acc'])} | {r['trainable_params']:,} | {r['epochs']} | {r['s_per_epoch']:.1f} "
                     f"| {r['feature_pass_s'] or 0:.1f} | {r['total_s']:.0f} |")
    note = ("All runs share one validation split." if same_split else
            "WARNING: these runs used different splits (seed or data differ); validation accuracies are not comparable.")
    found, differ, matched = insights(rows), differences(rows), strategies(rows)
    text = "\n".join(lines) + f"\n\n{note}\n" + "".join(f"\n{line}\n" for line in matched + differ + found)
    (out / "compare.md").write_text(text)
    save_json(out / "compare.json", {"rows": rows, "same_split": same_split, "insights": found, "strategies": matched,
                                     "differences": differ, "command": invoked_command()})
    click.echo(text + f"wrote {out}/compare.md, compare.json, learning_curves.png")


if __name__ == "__main__":
    main()
