"""Wildlife camera-trap watcher: YOLOv3 on a video or a folder of trap frames.

    python partC/camera_trap.py trap.mp4 --alert bear,person --cooldown 60
    python partC/camera_trap.py frames/ --fps 0.2 --classifier runs/<run>/best.pt
    python partC/camera_trap.py --demo-clip        # builds a clip from real photos, then watches it

It detects animals and people, keeps the frames worth keeping (a watched class above
--min-score), raises an alert when an --alert class comes into view (one per visit: the class
must have been out of view for --cooldown seconds), and writes into --out:
  events.jsonl        one line per alert and per kept frame (time, frame, detections)
  watched.mp4         the kept frames, annotated, as a clip
  kept/               the kept frames as annotated JPEGs
  contact_sheet.png   every animal/person crop, captioned (with its iNaturalist class when
                      --classifier gives a Part A/B checkpoint)
  summary.json        counts, alerts, timings
"""
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import common  # noqa: E402,F401 (first: without the project's environment it says how to start)

from partC.cpu_threads import prefer_passive_openmp

prefer_passive_openmp()  # before torch loads OpenMP

import click
import numpy as np
from tqdm import tqdm

from partC.trap import (ANIMALS, WILDLIFE, AlertPolicy, CropClassifier, contact_sheet, crop, first_video_fps,
                                fit_canvas, frames_of, make_demo_clip, parse_classes, plural, worth_keeping)
from common.cli import OUTPUT_FOLDER, OneLineErrors, invoked_command
from partC.detector import DETECT_OPTIONS, build_detector
from common.errors import UserError
from common.io import save_json
from partC.media import VideoWriter, draw_detections, expand_inputs



@click.command(cls=OneLineErrors, context_settings={"show_default": True})
@click.argument("inputs", nargs=-1)
@DETECT_OPTIONS
@click.option("--watch", default=",".join(WILDLIFE), help="Classes to detect and keep frames for.")
@click.option("--alert", default=",".join(ANIMALS), help="Classes that raise an alert.")
@click.option("--cooldown", type=float, default=30.0, help="Seconds a class must be out of view before it alerts again.")
@click.option("--min-score", type=float, default=0.35, help="Score a detection needs to keep a frame or alert.")
@click.option("--fps", type=float, default=1.0,
              help="Frame rate of a folder of trap frames without EXIF capture times (for times and the clip).")
@click.option("--stride", type=int, default=1, help="Process every N-th frame.")
@click.option("--classifier", default=None, help="A Part A/B best.pt: label each animal crop with its class.")
@click.option("--demo-clip", is_flag=True, help="Build a clip from Debian darknet's real photos and watch it.")
@click.option("--out", type=OUTPUT_FOLDER, default="outputs/camera_trap")
@click.option("--quiet", is_flag=True)
def main(inputs, watch, alert, cooldown, min_score, fps, stride, classifier, demo_clip, out, quiet, **detect_options):
    """Watch a camera-trap video or frame folder; alert, keep, annotate and summarise."""
    out = Path(out)
    if demo_clip:
        inputs = inputs + (str(make_demo_clip(out / "demo_clip.mp4")),)
    if not inputs:
        raise UserError("give a video, a folder of frames or images (or --demo-clip)")
    if stride < 1 or fps <= 0 or cooldown < 0:
        raise UserError("--stride must be >= 1, --fps > 0 and --cooldown >= 0")
    media = expand_inputs(inputs)
    detector = build_detector(**detect_options)
    watched = parse_classes(watch, detector.names)
    alert_classes = parse_classes(alert, detector.names)
    policy = AlertPolicy(alert_classes, cooldown, min_score)
    visits = AlertPolicy(watched, cooldown, min_score)  # a "visit" = a class in view, cool-down to cool-down
    visit_number, visit_start = {}, {}
    not_kept = []  # a few frames that were looked at and not kept, to show what the filter dropped
    best_crop = {}  # (class, visit) → (score, crop, caption): one crop per visit on the contact sheet
    alert_score = {}  # (class, visit) → the score the alert was raised with
    labeller = CropClassifier(classifier, device=str(detector.device)) if classifier else None
    clip_fps = first_video_fps(media, stride, fps)
    skipped_inputs = []

    (out / "kept").mkdir(parents=True, exist_ok=True)
    writer, canvas_size = None, None
    stats = {"frames": 0, "bad_frames": 0, "kept": 0, "alerts": 0, "detections": 0}
    alerts_log = []
    started = time.perf_counter()
    with open(out / "events.jsonl", "w") as events:
        for source, index, t, image in tqdm(frames_of(media, fps, stride, skipped_inputs), desc="watching", unit="frame",
                                            disable=quiet or None):
            if image is None:
                stats["bad_frames"] += 1
                continue
            stats["frames"] += 1
            detections = [d for d in detector(image) if d.label in watched]
            stats["detections"] += len(detections)
            for label in visits.update(t, detections):
                visit_number[label] = visit_number.get(label, 0) + 1
                visit_start[(label, visit_number[label])] = t  # the visit's alert time, shown on the contact sheet
            for label in policy.update(t, detections):
                best = max((d for d in detections if d.label == label), key=lambda d: d.score)
                event = {"type": "alert", "class": label, "time": round(t, 3), "frame": index, "source": source,
                         "score": float(best.score), "box": [round(v, 1) for v in best.box]}
                events.write(json.dumps(event) + "\n")
                alerts_log.append(event)
                alert_score[(label, visit_number.get(label, 0))] = float(best.score)  # the visit it opened
                stats["alerts"] += 1
                if not quiet:
                    click.echo(f"ALERT t={t:7.1f}s frame {index}: {label} ({best.score:.2f}) in {Path(source).name}")
            if not worth_keeping(detections, watched, min_score):
                if len(not_kept) < 8:  # the first few dropped frames show what the filter drops
                    found = ", ".join(f"{d.label} {d.score:.2f}" for d in detections) or "nothing watched"
                    not_kept.append((image, f"t={t:.1f}s: {found}"))
                continue
            extra = []
            for d in detections:
                piece = crop(image, d.box)
                key = (d.label, visit_number.get(d.label, 0))
                caption = f"{d.label} {d.score:.2f}, visit from t={visit_start.get(key, t):.1f}s"
                species = None
                if labeller is not None and d.label in ANIMALS:
                    species, prob = labeller(piece)
                    caption += f"\nclassifier's guess: {species} {prob:.2f}"
                extra.append(f"guess: {species}" if species else "")
                if d.score >= min_score and (key not in best_crop or d.score > best_crop[key][0]):
                    best_crop[key] = (d.score, piece, caption)
            annotated = draw_detections(image, detections, extra)
            name = f"{Path(source).stem}-{index:06d}.jpg"
            annotated.save(out / "kept" / name, quality=90)
            canvas_size = canvas_size or (annotated.width - annotated.width % 2, annotated.height - annotated.height % 2)
            if writer is None:
                writer = VideoWriter(out / "watched.mp4", clip_fps, *canvas_size)
            writer.write(np.asarray(fit_canvas(annotated, canvas_size)))
            events.write(json.dumps({"type": "frame", "time": round(t, 3), "frame": index, "source": source,
                                     "kept_as": f"kept/{name}", "detections": [d.to_dict() for d in detections],
                                     "species": extra if labeller else None}) + "\n")
            stats["kept"] += 1
    if writer is not None:
        writer.close()
    elapsed = time.perf_counter() - started
    if best_crop:
        # One crop per visit (the best-scoring one), in order of appearance.
        visits_seen = list(best_crop.values())[:64]
        contact_sheet([v[1] for v in visits_seen], [v[2] for v in visits_seen], out / "contact_sheet.png",
                      title=f"camera trap: {plural(len(best_crop), 'visit')}, {plural(stats['alerts'], 'alert')}")
    if not_kept:
        contact_sheet([img for img, _ in not_kept], [cap for _, cap in not_kept], out / "not_kept.png",
                      title=f"frames not kept (no watched class at score >= {min_score}): "
                            f"{stats['frames'] - stats['kept']} of {stats['frames']}")
    outputs = {"events": "events.jsonl", "clip": "watched.mp4" if writer else None, "kept": "kept/",
               "contact_sheet": "contact_sheet.png" if best_crop else None,
               "not_kept": "not_kept.png" if not_kept else None}
    visits_list = [{"class": key[0], "visit": key[1], "start": round(visit_start.get(key, 0.0), 3),
                    "best_score": float(best[0]), "alert_score": alert_score.get(key)} for key, best in best_crop.items()]
    summary = {**stats, "seconds": round(elapsed, 2), "frames_per_s": round(stats["frames"] / max(elapsed, 1e-9), 2),
               "alerts_list": alerts_log, "visits": visits_list, "cooldown_s": cooldown, "watched": watched,
               "alert_classes": alert_classes, "classifier": classifier, "outputs": outputs,
               "command": invoked_command(),
               "skipped_inputs": [{"path": p, "reason": r} for p, r in skipped_inputs]}
    save_json(out / "summary.json", summary)
    for path, reason in skipped_inputs:
        click.echo(f"skipped {path}: {reason}", err=True)
    bad = f", {stats['bad_frames']} unreadable frames skipped" if stats["bad_frames"] else ""
    bad += f", {plural(len(skipped_inputs), 'unreadable video')} skipped" if skipped_inputs else ""
    click.echo(f"{stats['frames']} frames in {elapsed:.1f}s ({summary['frames_per_s']} frames/s): {stats['kept']} kept, "
               f"{plural(stats['alerts'], 'alert')}{bad} -> {out}/")
    if stats["frames"] == 0:
        raise UserError("no frame could be read from the inputs; see the skipped files above")


if __name__ == "__main__":
    main()
