"""`make bench-detect`: end-to-end detection speed on the CPU or GPU, against OpenCV's DNN.

    python bench/bench_detect.py --frames 30 --threads 1
    python bench/bench_detect.py --frames 30 --threads 2 --resize stretch

Prints the median and 10th-90th percentile per stage (preprocess, forward, postprocess) and end to end, and
with OpenCV installed the ratio to `cv2.dnn.readNetFromDarknet` on the same photo and threads, per round too.
Results: docs/measurements.md, "Detector speed".
"""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import common  # noqa: E402,F401 (first: without the project's environment it says how to start)

from partC.cpu_threads import prefer_passive_openmp

prefer_passive_openmp()  # before torch loads OpenMP

import os
import time

import click
import numpy as np
import torch

from bench import opencv_reference
from common.cli import DEVICE_OPTION, OneLineErrors
from partC.detector import PRECISION_DTYPES, build_detector
from common.data import read_image
from partC.darknet_files import YOLO_REGISTRY, offline_photos, read_names, yolo_files

def spread(seconds):
    ms = 1000 * np.asarray(seconds)
    return f"{np.median(ms):7.1f} ms ({np.percentile(ms, 10):.1f}-{np.percentile(ms, 90):.1f})"


def time_ours(detector, frame):
    """(preprocess, forward, postprocess) seconds for one frame."""
    t0 = time.perf_counter()
    x, lb = detector.preprocess(frame)
    t1 = time.perf_counter()
    decoded = detector.forward(x)  # ends with .cpu(): waits for the GPU
    t2 = time.perf_counter()
    detector.postprocess(decoded, lb, frame.shape[2], frame.shape[1])
    return t1 - t0, t2 - t1, time.perf_counter() - t2


def time_opencv(reference, rgb):
    started = time.perf_counter()
    reference(rgb)
    return time.perf_counter() - started


def turns(frames, rounds):
    """[(round, "ours" | "opencv", frames in the block)]: `rounds` rounds of one block each, the first
    mover alternating between rounds, `frames` frames each in all (the remainder in the last rounds; why turns
    and blocks: docs/measurements.md, "Detector speed")."""
    per_round = [frames // rounds + (r >= rounds - frames % rounds) for r in range(rounds)]
    order = [("ours", "opencv"), ("opencv", "ours")]
    return [(r, who, n) for r, n in enumerate(per_round) for who in order[r % 2]]


def round_ratios(ours, theirs):
    return [float(np.median(theirs[r]) / np.median(ours[r])) for r in sorted(ours)]


@click.command(cls=OneLineErrors, context_settings={"show_default": True})
@click.option("--model", type=click.Choice(list(YOLO_REGISTRY)), default="yolov3-tiny")
@click.option("--input-size", type=int, default=416)
@click.option("--frames", type=int, default=30, help="Timed frames (after the warm-up).")
@click.option("--warmup", type=int, default=5)
@DEVICE_OPTION
@click.option("--threads", type=int, default=0, help="CPU threads, ours and OpenCV's (0: one per core).")
@click.option("--resize", type=click.Choice(["letterbox", "stretch"]), default="letterbox")
@click.option("--precision", type=click.Choice(list(PRECISION_DTYPES)), default="fp32")
@click.option("--opencv/--no-opencv", default=True, help="Also time OpenCV's DNN when it is installed.")
@click.option("--rounds", type=int, default=5, help="Turns ours and OpenCV's take (--frames split between them).")
@click.option("--image", default=None, help="Photo to run on [default: darknet's dog.jpg, else grace_hopper.jpg].")
def main(model, input_size, frames, warmup, device, threads, resize, precision, opencv, rounds, image):
    """Time end-to-end detection per frame, with a per-stage breakdown and OpenCV's DNN beside it."""
    if frames < 1 or warmup < 0 or rounds < 1:
        raise click.BadParameter("--frames and --rounds must be >= 1, --warmup >= 0")
    rounds = min(rounds, frames)  # a round has at least one frame each
    path = Path(image) if image else offline_photos(["dog.jpg"])[0]
    detector = build_detector(model=model, input_size=input_size, device=device, resize=resize, precision=precision,
                              threads=threads)
    threads = torch.get_num_threads()
    frame = read_image(path)
    rgb = frame.permute(1, 2, 0).numpy().copy()
    reference = None
    if opencv and detector.device.type == "cpu":
        if opencv_reference.available():
            cfg, weights, names = yolo_files(model)
            reference = opencv_reference.OpenCVDetector(cfg, weights, read_names(names), input_size, resize=resize,
                                                        threads=threads)
        else:
            click.echo("OpenCV is not installed (pip install -e .[opencv]): timing ours alone")
    for _ in range(warmup):
        time_ours(detector, frame)
        if reference is not None:
            time_opencv(reference, rgb)
    stages, ours_by_round, theirs_by_round = [], {}, {}
    for r, who, n in turns(frames, rounds if reference is not None else 1):
        for _ in range(n):
            if who == "ours":
                stages.append(time_ours(detector, frame))
                ours_by_round.setdefault(r, []).append(sum(stages[-1]))
            elif reference is not None:
                theirs_by_round.setdefault(r, []).append(time_opencv(reference, rgb))
    total = [sum(s) for s in stages]
    theirs = [t for r in sorted(theirs_by_round) for t in theirs_by_round[r]]
    click.echo(f"{model} @ {input_size}px, {resize}, {precision}, on {detector.device} ({threads} threads), {path.name} "
               f"{frame.shape[2]}x{frame.shape[1]}, median (p10-p90) over {frames} frames after {warmup} warm-up"
               f"{f', taking turns with OpenCV in {rounds} rounds' if reference is not None else ''}:")
    if detector.device.type == "cpu":
        click.echo(f"  OpenMP waiting: OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY', 'unset')}")
    for stage, seconds in zip(("preprocess ", "forward    ", "postprocess"), zip(*stages)):
        click.echo(f"  ours    {stage} {spread(seconds)}")
    click.echo(f"  ours    end to end  {spread(total)}  = {1 / np.median(total):.1f} frames/s")
    if reference is not None:
        ratio = np.median(theirs) / np.median(total)
        per_round = round_ratios(ours_by_round, theirs_by_round)
        click.echo(f"  OpenCV  end to end  {spread(theirs)}  = {1 / np.median(theirs):.1f} frames/s")
        click.echo(f"  ratio: OpenCV median / ours = {ratio:.2f} ({'ours faster' if ratio >= 1 else 'OpenCV faster'}); "
                   f"per round: {' '.join(f'{x:.2f}' for x in per_round)}")


if __name__ == "__main__":
    main()
