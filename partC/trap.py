"""The camera-trap watcher's logic: frames in (videos on one clock, stills by EXIF time), alert
cool-down, frame keeping, crops, crop classification, the demo clip, and the `Watcher` that puts them
together frame by frame (partC/camera_trap.py is its command line; docs/design.md, "Part C in detail").
"""
import datetime
import json
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageFilter

from common.checkpoints import load_checkpoint, model_from_checkpoint
from common.errors import UserError
from common.io import write_atomically
from common.data import read_image, resize_center_crop
from common.inference import prepare_batch
from partC.darknet_files import DEMO_PHOTOS, offline_photos
from partC.media import VideoWriter, draw_detections, image_format, iter_video, video_info
from common.viz import near_square_grid, save

WILDLIFE = ["person", "bird", "cat", "dog", "horse", "sheep", "cow", "elephant", "bear", "zebra", "giraffe"]
ANIMALS = [c for c in WILDLIFE if c != "person"]


@dataclass
class AlertPolicy:
    classes: List[str]
    cooldown_s: float = 30.0
    min_score: float = 0.35
    last_seen: Dict[str, float] = field(default_factory=dict)

    def update(self, time_s: float, detections) -> List[str]:
        """Classes that raise an alert at `time_s`: out of view longer than the cool-down. Every sighting renews a
        class's "last seen" time, so an animal that stays in view is one alert, not one per frame."""
        present = {d.label for d in detections if d.label in self.classes and d.score >= self.min_score}
        alerts = []
        for label in sorted(present):
            last = self.last_seen.get(label)
            if last is None or time_s - last > self.cooldown_s:
                alerts.append(label)
            self.last_seen[label] = time_s
        return alerts


def crop(image: torch.Tensor, box, margin=0.1) -> torch.Tensor:
    """A uint8 C×H×W crop around `box` (x1, y1, x2, y2) with a relative margin, inside the image."""
    _, h, w = image.shape
    x1, y1, x2, y2 = box
    mx, my = (x2 - x1) * margin, (y2 - y1) * margin
    left, top = max(0, int(x1 - mx)), max(0, int(y1 - my))
    right, bottom = min(w, int(x2 + mx) + 1), min(h, int(y2 + my) + 1)
    return image[:, top:max(bottom, top + 1), left:max(right, left + 1)]


class CropClassifier:
    """A Part A/B checkpoint applied to crops: returns (iNaturalist class, probability)."""

    def __init__(self, checkpoint_path, device="cpu"):
        ckpt = load_checkpoint(checkpoint_path)
        self.model = model_from_checkpoint(ckpt, source=str(checkpoint_path)).to(device).eval()
        self.classes, self.mean, self.std = ckpt["classes"], ckpt["mean"], ckpt["std"]
        self.size = ckpt["train_config"]["image_size"]
        self.resize = ckpt["train_config"].get("resize_size")
        self.device = device

    @torch.no_grad()
    def __call__(self, crop_uint8: torch.Tensor):
        # the same preprocessing as training and evaluation: the checkpoint's crop and normalisation
        x = resize_center_crop(crop_uint8, self.size, self.resize)[None].to(self.device)
        probs = F.softmax(self.model(prepare_batch(x, self.mean, self.std)).float(), 1)[0].cpu()
        best = int(probs.argmax())
        return self.classes[best], float(probs[best])


def contact_sheet(crops, captions, path, title, cell=160):
    import matplotlib.pyplot as plt

    if not crops:
        raise UserError("no crops to put on a contact sheet")
    rows, cols = near_square_grid(len(crops))
    fig, axes = plt.subplots(rows, cols, figsize=(cols * cell / 60, rows * cell / 55), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, image, caption in zip(axes.flat, crops, captions):
        ax.imshow(image.permute(1, 2, 0).numpy())
        ax.set_title(caption, fontsize=8)
    fig.suptitle(title, fontsize=11, fontweight="bold")
    return save(fig, path, rect=(0, 0, 1, 0.95 if rows < 3 else 0.97))


# ------------------------------------------------------------------------ frames in, clips out

def _to_stderr(message):
    print(message, file=sys.stderr, flush=True)


def capture_time(path):
    """EXIF DateTimeOriginal of a still (camera traps stamp every shot), in seconds, or None."""
    try:
        with Image.open(path) as img:
            exif = img.getexif()
            stamp = exif.get_ifd(0x8769).get(0x9003) or exif.get(0x0132)  # DateTimeOriginal, else DateTime
        return datetime.datetime.strptime(stamp, "%Y:%m:%d %H:%M:%S").timestamp() if stamp else None
    except Exception:
        return None


def frames_of(inputs, fps, stride, skipped=None, warn=_to_stderr):
    """(source, frame index, time s, image) over videos and image sequences; None images are bad frames.

    Stills are timed by their EXIF capture time when every one has it (traps fire at irregular intervals), else
    by position / --fps. Videos follow each other on one clock, so an animal that leaves in one clip and returns
    in the next is a new visit. A video that cannot be opened is appended to `skipped` as (path, reason).
    """
    stills = [p for kind, p in inputs if kind == "image"]
    stamps = [capture_time(p) for p in stills]
    use_exif = bool(stills) and all(s is not None for s in stamps)
    with_exif = sum(s is not None for s in stamps)
    if 0 < with_exif < len(stills):
        warn(f"warning: {len(stills) - with_exif} of {len(stills)} stills have no EXIF capture time; timing every "
             f"still by its position at --fps {fps:g} instead")
    start = min(stamps) if use_exif else 0.0
    when = {p: (s - start if use_exif else i / fps) for i, (p, s) in enumerate(zip(stills, stamps))}
    sequence_index, clock = 0, 0.0
    for kind, path in inputs:
        if kind == "video":
            end = clock
            try:
                for frame in iter_video(path):
                    end = clock + frame.time
                    if frame.index % stride == 0:
                        yield str(path), frame.index, clock + frame.time, frame.image
            except UserError as err:
                if skipped is not None:
                    skipped.append((str(path), err.message))
                continue
            clock = end + 1.0 / max(fps, 1e-9)  # the next video starts one frame period later
        else:
            if sequence_index % stride == 0:
                try:
                    image = read_image(path)
                except UserError:
                    image = None  # an unreadable trap frame is skipped and counted, not fatal
                yield str(path), sequence_index, when[path], image
            sequence_index += 1


def plural(count, noun):
    return f"{count} {noun}{'' if count == 1 else 's'}"


def first_video_fps(media, stride, default):
    for kind, path in media:
        if kind == "video":
            try:
                return video_info(path)["fps"] / stride
            except UserError:
                continue
    return default


def fit_canvas(pil, size):
    """Letterbox a PIL image into a fixed (w, h) canvas so the clip has one frame size."""
    canvas = Image.new("RGB", size, (20, 20, 20))
    copy = pil.copy()
    copy.thumbnail(size)
    canvas.paste(copy, ((size[0] - copy.width) // 2, (size[1] - copy.height) // 2))
    return canvas


def make_demo_clip(path, fps=4, seconds=2.0, empty_seconds=1.0, size=(480, 360)):
    """A short 'camera-trap' clip from real photos: each held for `seconds` with a slow zoom, then `empty_seconds`
    of the same scene blurred beyond recognition — the empty triggers (wind, light) a real trap records too."""
    sources = offline_photos(DEMO_PHOTOS, warn=_to_stderr)
    # every photo read before the clip is opened: an unreadable one leaves no partial clip behind
    photos = [fit_canvas(Image.open(source).convert("RGB"), size) for source in sources]
    writer = VideoWriter(path, fps, *size)
    for photo in photos if len(photos) > 1 else photos * 2:  # grace_hopper alone: two visits
        frames = int(fps * seconds)
        for i in range(frames):
            zoom = 1.0 + 0.08 * i / frames  # frames differ, like a real clip
            w, h = size[0] / zoom, size[1] / zoom
            box = ((size[0] - w) / 2, (size[1] - h) / 2, (size[0] + w) / 2, (size[1] + h) / 2)
            writer.write(np.asarray(photo.resize(size, Image.BILINEAR, box=box)))
        empty = np.asarray(photo.filter(ImageFilter.GaussianBlur(40)))
        for _ in range(int(fps * empty_seconds)):
            writer.write(empty)
    writer.close()
    return Path(path)


NOT_KEPT_SHOWN = 8  # the first few dropped frames show what the filter drops
SHEET_VISITS = 64  # crops on the contact sheet at most


class Watcher:
    """One watch over a stream of frames (what it keeps and writes: docs/design.md, "Part C in detail")."""

    def __init__(self, detector, out, watched, alert_classes, cooldown, min_score, clip_fps, labeller=None,
                 on_alert=None):
        self.detector, self.out, self.watched, self.min_score = detector, Path(out), watched, min_score
        self.clip_fps, self.labeller, self.on_alert = clip_fps, labeller, on_alert or (lambda *_: None)
        self.alerts = AlertPolicy(alert_classes, cooldown, min_score)
        self.visits = AlertPolicy(watched, cooldown, min_score)  # a "visit" = a class in view, cool-down to cool-down
        self.visit_number, self.visit_start = {}, {}
        self.not_kept = []  # (image, caption) of a few frames looked at and not kept
        self.best_crop = {}  # (class, visit) -> (score, crop, caption): one crop per visit on the contact sheet
        self.alert_score = {}  # (class, visit) -> the score the alert was raised with
        self.alerts_log = []
        self.stats = {"frames": 0, "bad_frames": 0, "kept": 0, "alerts": 0, "detections": 0}
        self.writer = None
        (self.out / "kept").mkdir(parents=True, exist_ok=True)
        self.events = open(self.out / "events.jsonl", "w")

    def look(self, source, index, t, image):
        """One frame (image None: it could not be decoded)."""
        if image is None:
            self.stats["bad_frames"] += 1
            return
        self.stats["frames"] += 1
        detections = [d for d in self.detector(image) if d.label in self.watched]
        self.stats["detections"] += len(detections)
        for label in self.visits.update(t, detections):
            self.visit_number[label] = self.visit_number.get(label, 0) + 1
            self.visit_start[(label, self.visit_number[label])] = t  # the visit's alert time, on the contact sheet
        for label in self.alerts.update(t, detections):
            self.alert(label, detections, source, index, t)
        if any(d.score >= self.min_score for d in detections):  # a watched class (the only ones left) scores enough
            self.keep(image, detections, source, index, t)
        elif len(self.not_kept) < NOT_KEPT_SHOWN:
            found = ", ".join(f"{d.label} {d.score:.2f}" for d in detections) or "nothing watched"
            self.not_kept.append((image, f"t={t:.1f}s: {found}"))

    def alert(self, label, detections, source, index, t):
        best = max((d for d in detections if d.label == label), key=lambda d: d.score)
        event = {"type": "alert", "class": label, "time": round(t, 3), "frame": index, "source": source,
                 "score": float(best.score), "box": [round(v, 1) for v in best.box]}
        self.events.write(json.dumps(event) + "\n")
        self.alerts_log.append(event)
        self.alert_score[(label, self.visit_number.get(label, 0))] = float(best.score)  # the visit it opened
        self.stats["alerts"] += 1
        self.on_alert(event)

    def keep(self, image, detections, source, index, t):
        extra = [self.remember_crop(image, d, t) for d in detections]
        annotated = draw_detections(image, detections, extra)
        name = f"{Path(source).stem}-{index:06d}.jpg"
        write_atomically(self.out / "kept" / name,
                         lambda handle: annotated.save(handle, format=image_format(name), quality=90))
        if self.writer is None:  # the first kept frame's size, made even, is the clip's
            self.writer = VideoWriter(self.out / "watched.mp4", self.clip_fps, annotated.width, annotated.height)
        self.writer.write(np.asarray(fit_canvas(annotated, (self.writer.stream.width, self.writer.stream.height))))
        self.events.write(json.dumps({"type": "frame", "time": round(t, 3), "frame": index, "source": source,
                                      "kept_as": f"kept/{name}", "detections": [d.to_dict() for d in detections],
                                      "species": extra if self.labeller else None}) + "\n")
        self.stats["kept"] += 1

    def remember_crop(self, image, detection, t):
        """Keep the visit's best crop (with the classifier's guess); returns the frame's extra label."""
        piece = crop(image, detection.box)
        key = (detection.label, self.visit_number.get(detection.label, 0))
        caption = f"{detection.label} {detection.score:.2f}, visit from t={self.visit_start.get(key, t):.1f}s"
        species = None
        if self.labeller is not None and detection.label in ANIMALS:
            species, prob = self.labeller(piece)
            caption += f"\nclassifier's guess: {species} {prob:.2f}"
        if detection.score >= self.min_score and (key not in self.best_crop or detection.score > self.best_crop[key][0]):
            self.best_crop[key] = (detection.score, piece, caption)
        return f"guess: {species}" if species else ""

    def finish(self):
        """Close the clip and the event log, draw the contact sheets; returns what the summary records."""
        self.events.close()
        if self.writer is not None:
            self.writer.close()
        if self.best_crop:  # one crop per visit (the best-scoring one), in order of appearance
            shown = list(self.best_crop.values())[:SHEET_VISITS]
            contact_sheet([v[1] for v in shown], [v[2] for v in shown], self.out / "contact_sheet.png",
                          title=f"camera trap: {plural(len(self.best_crop), 'visit')}, "
                                f"{plural(self.stats['alerts'], 'alert')}")
        if self.not_kept:
            contact_sheet([img for img, _ in self.not_kept], [cap for _, cap in self.not_kept],
                          self.out / "not_kept.png",
                          title=f"frames not kept (no watched class at score >= {self.min_score}): "
                                f"{self.stats['frames'] - self.stats['kept']} of {self.stats['frames']}")
        outputs = {"events": "events.jsonl", "clip": "watched.mp4" if self.writer else None, "kept": "kept/",
                   "contact_sheet": "contact_sheet.png" if self.best_crop else None,
                   "not_kept": "not_kept.png" if self.not_kept else None}
        visits = [{"class": key[0], "visit": key[1], "start": round(self.visit_start.get(key, 0.0), 3),
                   "best_score": float(best[0]), "alert_score": self.alert_score.get(key)}
                  for key, best in self.best_crop.items()]
        return {**self.stats, "alerts_list": self.alerts_log, "visits": visits, "outputs": outputs}

