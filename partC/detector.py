"""Build a ready YOLO detector from options, and the Part C scripts' shared flags (DETECT_OPTIONS)."""
from pathlib import Path

import click

from common.cli import DEVICE_OPTION, stack_options
from common.device import resolve_device
from partC.cpu_threads import set_inference_threads
from partC.darknet_files import WEIGHTS_CACHE, YOLO_REGISTRY, read_names, yolo_files
from common.errors import UserError
from partC.darknet_model import load_cfg, load_darknet_weights
from partC.yolo import ENGINES, Detector


def build_detector(model="yolov3-tiny", cfg=None, weights=None, names=None, input_size=None, conf=0.25, nms=0.45,
                   classes=None, device="auto", resize="letterbox", weights_cache=None, precision="fp32", threads=0,
                   engine="auto"):
    """A Detector for a registered model, or for your own --cfg/--weights/--names files."""
    set_inference_threads(threads)
    if input_size is not None and (input_size <= 0 or input_size % 32):
        raise UserError(f"--input-size must be a positive multiple of 32 (e.g. 416), got {input_size}")

    if (cfg is None) != (weights is None):
        raise UserError("give both --cfg and --weights for a custom model, or neither")
    if cfg is None:
        cfg, weights, default_names = yolo_files(model, weights_cache)
        names = names or default_names
    elif names is None:
        raise UserError("a custom --cfg/--weights model needs --names (one class name per line)")
    if not 0 < conf < 1 or not 0 < nms <= 1:
        raise UserError(f"--conf must be in (0, 1) and --nms in (0, 1], got {conf} and {nms}")
    device = resolve_device(device)
    net = load_cfg(cfg, weights)
    load_darknet_weights(net, weights)
    net.fold_for_inference(PRECISION_DTYPES[precision])
    if precision != "fp32" and engine == "openvino":
        raise UserError("--engine openvino runs fp32; use --precision fp32, or --engine torch for bf16")
    if precision != "fp32":
        engine = "torch"  # bf16 is PyTorch's
    cache = Path(weights_cache or WEIGHTS_CACHE).parent / "openvino"
    return Detector(net, read_names(names), input_size, conf, nms, resize, classes, device, engine=engine,
                    threads=threads, cache_dir=cache)


# fp32 by default: bf16 moved yolov3-tiny's scores by up to 0.07 (fp32 stays within 0.02 of OpenCV's importer)
PRECISION_DTYPES = {"fp32": None, "bf16": "bfloat16"}


DETECT_OPTIONS = stack_options([
    click.option("--model", type=click.Choice(list(YOLO_REGISTRY)), default="yolov3-tiny",
                 help="Registered Darknet model (weights fetched and sha256-verified into cache/weights)."),
    click.option("--cfg", default=None, help="Your own Darknet cfg (with --weights and --names)."),
    click.option("--weights", default=None, help="Your own .weights file."),
    click.option("--names", default=None, help="Class names file (one per line)."),
    click.option("--input-size", type=int, default=None, help="Network input (multiple of 32) [default: the cfg's]."),
    click.option("--conf", type=float, default=0.25, help="Score threshold (objectness x class probability)."),
    click.option("--nms", type=float, default=0.45, help="IoU threshold of class-aware NMS."),
    click.option("--classes", default=None, help="Comma-separated class names to keep, e.g. person,bird,dog."),
    DEVICE_OPTION,
    click.option("--resize", type=click.Choice(["letterbox", "stretch"]), default="letterbox",
                 help="letterbox keeps the aspect ratio (grey bars, Darknet's integer geometry); stretch resizes plainly."),
    click.option("--precision", type=click.Choice(list(PRECISION_DTYPES)), default="fp32",
                 help="bf16: ~2x faster where the hardware has it, scores move by up to ~0.07."),
    click.option("--threads", type=int, default=0, help="CPU threads for inference (0: one per core)."),
    click.option("--engine", type=click.Choice(ENGINES), default="auto",
                 help="auto: OpenVINO on a CPU when installed (fastest measured), else PyTorch."),
])
