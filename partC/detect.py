"""Run a pretrained YOLOv3 (PyTorch, from Darknet weights) on images, folders and videos.

    python partC/detect.py /usr/share/darknet/data/dog.jpg
    python partC/detect.py clip.mp4 --model yolov3 --classes person,bicycle --conf 0.3
    python partC/detect.py photos/ --out outputs/detect --input-size 608

Writes annotated images and videos and detections.jsonl into --out (docs/design.md, "Part C in detail").
"""
import json
import sys
import time
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import common  # noqa: E402,F401 (first: without the project's environment it says how to start)

from partC.cpu_threads import prefer_passive_openmp

prefer_passive_openmp()  # before torch loads OpenMP

import click
import numpy as np
from tqdm import tqdm

from common.cli import OUTPUT_FOLDER, OneLineErrors, invoked_command
from partC.detector import DETECT_OPTIONS, build_detector
from common.errors import UserError
from common.io import save_json, write_atomically
from common.data import read_image
from partC.media import VideoWriter, draw_detections, expand_inputs, image_format, iter_video, video_info


def detect_images_and_videos(detector, inputs, out_dir, quiet=False):
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    stats = {"images": 0, "frames": 0, "bad_frames": 0, "detections": 0, "skipped": []}
    names = output_names(inputs)
    with open(out_dir / "detections.jsonl", "w") as log:
        for number, (kind, path) in enumerate(inputs):
            try:
                detect_one(detector, kind, path, out_dir / names[number], log, stats, quiet)
            except UserError as err:  # one bad file is skipped and reported, never the end of a folder run
                stats["skipped"].append((str(path), err.message))
                click.echo(f"skipped {path}: {err.message}", err=True)
    return stats


def output_names(inputs):
    """The annotated file's name for each input, in order, all different: `x/a.jpg` and `y/a.jpg` (or `a.jpg` and
    `a.png`) become `x_a.jpg` and `y_a.jpg` — the folder's name in front — and a repeat gets a number."""
    wanted = [f"{path.stem}{'.jpg' if kind == 'image' else '.mp4'}" for kind, path in inputs]
    clashing = Counter(wanted)
    names, used = [], set()
    for (kind, path), name in zip(inputs, wanted):
        if clashing[name] > 1 and path.parent.name:
            name = f"{path.parent.name}_{name}"
        stem, suffix, n = Path(name).stem, Path(name).suffix, 2
        while name in used:
            name, n = f"{stem}-{n}{suffix}", n + 1
        used.add(name)
        names.append(name)
    return names


def detect_one(detector, kind, path, output, log, stats, quiet):
    """Detect in one image or video, writing its annotated copy (`output`) and its JSON lines."""
    if kind == "image":
        image = read_image(path)
        detections = detector(image)
        drawn = draw_detections(image, detections)
        write_atomically(output, lambda handle: drawn.save(handle, format=image_format(output), quality=92))
        for d in detections:
            log.write(json.dumps({"source": str(path), "annotated": output.name, "frame": None, "time": None,
                                  **d.to_dict()}) + "\n")
        stats["images"] += 1
        stats["detections"] += len(detections)
        if not quiet:
            found = ", ".join(f"{d.label} {d.score:.2f}" for d in detections) or "nothing"
            click.echo(f"{path}: {found}")
        return
    info = video_info(path)
    writer = None
    bar = tqdm(iter_video(path), total=info["frames"] or None, desc=path.name, unit="frame", disable=quiet or None)
    try:
        for frame in bar:
            if frame.image is None:
                stats["bad_frames"] += 1
                continue
            detections = detector(frame.image)
            if writer is None:
                writer = VideoWriter(output, info["fps"], frame.image.shape[2], frame.image.shape[1])
            writer.write(np.asarray(draw_detections(frame.image, detections)))
            for d in detections:
                log.write(json.dumps({"source": str(path), "annotated": output.name, "frame": frame.index,
                                      "time": round(frame.time, 3), **d.to_dict()}) + "\n")
            stats["frames"] += 1
            stats["detections"] += len(detections)
    finally:  # a video cut short still ends as a playable file
        if writer is not None:
            writer.close()


@click.command(cls=OneLineErrors, context_settings={"show_default": True})
@click.argument("inputs", nargs=-1, required=True)
@DETECT_OPTIONS
@click.option("--out", type=OUTPUT_FOLDER, default="outputs/detect", help="Folder for annotated media and detections.jsonl.")
@click.option("--quiet", is_flag=True)
def main(inputs, out, quiet, **options):
    """Detect objects (80 COCO classes) in images, folders and videos."""
    detector = build_detector(**options)
    started = time.perf_counter()
    stats = detect_images_and_videos(detector, expand_inputs(inputs), out, quiet)
    elapsed = time.perf_counter() - started
    save_json(Path(out) / "run.json", {"command": invoked_command(), "seconds": round(elapsed, 2),
                                       "model": options["cfg"] or options["model"], "input_size": detector.height,
                                       "conf": detector.conf_threshold,
                                       **{k: v for k, v in stats.items() if k != "skipped"}})
    bad = f", {stats['bad_frames']} unreadable frames skipped" if stats["bad_frames"] else ""
    bad += f", {len(stats['skipped'])} unreadable input(s) skipped" if stats["skipped"] else ""
    click.echo(f"{stats['images']} images, {stats['frames']} video frames, {stats['detections']} detections "
               f"in {elapsed:.1f}s{bad} -> {out}/ (detections.jsonl)")
    if stats["images"] + stats["frames"] == 0:
        raise UserError("no input could be read; see the skipped files above")


if __name__ == "__main__":
    main()
