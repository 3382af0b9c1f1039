"""YOLOv3 in PyTorch from Darknet files: cfg parser, model, `.weights` reader/writer, detection.

Supported cfg sections: [net], [convolutional], [maxpool] (including size 2 / stride 1, which
pads right and bottom), [upsample], [route], [shortcut], [yolo] — what yolov3.cfg and
yolov3-tiny.cfg use. Anything else is a clear error naming the section.

Detection: letterbox (or stretch) to the network size → forward → decode every [yolo] head
(sigmoid offsets + grid, exp(size)·anchor, objectness × class probability) → class-aware NMS
(torchvision.ops.batched_nms) → boxes mapped back to the original image's pixels.
"""
import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import List

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torchvision.ops import batched_nms

from common.data import content_digest
from common.errors import UserError
from common.io import is_sealed, seal

SUPPORTED = {"net", "convolutional", "maxpool", "upsample", "route", "shortcut", "yolo"}


def parse_cfg(text: str, source="cfg"):
    """Darknet cfg text → list of {"type": section, option: value-string}."""
    sections = []
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.split("#", 1)[0].split(";", 1)[0].strip()
        if not line:
            continue
        if line.startswith("["):
            if not line.endswith("]"):
                raise UserError(f"{source}:{number}: malformed section header {raw.strip()!r}")
            sections.append({"type": line[1:-1].strip(), "_line": number})
        elif "=" in line:
            if not sections:
                raise UserError(f"{source}:{number}: option outside any section")
            key, value = line.split("=", 1)
            sections[-1][key.strip()] = value.strip()
        else:
            raise UserError(f"{source}:{number}: cannot parse {raw.strip()!r}")
    if not sections or sections[0]["type"] not in ("net", "network"):
        raise UserError(f"{source}: the first section must be [net]")
    for s in sections[1:]:
        if s["type"] not in SUPPORTED:
            raise UserError(f"{source}:{s['_line']}: section [{s['type']}] is not supported "
                            f"(supported: {', '.join(sorted(SUPPORTED - {'net'}))})")
    return sections


def _ints(value):
    return [int(v) for v in value.split(",") if v.strip()]


class MaxPoolDarknet(nn.Module):
    """Darknet max-pool: total padding size-1, split left/top = (size-1)//2, rest right/bottom.

    Darknet's output side is (w - 1) // stride + 1. When size == stride (yolov3-tiny's 2/2
    pools) the padding only ever adds a right/bottom partial window, which `ceil_mode` gives
    without copying the input into a padded tensor.
    """

    def __init__(self, size, stride):
        super().__init__()
        self.size, self.stride = size, stride
        total = size - 1
        self.pad = (total // 2, total - total // 2, total // 2, total - total // 2)

    def forward(self, x):
        if self.size == self.stride:
            return F.max_pool2d(x, self.size, self.stride, ceil_mode=True)
        if any(self.pad):
            x = F.pad(x, self.pad, value=float("-inf"))  # padded cells never win the max
        return F.max_pool2d(x, self.size, self.stride)


class Upsample(nn.Module):
    def __init__(self, stride):
        super().__init__()
        self.stride = stride

    def forward(self, x):
        return F.interpolate(x, scale_factor=self.stride, mode="nearest")


class Route(nn.Module):
    def __init__(self, layers):
        super().__init__()
        self.layers = layers  # absolute indices


class Shortcut(nn.Module):
    def __init__(self, source, activation):
        super().__init__()
        self.source = source
        self.activation = activation


class YoloHead(nn.Module):
    def __init__(self, anchors, num_classes):
        super().__init__()
        self.register_buffer("anchors", torch.tensor(anchors, dtype=torch.float32))  # A×2, network pixels
        self.num_classes = num_classes
        self._grids = {}  # (h, w, device) → cell indices: a cache, not state

    def decode(self, raw, net_h, net_w):
        """raw B×A(5+C)×H×W → B×(H·W·A)×(4+1+C): cx, cy, w, h (network pixels), obj, class probs.

        Rows run over cells, then anchors: the order in which a channels-last raw output already
        lies in memory, so every pass below reads it contiguously (the rows' order does not matter
        downstream: detections are ranked by score). Written as few whole-tensor passes (one sigmoid
        into the output, in-place fixes of the box columns): at 13×13 and 26×26 the cost is per
        operation, not per element."""
        b, _, h, w = raw.shape
        a = self.anchors.shape[0]
        # no copy when raw is channels-last (as the network's output is)
        p = raw.permute(0, 2, 3, 1).float().contiguous().view(b, h, w, a, 5 + self.num_classes)
        out = torch.sigmoid(p)
        gx, gy = self._grid(h, w, raw.device)
        out[..., 0].add_(gx).mul_(net_w / w)
        out[..., 1].add_(gy).mul_(net_h / h)
        torch.mul(p[..., 2:4].exp(), self.anchors, out=out[..., 2:4])
        return out.view(b, h * w * a, 5 + self.num_classes)

    def _grid(self, h, w, device):
        """Cell column and row indices, H×W×1 each (cached per size: they are constants)."""
        key = (h, w, str(device))
        if key not in self._grids:
            gy, gx = torch.meshgrid(torch.arange(h, device=device, dtype=torch.float32),
                                    torch.arange(w, device=device, dtype=torch.float32), indexing="ij")
            self._grids[key] = (gx[..., None], gy[..., None])
        return self._grids[key]


def _conv_block(section, in_channels):
    bn = int(section.get("batch_normalize", 0))
    filters, size = int(section["filters"]), int(section["size"])
    stride, pad = int(section.get("stride", 1)), int(section.get("pad", 0))
    padding = (size - 1) // 2 if pad else int(section.get("padding", 0))
    activation = section.get("activation", "linear")
    if activation not in ("leaky", "linear"):
        raise UserError(f"cfg line {section['_line']}: activation {activation!r} is not supported (leaky, linear)")
    layers = [nn.Conv2d(in_channels, filters, size, stride, padding, bias=not bn)]
    if bn:
        layers.append(nn.BatchNorm2d(filters, eps=1e-5, momentum=0.01))
    if activation == "leaky":
        layers.append(nn.LeakyReLU(0.1, inplace=True))
    return nn.Sequential(*layers), filters


class InferenceConv(nn.Module):
    """A conv block folded for inference: batch norm inside the weights (`fuse_conv_bn_eval`), then
    the leaky ReLU in place. Outputs equal the unfolded block's to float rounding (tested).

    Why nothing more: measured side by side (yolov3-tiny, 416 px, docs/measurements.md "Detector speed"), folding
    batch norm is what pays (eager torch with it is ~1.6x faster than without); hand-written Winograd
    kernels and a per-layer timed choice bought 2-5 %, inside the noise, on private torch ops.
    """

    def __init__(self, block: nn.Sequential, dtype=torch.float32):
        super().__init__()
        self.dtype = dtype
        conv = block[0]
        bn = block[1] if len(block) > 1 and isinstance(block[1], nn.BatchNorm2d) else None
        if bn is not None:
            conv = torch.nn.utils.fusion.fuse_conv_bn_eval(conv.eval(), bn.eval())
        self.leaky = isinstance(block[-1], nn.LeakyReLU)
        self.stride, self.padding = list(conv.stride), list(conv.padding)
        self.register_buffer("weight", conv.weight.detach().to(dtype).clone())
        self.register_buffer("bias", conv.bias.detach().to(dtype).clone())

    def forward(self, x):
        x = F.conv2d(x.to(self.dtype), self.weight, self.bias, self.stride, self.padding)
        return F.leaky_relu(x, 0.1, inplace=True) if self.leaky else x


class Darknet(nn.Module):
    """A network built from a parsed cfg; forward returns the raw output of every [yolo] head."""

    def __init__(self, sections):
        super().__init__()
        net = sections[0]
        self.height, self.width = int(net.get("height", 416)), int(net.get("width", 416))
        self.channels = int(net.get("channels", 3))
        self.sections = sections[1:]
        self.layers = nn.ModuleList()
        channels: List[int] = []
        in_channels = self.channels
        for index, s in enumerate(self.sections):
            try:
                layer, out = self._layer(s, index, in_channels, channels)
            except (ValueError, KeyError, IndexError) as err:
                problem = f"needs {err}" if isinstance(err, KeyError) else str(err)
                raise UserError(f"cfg line {s.get('_line', '?')}: [{s['type']}] {problem}") from None
            self.layers.append(layer)
            channels.append(out)
            in_channels = out
        self.num_classes = next((layer.num_classes for layer in self.layers if isinstance(layer, YoloHead)), 0)

    @staticmethod
    def _layer(s, index, in_channels, channels):
        """(module, output channels) of one cfg section."""
        kind = s["type"]
        if kind == "convolutional":
            return _conv_block(s, in_channels)
        if kind == "maxpool":
            return MaxPoolDarknet(int(s["size"]), int(s.get("stride", 1))), in_channels
        if kind == "upsample":
            return Upsample(int(s.get("stride", 2))), in_channels
        if kind == "route":
            refs = [r if r >= 0 else index + r for r in _ints(s["layers"])]
            if any(r < 0 or r >= index for r in refs):
                raise ValueError("route refers to a layer that does not exist yet")
            return Route(refs), sum(channels[r] for r in refs)
        if kind == "shortcut":
            source = int(s["from"])
            return Shortcut(source if source >= 0 else index + source, s.get("activation", "linear")), in_channels
        mask = _ints(s.get("mask", ""))  # yolo
        anchors = _ints(s["anchors"])
        pairs = [(anchors[2 * i], anchors[2 * i + 1]) for i in range(len(anchors) // 2)]
        pairs = [pairs[m] for m in mask] if mask else pairs
        return YoloHead(pairs, int(s["classes"])), in_channels

    def conv_layers(self):
        if any(isinstance(layer, InferenceConv) for layer in self.layers):
            raise UserError("this Darknet model was folded for inference; load or save weights before "
                            "fold_for_inference()")
        return [layer for layer in self.layers if isinstance(layer, nn.Sequential)]

    def fold_for_inference(self, dtype=None):
        """Replace every conv block by its folded InferenceConv (irreversible; eval only). Returns self.

        `dtype` (torch.bfloat16 or its name; default float32) is what the convolutions compute in."""
        dtype = getattr(torch, dtype) if isinstance(dtype, str) else (dtype or torch.float32)
        self.eval()
        for i, layer in enumerate(self.layers):
            if isinstance(layer, nn.Sequential):
                self.layers[i] = InferenceConv(layer, dtype)
        return self

    def forward(self, x):
        outputs, heads = [], []
        for layer in self.layers:
            if isinstance(layer, Route):
                x = torch.cat([outputs[r] for r in layer.layers], 1)
            elif isinstance(layer, Shortcut):
                x = x + outputs[layer.source]
            elif isinstance(layer, YoloHead):
                heads.append((layer, x))
            else:
                x = layer(x)
            outputs.append(x)
        return heads

    def decode(self, heads, net_h, net_w):
        return torch.cat([head.decode(raw, net_h, net_w) for head, raw in heads], 1)


MAX_CFG_FLOATS = 500_000_000  # yolov3 needs 62 million; a cfg asking for more is damaged or not a detector


def load_cfg(path, weights=None) -> Darknet:
    """The network a cfg describes. It is first built on torch's meta device (shapes, no memory) and its size
    checked — against `weights` when given (a .weights file must hold exactly the floats it needs) — so a
    damaged cfg (`filters=2000000000`) is one clear line, not a 216 GB allocation."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"cfg file {path} does not exist")
    sections = parse_cfg(path.read_text(), source=path.name)
    with torch.device("meta"):
        needed = expected_floats(Darknet(sections))
    if weights is not None and Path(weights).is_file():
        held = weights_file_floats(weights)
        if held != needed:
            raise UserError(f"{Path(weights).name} holds {held:,} floats but {path.name} needs {needed:,}: weights and "
                            f"cfg do not belong together (or one of them is damaged)")
    elif needed > MAX_CFG_FLOATS:
        raise UserError(f"{path.name} asks for {needed:,} weights (yolov3 has 62 million): the cfg is damaged")
    return Darknet(sections)


# ------------------------------------------------------------------------ .weights files

def _conv_tensors(block):
    """The tensors of one conv block in Darknet's file order."""
    conv = block[0]
    if len(block) > 1 and isinstance(block[1], nn.BatchNorm2d):
        bn = block[1]
        return [bn.bias, bn.weight, bn.running_mean, bn.running_var, conv.weight]
    return [conv.bias, conv.weight]


def expected_floats(model: Darknet) -> int:
    return sum(t.numel() for block in model.conv_layers() for t in _conv_tensors(block))


def _weights_header(handle, path):
    """Read a .weights header; returns (major, minor). `seen` is int64 from version 0.2 on, int32 before."""
    header = np.frombuffer(handle.read(12), dtype=np.int32)
    if header.size != 3:
        raise UserError(f"{path} is too short to be a Darknet weights file")
    major, minor, _ = (int(v) for v in header)
    handle.read(8 if major * 10 + minor >= 2 else 4)
    return major, minor


def weights_file_floats(path) -> int:
    """How many float32 values a .weights file holds after its header (without reading them)."""
    with open(path, "rb") as handle:
        _weights_header(handle, path)
        return (Path(path).stat().st_size - handle.tell()) // 4


def load_darknet_weights(model: Darknet, path):
    """Fill `model` from a `.weights` file; the file must hold exactly the floats the cfg needs."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"weights file {path} does not exist")
    with open(path, "rb") as handle:
        major, minor = _weights_header(handle, path)
        values = np.frombuffer(handle.read(), dtype=np.float32)
    needed = expected_floats(model)
    if values.size != needed:
        raise UserError(f"{path.name} holds {values.size:,} floats but the cfg needs {needed:,}: weights and cfg "
                        f"do not belong together (or the file is truncated)")
    offset = 0
    with torch.no_grad():
        for block in model.conv_layers():
            for tensor in _conv_tensors(block):
                n = tensor.numel()
                tensor.copy_(torch.from_numpy(values[offset:offset + n].copy()).view_as(tensor))
                offset += n
    return {"major": major, "minor": minor, "floats": needed}


def save_darknet_weights(model: Darknet, path, version=(0, 2, 0), seen=0):
    with open(path, "wb") as handle:
        np.array(version, dtype=np.int32).tofile(handle)
        np.array([seen], dtype=np.int64 if version[0] * 10 + version[1] >= 2 else np.int32).tofile(handle)
        for block in model.conv_layers():
            for tensor in _conv_tensors(block):
                tensor.detach().cpu().numpy().astype(np.float32).tofile(handle)


# ------------------------------------------------------------------------------ detection

@dataclass
class Letterbox:
    scale_x: float
    scale_y: float
    pad_x: float
    pad_y: float


def darknet_letterbox_geometry(w, h, net_w, net_h):
    """Darknet's letterbox: (new_w, new_h, pad_x, pad_y) in whole pixels, by integer division.

    As in darknet's `letterbox_image`: the side that limits the scale becomes the network's
    size and the other is `old * net // limiting side` (floor, not round); the offset is
    `(net - new) // 2`. A 1-px different size or offset moves yolov3-tiny's scores by up to 0.28.
    """
    if net_w * h < net_h * w:  # width limits: new_w = net_w (the comparison w/im.w < h/im.h, without floats)
        new_w, new_h = net_w, max(1, h * net_w // w)
    else:
        new_w, new_h = max(1, w * net_h // h), net_h
    return new_w, new_h, (net_w - new_w) // 2, (net_h - new_h) // 2


def _resize_bilinear(image, height, width):
    """Bilinear resize without antialiasing (cv2.INTER_LINEAR's sampling) → float 1×C×H×W in [0,1].

    Resized in float, then rounded to 8-bit levels, as cv2.resize hands the network: this stays
    within 1 level of OpenCV (mean 0.11). PyTorch's faster uint8 path (mean 0.18 levels off) moved
    a yolov3-tiny score on horses.jpg by 0.04 — the network is that sensitive to its input.
    """
    if image.dtype == torch.uint8:
        resized = F.interpolate(image[None].float(), size=(height, width), mode="bilinear", align_corners=False)
        return resized.round_().clamp_(0, 255).div_(255)
    return F.interpolate(image[None].float(), size=(height, width), mode="bilinear", align_corners=False)


def letterbox(image: torch.Tensor, height, width, mode="letterbox"):
    """uint8/float C×H×W image → float 1×C×height×width in [0,1] and the mapping back.

    letterbox: keep the aspect ratio with Darknet's integer geometry, pad with grey (0.5);
    stretch: plain resize to height×width.
    """
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
    """decoded N×(5+C) for one image → (boxes cxcywh K×4, scores K, classes K) after class-aware NMS.

    Score = objectness × class probability. Like Darknet, one box may be reported for several
    classes when each clears the threshold.
    """
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
    """The folded network compiled by OpenVINO for this CPU in fp32: a callable input → raw heads.

    Measured the fastest CPU engine for this network (docs/measurements.md, "Detector speed"). Converting it
    (a trace) takes seconds, so the converted model is kept in `cache_dir` keyed by the weights' bytes and
    the input size; later starts read it."""
    import openvino as ov

    key = content_digest(*model.state_dict().values(), torch.tensor([height, width]))
    saved = Path(cache_dir or "cache/openvino") / f"darknet-{key}.xml"
    core = ov.Core()
    config = {"PERFORMANCE_HINT": "LATENCY", "NUM_STREAMS": 1, "INFERENCE_PRECISION_HINT": "f32"}
    if threads:
        config["INFERENCE_NUM_THREADS"] = threads
    compiled = None
    if cached_model_intact(saved):
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


def cached_model_intact(xml_path):
    """Do the cached .xml + .bin still hold what was written? (Their digest is stored beside them, written last.)
    Flipped bits in the weights would otherwise run silently and give other boxes."""
    return is_sealed(model_files(xml_path), xml_path.with_suffix(".sha256"))


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
    """A malloc replacement in LD_PRELOAD (tcmalloc, jemalloc), or None. OpenVINO's CPU plugin frees memory with
    glibc's allocator (its libraries bind their own symbols), so with a preloaded one it crashes ('munmap_chunk():
    invalid pointer' — measured with tcmalloc, which `make` preloads for training)."""
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


class Detector:
    """A loaded Darknet model plus class names and the detection settings.

    The model is folded for inference (batch norm into the convolutions) and kept channels_last, which oneDNN
    and cuDNN both run faster; on a CPU with OpenVINO installed, OpenVINO runs that folded network. A call
    runs three stages that `bench/bench_detect.py` times separately: `preprocess`, `forward`, `postprocess`.
    """

    def __init__(self, model: Darknet, names, input_size=None, conf_threshold=0.25, nms_threshold=0.45,
                 resize="letterbox", keep_classes=None, device="cpu", fold=True, engine="torch", threads=0,
                 cache_dir=None):
        if len(names) != model.num_classes:
            raise UserError(f"{len(names)} class names for a model with {model.num_classes} classes")
        if input_size is not None and (input_size <= 0 or input_size % 32):
            raise UserError(f"--input-size must be a positive multiple of 32, got {input_size}")
        if fold:
            model.fold_for_inference()
        self.model = model.eval().to(device, memory_format=torch.channels_last)
        self.names = list(names)
        self.height = self.width = input_size or model.height
        self.conf_threshold, self.nms_threshold, self.resize = conf_threshold, nms_threshold, resize
        self.device = torch.device(device)
        self.keep_classes = None
        if keep_classes:
            unknown = [c for c in keep_classes if c not in self.names]
            if unknown:
                raise UserError(f"unknown class name(s) {unknown}; valid names are the model's: {', '.join(self.names)}")
            self.keep_classes = [self.names.index(c) for c in keep_classes]
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
        return self.model.decode(list(zip(self.heads, self.network(x))), self.height, self.width)[0].cpu()

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
