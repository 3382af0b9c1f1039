"""Wildlife camera-trap watcher: YOLOv3 on a video or a folder of trap frames.

    python partC/camera_trap.py trap.mp4 --alert bear,person --cooldown 60
    python partC/camera_trap.py frames/ --fps 0.2 --classifier runs/<run>/best.pt
    python partC/camera_trap.py --demo-clip        # builds a clip from real photos, then watches it

What it keeps, alerts on and writes: docs/design.md, "Part C in detail".
"""
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import common  # noqa: E402,F401 (first: without the project's environment it says how to start)

from partC.cpu_threads import prefer_passive_openmp

prefer_passive_openmp()  # before torch loads OpenMP

import click
from tqdm import tqdm

from partC.trap import ANIMALS, WILDLIFE, CropClassifier, Watcher, first_video_fps, frames_of, make_demo_clip, plural
from common.cli import OUTPUT_FOLDER, OneLineErrors, invoked_command
from partC.detector import DETECT_OPTIONS, build_detector
from common.errors import UserError
from common.io import save_json
from partC.media import expand_inputs
from partC.yolo import parse_classes

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
    labeller = CropClassifier(classifier, device=str(detector.device)) if classifier else None
    watched, alert_classes = parse_classes(watch, detector.names), parse_classes(alert, detector.names)

    def say_alert(event):
        click.echo(f"ALERT t={event['time']:7.1f}s frame {event['frame']}: {event['class']} ({event['score']:.2f}) "
                   f"in {Path(event['source']).name}")

    watcher = Watcher(detector, out, watched, alert_classes, cooldown, min_score, first_video_fps(media, stride, fps),
                      labeller, None if quiet else say_alert)
    skipped_inputs = []
    started = time.perf_counter()
    try:
        for source, index, t, image in tqdm(frames_of(media, fps, stride, skipped_inputs), desc="watching",
                                            unit="frame", disable=quiet or None):
            watcher.look(source, index, t, image)
    finally:
        watched_summary = watcher.finish()
    elapsed = time.perf_counter() - started
    stats = watcher.stats
    summary = {**watched_summary, "seconds": round(elapsed, 2),
               "frames_per_s": round(stats["frames"] / max(elapsed, 1e-9), 2), "cooldown_s": cooldown,
               "watched": watched, "alert_classes": alert_classes, "classifier": classifier,
               "command": invoked_command(), "skipped_inputs": [{"path": p, "reason": r} for p, r in skipped_inputs]}
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
