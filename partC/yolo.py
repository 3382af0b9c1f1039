"""YOLOv3 detection on the Darknet network (partC/darknet_model.py): letterbox → forward (PyTorch, or OpenVINO on
a CPU) → decode the [yolo] heads → class-aware NMS → boxes in the original image's pixels.
"""
import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import List, Optional

import torch
import torch.nn.functional as F
from torch import nn
from torchvision.ops import batched_nms

from common.data import content_digest
from common.errors import UserError
from common.io import is_sealed, seal
from partC.darknet_model import Darknet, YoloHead

@dataclass
class Letterbox:
    scale_x: float
    scale_y: float
    pad_x: float
    pad_y: float


def darknet_letterbox_geometry(w, h, net_w, net_h):
    """Darknet's letterbox (docs/design.md, "Darknet's geometry"): (new_w, new_h, pad_x, pad_y) in whole pixels,
    by integer division. A 1-px different size or offset moves yolov3-tiny's scores by up to 0.28."""
    if net_w * h < net_h * w:  # width limits: new_w = net_w (the comparison w/im.w < h/im.h, without floats)
        new_w, new_h = net_w, max(1, h * net_w // w)
    else:
        new_w, new_h = max(1, w * net_h // h), net_h
    return new_w, new_h, (net_w - new_w) // 2, (net_h - new_h) // 2


def _resize_bilinear(image, height, width):
    """Bilinear resize without antialiasing (cv2.INTER_LINEAR's sampling) → float 1×C×H×W in [0,1]. A uint8 image
    is resized in float, then rounded to 8-bit levels as cv2.resize hands them over: PyTorch's faster uint8 path
    (0.18 levels off on average, against 0.11) moved a yolov3-tiny score on horses.jpg by 0.04."""
    resized = F.interpolate(image[None].float(), size=(height, width), mode="bilinear", align_corners=False)
    return resized.round_().clamp_(0, 255).div_(255) if image.dtype == torch.uint8 else resized


def letterbox(image: torch.Tensor, height, width, mode="letterbox"):
    """uint8/float C×H×W image → float 1×C×height×width in [0,1] and the mapping back. letterbox: the aspect ratio
    kept with Darknet's integer geometry, grey (0.5) padding; stretch: plain resize to height×width."""
    x = image if image.dtype == torch.uint8 else image.float()
    _, h, w = x.shape
    if mode == "stretch":
        return _resize_bilinear(x, height, width), Letterbox(width / w, height / h, 0.0, 0.0)
    if mode != "letterbox":
        raise UserError(f"unknown resize mode {mode!r}; use letterbox or stretch")
    nw, nh, px, py = darknet_letterbox_geometry(w, h, width, height)
    # Darknet's grey, in the channels-last memory the network runs in (saves a copy per frame)
    canvas = torch.empty((1, x.shape[0], height, width), memory_format=torch.channels_last).fill_(0.5)
    canvas[:, :, py:py + nh, px:px + nw] = _resize_bilinear(x, nh, nw)
    return canvas, Letterbox(nw / w, nh / h, float(px), float(py))


def boxes_to_image(boxes_cxcywh: torch.Tensor, lb: Letterbox, image_w, image_h):
    """Network-pixel (cx, cy, w, h) → original-image (x1, y1, x2, y2), clipped to the image."""
    cx, cy, w, h = boxes_cxcywh.unbind(-1)
    x1 = (cx - w / 2 - lb.pad_x) / lb.scale_x
    y1 = (cy - h / 2 - lb.pad_y) / lb.scale_y
    x2 = (cx + w / 2 - lb.pad_x) / lb.scale_x
    y2 = (cy + h / 2 - lb.pad_y) / lb.scale_y
    return torch.stack([x1.clamp(0, image_w), y1.clamp(0, image_h), x2.clamp(0, image_w), y2.clamp(0, image_h)], -1)


def select_detections(decoded: torch.Tensor, conf_threshold=0.25, nms_threshold=0.45, keep_classes=None,
                      max_detections=300):
    """decoded N×(5+C) for one image → (boxes cxcywh K×4, scores K, classes K) after class-aware NMS. Score =
    objectness × class probability; like Darknet, one box may be reported for each class that clears it."""
    # a score never exceeds its objectness (class probabilities are ≤ 1): only rows whose objectness
    # clears the threshold can hold a detection — a few dozen of yolov3-tiny's 2,535
    rows = (decoded[:, 4] > conf_threshold).nonzero(as_tuple=True)[0]
    scores = decoded[rows, 4:5] * decoded[rows, 5:]
    box_idx, cls_idx = (scores > conf_threshold).nonzero(as_tuple=True)
    scores, box_idx = scores[box_idx, cls_idx], rows[box_idx]
    if keep_classes is not None:
        keep = torch.isin(cls_idx, torch.as_tensor(list(keep_classes), device=cls_idx.device))
        box_idx, cls_idx, scores = box_idx[keep], cls_idx[keep], scores[keep]
    boxes = decoded[box_idx, :4]
    corners = torch.cat([boxes[:, :2] - boxes[:, 2:] / 2, boxes[:, :2] + boxes[:, 2:] / 2], 1)
    keep = batched_nms(corners, scores, cls_idx, nms_threshold)[:max_detections]
    return boxes[keep], scores[keep], cls_idx[keep]


@dataclass
class Detection:
    label: str
    class_id: int
    score: float
    box: List[float]  # x1, y1, x2, y2 in original-image pixels

    def to_dict(self):
        # the score unrounded: a report formats it as the console did (0.2950 rounded first printed 0.29, not 0.30)
        return {"label": self.label, "class_id": self.class_id, "score": float(self.score),
                "box": [round(v, 1) for v in self.box]}


class RawHeads(nn.Module):
    """The network's [yolo] inputs as a tuple of tensors: what an exporter can trace and an engine returns."""

    def __init__(self, net: Darknet):
        super().__init__()
        self.net = net

    def forward(self, x):
        return tuple(raw for _, raw in self.net(x))


def openvino_network(model: Darknet, height, width, threads=0, cache_dir=None):
    """The folded network compiled by OpenVINO for this CPU in fp32: a callable input → raw heads. The conversion
    (a trace, seconds) is kept in `cache_dir`, keyed by the weights' bytes and the input size."""
    import openvino as ov

    key = content_digest(*model.state_dict().values(), torch.tensor([height, width]))
    saved = Path(cache_dir or "cache/openvino") / f"darknet-{key}.xml"
    core = ov.Core()
    config = {"PERFORMANCE_HINT": "LATENCY", "NUM_STREAMS": 1, "INFERENCE_PRECISION_HINT": "f32"}
    if threads:
        config["INFERENCE_NUM_THREADS"] = threads
    compiled = None
    if is_sealed(model_files(saved), saved.with_suffix(".sha256")):  # flipped bits would silently give other boxes
        try:
            compiled = core.compile_model(core.read_model(str(saved)), "CPU", config)
        except RuntimeError:  # intact bytes OpenVINO cannot read (another OpenVINO's format): converted again
            compiled = None
    elif saved.exists():
        warnings.warn(f"cached OpenVINO model {saved} does not match its digest (damaged); converting it again")
    if compiled is None:  # not converted yet, or a damaged copy: convert, then keep it (with its digest)
        with warnings.catch_warnings():  # the trace's warnings are about shapes, which are fixed here
            warnings.simplefilter("ignore")
            ov_model = ov.convert_model(RawHeads(model).eval(), example_input=torch.zeros(1, 3, height, width))
        _save_atomically(ov, ov_model, saved)
        compiled = core.compile_model(ov_model, "CPU", config)
    request = compiled.create_infer_request()

    def run(x):
        result = request.infer([x.contiguous().numpy()])
        return [torch.from_numpy(result[output]) for output in compiled.outputs]

    return run


def model_files(xml_path):
    return [xml_path, xml_path.with_suffix(".bin")]


def _save_atomically(ov, ov_model, path):
    """OpenVINO writes .xml + .bin: write both under a temporary name, rename them (.bin first), then their digest.
    fp32 as converted: save_model's default fp16 compression would make every cached start answer differently
    from the first."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.{os.getpid()}.tmp.xml")
    ov.save_model(ov_model, str(tmp), compress_to_fp16=False)
    os.replace(tmp.with_suffix(".bin"), path.with_suffix(".bin"))
    os.replace(tmp, path)
    seal(model_files(path), path.with_suffix(".sha256"))


ENGINES = ("auto", "torch", "openvino")


def preloaded_allocator():
    """A malloc replacement in LD_PRELOAD (tcmalloc, jemalloc), or None: OpenVINO, which frees with glibc's, crashes."""
    return next((lib for lib in os.environ.get("LD_PRELOAD", "").split() if "malloc" in lib), None)


def resolve_engine(engine, device):
    """auto: OpenVINO on a CPU when it is installed (`make setup` installs it) and can run, else PyTorch."""
    if engine == "auto":
        if device.type != "cpu" or preloaded_allocator():
            return "torch"
        try:
            import openvino  # noqa: F401
        except ImportError:
            return "torch"
        return "openvino"
    if engine == "openvino" and device.type != "cpu":
        raise UserError("--engine openvino runs on the CPU; use --device cpu, or --engine torch on a GPU")
    if engine == "openvino" and preloaded_allocator():
        raise UserError(f"OpenVINO crashes beside a preloaded allocator ({preloaded_allocator()}); unset LD_PRELOAD, "
                        f"or use --engine torch")
    return engine


def parse_classes(text: Optional[str], valid) -> List[str]:
    """Comma-separated class names, each checked against `valid` (the model's)."""
    if text is None:
        return []
    names = [c.strip() for c in text.split(",") if c.strip()]
    unknown = [c for c in names if c not in valid]
    if unknown:
        raise UserError(f"unknown class name(s) {unknown}; choose from: {', '.join(valid)}")
    return names


class Detector:
    """A Darknet model (`build_detector` folds it for inference first), kept channels_last (faster in oneDNN and
    cuDNN). A call runs three stages that `bench/bench_detect.py` times separately: preprocess, forward, postprocess."""

    def __init__(self, model: Darknet, names, input_size=None, conf_threshold=0.25, nms_threshold=0.45,
                 resize="letterbox", keep_classes=None, device="cpu", engine="torch", threads=0, cache_dir=None):
        if len(names) != model.num_classes:
            raise UserError(f"{len(names)} class names for a model with {model.num_classes} classes")
        self.model = model.eval().to(device, memory_format=torch.channels_last)
        self.names = list(names)
        self.height = self.width = input_size or model.height
        self.conf_threshold, self.nms_threshold, self.resize = conf_threshold, nms_threshold, resize
        self.device = torch.device(device)
        self.keep_classes = [self.names.index(c) for c in parse_classes(keep_classes, self.names)] or None
        self.engine = resolve_engine(engine, self.device)
        self.heads = [layer for layer in model.layers if isinstance(layer, YoloHead)]
        if self.engine == "openvino":
            self.network = openvino_network(self.model, self.height, self.width, threads, cache_dir)
        else:
            self.network = lambda x: [raw for _, raw in self.model(x)]

    def preprocess(self, image: torch.Tensor):
        """uint8 RGB C×H×W → (network input on the device, mapping back to the image)."""
        x, lb = letterbox(image, self.height, self.width, self.resize)
        return x.to(self.device, non_blocking=True).contiguous(memory_format=torch.channels_last), lb

    @torch.inference_mode()
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Network input → decoded rows N×(5+C) for the one image, on the CPU."""
        raws = zip(self.heads, self.network(x))
        return torch.cat([head.decode(raw, self.height, self.width) for head, raw in raws], 1)[0].cpu()

    def postprocess(self, decoded: torch.Tensor, lb: Letterbox, image_w, image_h) -> List[Detection]:
        boxes, scores, classes = select_detections(decoded, self.conf_threshold, self.nms_threshold, self.keep_classes)
        corners = boxes_to_image(boxes, lb, image_w, image_h)
        order = scores.argsort(descending=True)
        return [Detection(self.names[int(classes[i])], int(classes[i]), float(scores[i]), corners[i].tolist())
                for i in order]

    def __call__(self, image: torch.Tensor) -> List[Detection]:
        """Detect objects in a uint8 RGB C×H×W image."""
        _, h, w = image.shape
        x, lb = self.preprocess(image)
        return self.postprocess(self.forward(x), lb, w, h)
