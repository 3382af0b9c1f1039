"""The report's answers that read other commands' outputs, as blocks: each run's newest output found under the
folders given with --include (a report folder inside them skipped), and the sections built from them — Q1's counts,
Q2's bench evidence, Q4's test and interpretation, Part B's comparison, Part C's detections and camera trap."""
import warnings
from pathlib import Path

from common.state import Detection, Mapping, read_json_lines, read_output, read_state_or_none
from handin.blocks import command, expected_figure, figure, h4, missing, paragraph, photos, table, video
from partC.darknet_files import DEMO_PHOTOS, PHOTO_SHOWS, known_contents, offline_photos

DISPLAY = {"grid": 900, "confusion": 620, "filters": 620, "maps": 820, "guided": 520, "curves": 900, "photo": 420,
           "sheet": 820, "plot": 900}


def find(folders, name, exclude):
    """The newest `name` per parent folder name under `folders`, outside `exclude`: a rerun replaces, not duplicates."""
    chosen = {}
    for folder in folders:
        for path in Path(folder).rglob(name):
            if exclude is not None and Path(exclude).resolve() in path.resolve().parents:
                continue
            key = path.parent.name
            if key not in chosen or path.stat().st_mtime > chosen[key].stat().st_mtime:
                chosen[key] = path
    return list(chosen.values())


def readable_outputs(paths):
    """[(path, data)] of the JSON outputs that can be read; a damaged one is left out with a warning (its answer is
    then noted as missing), never a traceback that loses the whole report."""
    found = []
    for path in paths:
        data = read_state_or_none(path, Mapping, on_damage=lambda message: warnings.warn(
            message.replace("rebuilding it", "left out of the report; run the command that writes it again")))
        if data is not None:
            found.append((path, data))
    return found


def collect_outputs(folders, exclude=None):
    """What the other commands wrote, by kind: test summaries, interpretation figures, comparison, Part C."""
    tests = sorted(readable_outputs(find(folders, "test_summary.json", exclude)), key=lambda t: t[0].stat().st_mtime)
    compare = [p for p, _ in readable_outputs(find(folders, "compare.json", exclude))]
    detections = find(folders, "detections.jsonl", exclude)
    traps = [p for p, data in readable_outputs(find(folders, "summary.json", exclude)) if "alerts_list" in data]
    finetuned = [s["run"] for _, s in tests if s.get("kind") == "finetune"]
    return {
        "tests": {s["run"]: (p.parent, s) for p, s in tests},
        "compare": compare[0] if compare else None,
        "detect": detections[0].parent if detections else None,
        "trap": traps[0].parent if traps else None,
        "finetune_run": finetuned[-1] if finetuned else None,  # the newest evaluated one
    }


# ------------------------------------------------------------------------------------ sections

def q1_counts(record):
    """The count table of the run's own model, from the closed forms, checked against the real model."""
    from common.models import CNNConfig, layer_costs, real_counts, total_costs

    cfg = CNNConfig(**record["model_spec"]["config"])
    costs, (params, macs) = layer_costs(cfg), total_costs(cfg)
    real_params, real_macs = real_counts(cfg)
    rows = [(name, f"{p:,}", f"{m:,}") for name, p, m in costs] + [("total", f"{params:,}", f"{macs:,}")]
    size = cfg.input_size[0]
    check = ("match" if (real_params, real_macs) == (params, macs) else
             f"MISMATCH (real model: {real_params:,} parameters, {real_macs:,} MACs)")
    return (paragraph(f"Its model: filters {cfg.filters}, kernels {cfg.kernel_sizes}, dense {cfg.dense_units}, "
                      f"{size}×{size} inputs, batch norm {cfg.batch_norm}. Closed-form counts per layer; checked "
                      f"against the real model (parameters summed, MACs counted by forward hooks): {check}.")
            + table(["layer", "parameters", "multiply-accumulates"], rows)
            + command(f"python partA/model_info.py --filters {','.join(map(str, cfg.filters))} --kernel-sizes "
                      f"{','.join(map(str, cfg.kernel_sizes))} --dense-units {cfg.dense_units} --image-size {size}"
                      f"{' --batch-norm' if cfg.batch_norm else ''}"))


def sweep_bench_evidence(docs, config):
    """What make sweep-bench measured for the sweep's own method (the committed figure and table in docs/), or []."""
    figure_path, data_path = Path(docs) / "sweep_efficiency.png", Path(docs) / "sweep_bench.json"
    if not figure_path.is_file() or not data_path.is_file():
        return []
    bench = read_output(data_path)
    shown = lambda f: "not reached" if f is None else f"{f:.2f}"  # noqa: E731
    rows = []
    for row in bench["table"]:
        replay = row.get("replayed")
        rows.append([row["method"], " / ".join(shown(f) for f in row["fraction_of_grid_epochs"]) or "(replayed only)",
                     "" if not replay else f"median {shown(replay['median'])}, ≤ 1/5 in {replay['within_goal']:.0%}"])
    method = config["method"] + ("+hyperband" if config.get("early_terminate") else "")
    own = next((r for r in bench["table"] if r["method"] == method and r.get("replayed")), None)
    said = (f"This sweep's method, {method}, needed a median {own['replayed']['median']:.2f} of the grid's epochs, and "
            f"at most 1/5 of them in {own['replayed']['within_goal']:.0%} of the replays." if own else
            f"This sweep's method, {method}, was not measured there; the table shows what was.")
    return (figure(figure_path, "How much the strategy saves, measured (make sweep-bench, docs/measurements.md)",
                   DISPLAY["plot"])
            + paragraph(f"Why this strategy. make sweep-bench ran each method on a 36-configuration grid of the demo "
                        f"data at {bench.get('image_size')} px, {bench.get('epochs')} epochs a run, {bench.get('seeds')} "
                        f"data seeds, and counted the epochs it trained before it found the grid's best configuration, "
                        f"as a fraction of the grid's own epochs. A replay runs a method again through the real "
                        f"controller with another proposal seed, reading the recorded training histories instead of "
                        f"training ({bench.get('replays', 0)} per data seed). {said} Measured {bench.get('measured', '(no date)')}; "
                        f"docs/measurements.md has every run of it.")
            + table(["method", "fraction of the grid's epochs (per seed)", "replays"], rows))


def test_section(folder, summary):
    body = paragraph(f"The test uses the run's best-validation checkpoint: the weights of epoch {summary['epoch']}, "
                     f"the epoch with the highest validation accuracy, whatever epoch the run ended at.")
    body += table(["run", "checkpoint epoch", "best val acc", "TEST accuracy", "test images"],
                 [[summary["run"], summary["epoch"], f"{summary['best_val_acc']:.4f}", f"{summary['test_acc']:.4f}",
                   summary["test_images"]]])
    evaluate = f"python partA/evaluate.py --run {summary['run']}"
    body += h4("Per-class test accuracy") + table(["class", "accuracy"], [
        (c, f"{summary['per_class_acc'][c]:.3f}") for c in summary["classes"]]) + command(evaluate)
    body += expected_figure(folder / "test_grid.png", f"Test predictions of {summary['run']} (green ✓ right, red ✗ "
                                                      f"wrong)", DISPLAY["grid"], evaluate)
    body += expected_figure(folder / "confusion_matrix.png", f"Confusion matrix of {summary['run']} on the test set",
                            DISPLAY["confusion"], evaluate)
    return body


def interpretation_section(folders, run, exclude):
    parts = []
    for name, heading, width in (("filters.png", "First-layer filters", DISPLAY["filters"]),
                                 ("feature_maps.png", "First-layer feature maps of a test image", DISPLAY["maps"]),
                                 ("guided_backprop.png", "Guided backpropagation from 10 CONV5 neurons",
                                  DISPLAY["guided"])):
        paths = [p for p in find(folders, name, exclude) if p.parent.name == run]
        parts += (figure(paths[0], heading, width) if paths else
                  missing(f"{name} ({heading}) of {run}: make interpret RUN={run} writes it"))
    return parts + command(f"python partA/filters.py --run {run} && python partA/guided_backprop.py --run {run}")


def compare_table(path):
    """Every compared run in one table, then the settings they differ in (Part B's Q2)."""
    data = read_output(path)
    rows = [[r["run"], r["kind"], r["model"], r["freeze"], r["image_size"], f"{r['val_acc']:.4f}",
             "n/a" if r["test_acc"] is None else f"{r['test_acc']:.4f}", f"{r['trainable_params']:,}", r["epochs"],
             f"{r['s_per_epoch']:.1f}", f"{r.get('feature_pass_s') or 0:.1f}", f"{r.get('total_s', 0):.0f}"]
            for r in data["rows"]]
    body = table(["run", "kind", "model", "freeze", "input", "best val acc", "test acc", "trainable params", "epochs",
                  "s/epoch", "feature pass (s, once)", "training time (s)"], rows)
    body += paragraph("Training time is all epochs, plus the one backbone pass that computed the features when a "
                      "head trains on cached features. "
                      + ("All runs share one validation split." if data.get("same_split") else
                         "Warning: these runs used different splits; their validation accuracies are not comparable."))
    return body + [block for key in ("strategies", "differences") for line in data.get(key, [])
                   for block in paragraph(line)]


def compare_section(path):
    """What the comparison shows, and the learning curves (Part B's Q3)."""
    data = read_output(path)
    body = [block for line in data.get("insights", []) for block in paragraph(line)]
    body += expected_figure(path.parent / "learning_curves.png", "Learning curves: validation accuracy per epoch",
                            DISPLAY["curves"], "python partB/compare.py")
    return body + command(data.get("command") or "python partB/compare.py")


def detect_section(folder):
    by_source, rows = {}, list(read_json_lines(folder / "detections.jsonl", Detection, on_damage=warnings.warn))
    for row in rows:
        if row.get("frame") is None:
            annotated = Path(row.get("annotated") or row["source"]).stem
            by_source.setdefault(annotated, []).append(f"{row['label']} {row['score']:.2f}")
    cells = []
    for image in sorted(folder.glob("*.jpg")):
        found = ", ".join(by_source.get(image.stem, [])) or "nothing above the threshold"
        cells += figure(image, f"{image.name}: {found}", DISPLAY["photo"])
    ran = read_output(folder / "run.json") if (folder / "run.json").is_file() else {}
    model = f"{ran['model']} at {ran['input_size']} px, " if ran.get("model") else ""
    return (paragraph(f"{model}boxes above the score threshold after non-maximum suppression, on each photo:")
            + photos(cells) + photo_mistakes(rows, ran.get("model") or "the detector")
            + (command(ran["command"]) if ran.get("command") else []))


def photo_mistakes(rows, model):
    """A sentence on what the detector got wrong on the photos whose contents are known, or [] when none are."""
    said = []
    for source in dict.fromkeys(r["source"] for r in rows if r.get("frame") is None):
        shows = known_contents(source)
        if shows is None:
            continue
        labels = [r for r in rows if r["source"] == source and r.get("frame") is None]
        wrong = [f"{r['label']} {r['score']:.2f}" for r in labels if r["label"] not in shows]
        missed = sorted(shows - {r["label"] for r in labels})
        if wrong or missed:
            said.append(f"{Path(source).name} shows {', '.join(sorted(shows))}"
                        + (f"; it also said {', '.join(wrong)}" if wrong else "")
                        + (f"; it found no {', '.join(missed)}" if missed else ""))
    if not said:
        return []
    return paragraph(f"What {model} got wrong, on Debian's darknet photos (their contents are known): "
                     + ". ".join(said) + ".")


def trap_section(folder):
    summary = read_output(folder / "summary.json")
    frames, kept = summary["frames"], summary["kept"]
    body = paragraph("It watches a video or a folder of trap stills, keeps the frames with animals or people, raises "
                     "one alert per visit of an alert class (a class counts as a new visit after it was out of view "
                     "for the cool-down), and writes the annotated clip, the kept frames, a contact sheet and "
                     "events.jsonl.")
    body += table(["frames", "frames/s", "kept", "not kept", "alerts", "cool-down (s)", "unreadable frames", "classifier"],
                  [[frames, summary["frames_per_s"], kept, frames - kept, summary["alerts"], summary["cooldown_s"],
                    summary["bad_frames"], summary.get("classifier") or "none"]])
    visits = summary.get("visits") or []
    if visits:
        body += h4("Visits (one crop each on the contact sheet, at its best score)") + table(
            ["class", "from (s)", "score when it alerted", "best score in the visit"],
            [[v["class"], v["start"], "no alert (not an --alert class)" if v.get("alert_score") is None else
              f"{v['alert_score']:.2f}",
              f"{v['best_score']:.2f}"] for v in visits])
    for name, heading in (("contact_sheet.png", "One crop per visit"), ("not_kept.png", "Frames that were not kept")):
        if (folder / name).is_file():
            body += figure(folder / name, heading, DISPLAY["sheet"])
    body += clip_mistakes(summary, visits)
    if (folder / "watched.mp4").is_file():
        body += video(folder / "watched.mp4", "The watcher's clip: the kept frames, annotated (Part C's video)")
    return body + (command(summary["command"]) if summary.get("command") else [])


def clip_mistakes(summary, visits):
    """A sentence on the demo clip's visits of classes its photos never show, or [] (another clip, or none)."""
    if "--demo-clip" not in (summary.get("command") or "") or any(
            known_contents(p) is None for p in offline_photos(DEMO_PHOTOS)):
        return []
    shows = set().union(*(PHOTO_SHOWS[name] for name in DEMO_PHOTOS))
    wrong = sorted({v["class"] for v in visits} - shows)
    if not wrong:
        return []
    return paragraph(f"The clip is made of Debian's darknet photos, which show {', '.join(sorted(shows))}. So its "
                     f"{' and '.join(wrong)} visits are the detector's mistakes.")
