"""Build a ready YOLO detector from options (the Part C scripts' shared flags are common.cli.DETECT_OPTIONS)."""
from common.darknet_files import read_names, yolo_files
from common.errors import UserError
from common.yolo import Detector, load_cfg, load_darknet_weights


def build_detector(model="yolov3-tiny", cfg=None, weights=None, names=None, input_size=None, conf=0.25, nms=0.45,
                   classes=None, device="auto", resize="letterbox", weights_cache=None, precision="fp32", threads=0):
    """A Detector for a registered model, or for your own --cfg/--weights/--names files."""
    from common.cpu_threads import set_inference_threads
    from common.device import resolve_device

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
    net = load_cfg(cfg)
    load_darknet_weights(net, weights)
    net.fold_for_inference(PRECISION_DTYPES[precision])
    keep = [c.strip() for c in classes.split(",") if c.strip()] if isinstance(classes, str) else classes
    return Detector(net, read_names(names), input_size, conf, nms, resize, keep, device, fold=False)


# bf16 is ~2x faster on CPUs with AVX-512-BF16/AMX and on sm80+ GPUs, but it moved yolov3-tiny's
# scores by up to 0.07 on Debian's darknet photos (fp32 stays within 0.02 of OpenCV's importer).
PRECISION_DTYPES = {"fp32": None, "bf16": "bfloat16"}
