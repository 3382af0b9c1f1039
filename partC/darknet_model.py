"""The Darknet network in PyTorch, from Darknet's own files: the cfg parser, its layers, and the `.weights`
reader and writer (the sections supported: docs/design.md, "Part C in detail").
"""
from pathlib import Path
from typing import List

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from common.errors import UserError

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
    """Darknet max-pool: total padding size-1, split left/top = (size-1)//2, rest right/bottom. When size ==
    stride (yolov3-tiny's 2/2 pools) that padding only adds a partial window, which `ceil_mode` gives uncopied."""

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


class Route(nn.Module):
    def __init__(self, layers):
        super().__init__()
        self.layers = layers  # absolute indices


class Shortcut(nn.Module):
    def __init__(self, source):
        super().__init__()
        self.source = source


class YoloHead(nn.Module):
    def __init__(self, anchors, num_classes):
        super().__init__()
        self.register_buffer("anchors", torch.tensor(anchors, dtype=torch.float32))  # A×2, network pixels
        self.num_classes = num_classes
        self._grids = {}  # (h, w, device) → cell indices: a cache, not state

    def decode(self, raw, net_h, net_w):
        """raw B×A(5+C)×H×W → B×(H·W·A)×(4+1+C): cx, cy, w, h (network pixels), obj, class probs. Rows run over
        cells, then anchors: a channels-last output's memory order (detections are ranked by score later)."""
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
    """A conv block with its batch norm folded into the weights (`fuse_conv_bn_eval`): outputs equal the unfolded
    block's to float rounding (tested). Why nothing more: docs/measurements.md, "Detector speed"."""

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
        self.layers = nn.ModuleList()
        channels: List[int] = []
        in_channels = int(net.get("channels", 3))
        for index, s in enumerate(sections[1:]):
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
            return nn.Upsample(scale_factor=int(s.get("stride", 2)), mode="nearest"), in_channels
        if kind == "route":
            refs = [r if r >= 0 else index + r for r in _ints(s["layers"])]
            if any(r < 0 or r >= index for r in refs):
                raise ValueError("route refers to a layer that does not exist yet")
            return Route(refs), sum(channels[r] for r in refs)
        if kind == "shortcut":
            source = int(s["from"])
            return Shortcut(source if source >= 0 else index + source), in_channels
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
        """Replace every conv block by its folded InferenceConv (irreversible; eval only), computing in `dtype`
        (torch.bfloat16 or its name; default float32). Returns self."""
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
    """Read past a .weights header. `seen` is int64 from version 0.2 on, int32 before."""
    header = np.frombuffer(handle.read(12), dtype=np.int32)
    if header.size != 3:
        raise UserError(f"{path} is too short to be a Darknet weights file")
    major, minor, _ = (int(v) for v in header)
    handle.read(8 if major * 10 + minor >= 2 else 4)


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
        _weights_header(handle, path)
        values = np.fromfile(handle, dtype=np.float32)
    needed = expected_floats(model)
    if values.size != needed:
        raise UserError(f"{path.name} holds {values.size:,} floats but the cfg needs {needed:,}: weights and cfg "
                        f"do not belong together (or the file is truncated)")
    tensors = [t for block in model.conv_layers() for t in _conv_tensors(block)]
    with torch.no_grad():
        for tensor, chunk in zip(tensors, torch.from_numpy(values).split([t.numel() for t in tensors])):
            tensor.copy_(chunk.view_as(tensor))
    return {"floats": needed}


def save_darknet_weights(model: Darknet, path, version=(0, 2, 0), seen=0):
    with open(path, "wb") as handle:
        np.array(version, dtype=np.int32).tofile(handle)
        np.array([seen], dtype=np.int64 if version[0] * 10 + version[1] >= 2 else np.int32).tofile(handle)
        for block in model.conv_layers():
            for tensor in _conv_tensors(block):
                tensor.detach().cpu().numpy().astype(np.float32).tofile(handle)
