"""Part C's images and videos in and out: inputs expanded, videos read (PyAV) and written, detections drawn.
A single photo is read by `common.data.read_image` (Part A shows feature maps of one too)."""
import colorsys
import os
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Optional

import av
import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont

from common.data import IMAGE_EXTENSIONS
from common.errors import UserError, describe, say_once

VIDEO_EXTENSIONS = {".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg"}


def expand_inputs(paths):
    """Files and folders → sorted (kind, path) list; a clear error for what cannot be used."""
    found = []
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            media = sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS | VIDEO_EXTENSIONS)
            if not media:
                raise UserError(f"folder {path} holds no images or videos")
        elif path.is_file():
            if path.suffix.lower() not in IMAGE_EXTENSIONS | VIDEO_EXTENSIONS:
                raise UserError(f"{path} is neither an image ({', '.join(sorted(IMAGE_EXTENSIONS))}) nor a video "
                                f"({', '.join(sorted(VIDEO_EXTENSIONS))})")
            media = [path]
        else:
            raise UserError(f"input {path} does not exist")
        found += [("video" if p.suffix.lower() in VIDEO_EXTENSIONS else "image", p) for p in media]
    if not found:
        raise UserError("no inputs given")
    return found


@dataclass
class VideoFrame:
    index: int
    time: float
    image: Optional[torch.Tensor]  # None for a frame that failed to decode


def iter_video(path) -> Iterator[VideoFrame]:
    """Frames of a video as uint8 RGB tensors; a frame that fails to decode yields image=None. A video that ends
    before the length its header states (a cut file decodes cleanly up to the cut) says so on stderr."""
    with open_video(path) as container:
        stream = container.streams.video[0]
        fps, read = float(stream.average_rate or 25), 0
        for frame in frames_from_packets(container.demux(stream), stream.time_base, fps):
            read = frame.index + 1
            yield frame
        if read < (stream.frames or 0):
            say_once(f"{path} ends after {read} of its stated {stream.frames} frames: the file is cut short")


def frames_from_packets(packets, time_base, fps) -> Iterator[VideoFrame]:
    """Decode packets one by one; a damaged packet becomes one image=None frame, not an error."""
    index = 0
    while True:
        try:
            packet = next(packets)
            frames = packet.decode()
        except StopIteration:
            return
        except Exception:  # damaged data: count it as one bad frame and keep going
            yield VideoFrame(index, index / fps, None)
            index += 1
            continue
        for frame in frames:
            rgb = frame.to_ndarray(format="rgb24")
            t = float(frame.pts * time_base) if frame.pts is not None and time_base else index / fps
            yield VideoFrame(index, t, torch.from_numpy(rgb).permute(2, 0, 1).contiguous())
            index += 1


def open_video(path):
    try:
        container = av.open(str(path))
    except Exception as err:
        raise UserError(f"cannot open video {path} ({describe(err)})") from None
    if not container.streams.video:
        container.close()
        raise UserError(f"{path} has no video stream")
    return container


def video_info(path):
    with open_video(path) as container:
        stream = container.streams.video[0]
        return {"fps": float(stream.average_rate or 25), "frames": stream.frames}


def image_format(path):
    """Pillow's format name for a file name's extension (an image written to a handle has no name to go by)."""
    return Image.registered_extensions().get(Path(path).suffix.lower(), "PNG")


class VideoWriter:
    """H.264 (or MPEG-4) writer via PyAV; frames are uint8 RGB H×W×3 arrays. The clip is written under a temporary
    name and moved into place when closed: a full disk or a kill never leaves a truncated clip under its name."""

    def __init__(self, path, fps, width, height):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.partial = self.path.with_name(f".{self.path.name}.partial{self.path.suffix}")
        self.container = av.open(str(self.partial), mode="w")
        codec = "libx264" if "libx264" in av.codecs_available else "mpeg4"
        self.stream = self.container.add_stream(codec, rate=max(1, round(fps)))
        self.stream.width, self.stream.height = width - width % 2, height - height % 2
        self.stream.pix_fmt = "yuv420p"

    def write(self, rgb: np.ndarray):
        rgb = rgb[: self.stream.height, : self.stream.width]
        frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(rgb), format="rgb24")
        with self.removed_on_failure():
            self.container.mux(self.stream.encode(frame))

    def close(self):
        with self.removed_on_failure():
            self.container.mux(self.stream.encode())  # the encoder's last packets
            self.container.close()
        os.replace(self.partial, self.path)

    @contextmanager
    def removed_on_failure(self):
        """A failed write (a full disk) removes the partial clip and names the clip, not its temporary name."""
        try:
            yield
        except OSError as err:
            with suppress(Exception):
                self.container.close()
            self.partial.unlink(missing_ok=True)
            raise OSError(err.errno, err.strerror, str(self.path)) from None


def class_colour(class_id):
    r, g, b = colorsys.hsv_to_rgb((class_id * 0.618034) % 1.0, 0.85, 0.95)
    return int(r * 255), int(g * 255), int(b * 255)


def _font(size):
    for name in ("DejaVuSans-Bold.ttf", "/usr/share/fonts/truetype/dejavu/DejaVuSans-Bold.ttf"):
        try:
            return ImageFont.truetype(name, size)
        except OSError:
            continue
    return ImageFont.load_default()


def _overlap(a, b):
    return max(0, min(a[2], b[2]) - max(a[0], b[0])) * max(0, min(a[3], b[3]) - max(a[1], b[1]))


def place_labels(boxes, sizes, image_w, image_h):
    """Tag rectangles (x1, y1, x2, y2), one per box (best score first), placed inside the image so that no tag
    hides another where a candidate spot allows, else where it overlaps least."""
    placed = []
    for (x1, y1, x2, y2), (w, h) in zip(boxes, sizes):
        candidates = [(x1, y1 - h), (x1, y1), (x1, y2), (x2 - w, y1 - h), (x2 - w, y1), (x2 - w, y2 - h),
                      (x1, y2 - h), (x2 - w, y2)]
        best, best_cost = None, None
        for cx, cy in candidates:
            cx, cy = min(max(0, cx), max(0, image_w - w)), min(max(0, cy), max(0, image_h - h))  # stay in the image
            rect = (cx, cy, cx + w, cy + h)
            cost = sum(_overlap(rect, other) for other in placed)
            if best is None or cost < best_cost:
                best, best_cost = rect, cost
            if cost == 0:
                break
        placed.append(best)
    return placed


def draw_detections(image: torch.Tensor, detections, extra_labels=None) -> Image.Image:
    """uint8 C×H×W tensor + detections → a PIL image with boxes and 'label score' tags. One box reported for several
    classes (YOLO is multi-label) is drawn once, tagged with every label in score order ('car 0.65 / truck 0.41')."""
    pil = Image.fromarray(image.permute(1, 2, 0).numpy())
    draw = ImageDraw.Draw(pil)
    width = max(2, round(min(pil.size) / 200))
    font = _font(max(12, round(min(pil.size) / 35)))
    boxes = {}
    for i, det in enumerate(detections):
        text = f"{det.label} {det.score:.2f}"
        if extra_labels and extra_labels[i]:
            text += f" | {extra_labels[i]}"
        boxes.setdefault(tuple(round(v) for v in det.box), []).append((det, text))
    texts = {box: " / ".join(t for _, t in tagged) for box, tagged in boxes.items()}
    bboxes = [draw.textbbox((0, 0), text, font=font) for text in texts.values()]
    sizes = [(right - left + 6, bottom - top + 4) for left, top, right, bottom in bboxes]
    for (x1, y1, x2, y2), tagged in boxes.items():
        draw.rectangle([x1, y1, x2, y2], outline=class_colour(tagged[0][0].class_id), width=width)
    for (box, tagged), rect in zip(boxes.items(), place_labels(list(boxes), sizes, *pil.size)):
        draw.rectangle(rect, fill=class_colour(tagged[0][0].class_id))  # the colour of its best class
        draw.text((rect[0] + 3, rect[1]), texts[box], fill=(0, 0, 0), font=font)
    return pil
