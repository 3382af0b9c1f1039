"""`make bench-detect`: frames/s of our PyTorch YOLOv3 on this machine.

    python partC/bench_detect.py --model yolov3-tiny --input-size 416 --frames 30
"""
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import click
import matplotlib
import torch

from common.detector import build_detector
from common.media import read_image

DOG = Path("/usr/share/darknet/data/dog.jpg")


@click.command(context_settings={"show_default": True})
@click.option("--model", default="yolov3-tiny")
@click.option("--input-size", type=int, default=416)
@click.option("--frames", type=int, default=30)
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default="cpu")
@click.option("--image", default=None, help="Photo to run on [default: darknet's dog.jpg, else grace_hopper.jpg].")
def main(model, input_size, frames, device, image):
    """Time end-to-end detection (letterbox, forward, decode, NMS) per frame."""
    path = Path(image) if image else DOG if DOG.is_file() else Path(matplotlib.get_data_path()) / "sample_data/grace_hopper.jpg"
    detector = build_detector(model=model, input_size=input_size, device=device)
    frame = read_image(path)
    for _ in range(3):  # warm-up
        detector(frame)
    started = time.perf_counter()
    for _ in range(frames):
        detector(frame)
    if detector.device.type == "cuda":
        torch.cuda.synchronize()
    elapsed = time.perf_counter() - started
    click.echo(f"{model} @ {input_size}px on {detector.device} ({torch.get_num_threads()} threads), {path.name} "
               f"{frame.shape[2]}x{frame.shape[1]}: {frames / elapsed:.1f} frames/s ({1000 * elapsed / frames:.0f} ms/frame)")


if __name__ == "__main__":
    main()
