"""`make bench-engines`: the detector's network on CPU inference engines, side by side.

    python bench/detector_engines.py --model yolov3-tiny --threads 1
    python bench/detector_engines.py --model yolov3 --threads 2 --rounds 5

Engines not installed here (onnxruntime: `pip install onnx onnxruntime`; OpenCV: `pip install -e .[opencv]`) are
listed and skipped. Method and results: docs/measurements.md, "Detector speed".
"""
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import common  # noqa: E402,F401 (first: without the project's environment it says how to start)

from partC.cpu_threads import prefer_passive_openmp

prefer_passive_openmp()  # before torch loads OpenMP

import click
import numpy as np
import torch

from bench import opencv_reference
from common.cli import OneLineErrors
from partC.darknet_files import DARKNET_SHARE, YOLO_REGISTRY, yolo_files
from partC.darknet_model import load_cfg, load_darknet_weights, save_darknet_weights
from partC.yolo import RawHeads, openvino_network


def network_files(model, workdir):
    """(cfg, weights): the verified registry files; for yolov3 offline, its cfg with random weights."""
    try:
        cfg, weights, _ = yolo_files(model, offline_only=model != "yolov3-tiny")
        return cfg, weights
    except Exception:  # no offline copy of yolov3.weights: random weights of the right shapes
        cfg = DARKNET_SHARE / "cfg" / YOLO_REGISTRY[model]["cfg"]
        torch.manual_seed(0)
        net = load_cfg(cfg)
        for block in net.conv_layers():
            torch.nn.init.normal_(block[0].weight, std=0.02)
        weights = Path(workdir) / f"{model}-random.weights"
        save_darknet_weights(net, weights)
        return cfg, weights


def torch_engines(cfg, weights):
    """name → callable(x) for the PyTorch engines, plus the folded module for exporting."""
    eager, folded = load_cfg(cfg, weights), load_cfg(cfg, weights)
    for net in (eager, folded):
        load_darknet_weights(net, weights)
    folded.fold_for_inference().to(memory_format=torch.channels_last)
    ours, plain = RawHeads(folded).eval(), RawHeads(eager).eval()
    engines = {"pytorch": lambda x: ours(x.contiguous(memory_format=torch.channels_last)), "eager": plain}
    compiled = torch.compile(ours)
    engines["torch.compile"] = lambda x: compiled(x.contiguous(memory_format=torch.channels_last))
    return engines, ours


def other_engines(module, cfg, weights, size, threads, workdir):
    """OpenVINO (Part C's own conversion), ONNX Runtime (on an ONNX export) and OpenCV's own importer (set up as
    the detection reference sets it up, its network alone): those that are installed."""
    engines, missing = {}, []
    try:
        engines["openvino"] = openvino_network(module.net, size, size, threads, cache_dir=workdir)
    except ImportError:
        missing.append("openvino")
    try:
        import onnxruntime as ort

        path = Path(workdir) / "net.onnx"
        torch.onnx.export(module, torch.rand(1, 3, size, size), str(path), dynamo=False, opset_version=17)
        options = ort.SessionOptions()
        options.intra_op_num_threads, options.inter_op_num_threads = threads, 1
        session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        name = session.get_inputs()[0].name
        engines["onnxruntime"] = lambda x: session.run(None, {name: x.numpy()})
    except ImportError:
        missing.append("onnxruntime (with onnx)")
    if not opencv_reference.available():
        return engines, missing + ["opencv"]
    reference = opencv_reference.OpenCVDetector(cfg, weights, [], threads=threads)

    def run_opencv(x):
        reference.net.setInput(x.numpy())
        return reference.net.forward(reference.outputs)

    return {**engines, "opencv": run_opencv}, missing


def timed_rounds(engines, x, frames, rounds):
    """{engine: [median seconds of each round]}; the engines take turns, the first mover rotating."""
    names = list(engines)
    for name in names:  # warm-up: caches, compilation, first-call allocation
        for _ in range(3):
            engines[name](x)
    medians = {name: [] for name in names}
    for r in range(rounds):
        for name in names[r % len(names):] + names[:r % len(names)]:
            times = []
            for _ in range(frames):
                started = time.perf_counter()
                engines[name](x)
                times.append(time.perf_counter() - started)
            medians[name].append(float(np.median(times)))
    return medians


@click.command(cls=OneLineErrors, context_settings={"show_default": True})
@click.option("--model", type=click.Choice(list(YOLO_REGISTRY)), default="yolov3-tiny")
@click.option("--threads", type=int, default=1)
@click.option("--size", type=int, default=416)
@click.option("--frames", type=int, default=10, help="Frames per engine per round.")
@click.option("--rounds", type=int, default=5)
def main(model, threads, size, frames, rounds):
    """Time the detector network on every CPU engine installed here."""
    torch.set_num_threads(threads)
    with tempfile.TemporaryDirectory() as workdir, torch.inference_mode():
        cfg, weights = network_files(model, workdir)
        engines, ours = torch_engines(cfg, weights)
        with torch.inference_mode(False):
            exported, missing = other_engines(ours, cfg, weights, size, threads, workdir)
        engines.update(exported)
        x = torch.rand(1, 3, size, size)
        medians = timed_rounds(engines, x, frames, rounds)
    default = "openvino" if "openvino" in medians else "pytorch"
    base = np.array(medians[default])
    click.echo(f"{model} @ {size}px, {threads} thread(s), {rounds} rounds x {frames} frames"
               f"{'; not installed: ' + ', '.join(missing) if missing else ''}")
    click.echo(f"| engine | median ms | ratio to {default}, Part C's default (rounds' range) |\n|---|---|---|")
    for name, values in medians.items():
        ratios = np.array(values) / base
        click.echo(f"| {name} | {1000 * np.median(values):.1f} | {np.median(ratios):.2f} "
                   f"({ratios.min():.2f}-{ratios.max():.2f}) |")


if __name__ == "__main__":
    main()
