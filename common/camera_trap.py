"""The camera-trap watcher's logic: alert cool-down, frame keeping, crops, crop classification.

An alert fires when a watched class appears after being out of view for longer than the
cool-down; every sighting renews the class's "last seen" time, so an animal that stays in view
is one alert, not one per frame.
"""
from dataclasses import dataclass, field
from typing import Dict, List, Optional

import torch
import torch.nn.functional as F

from common.errors import UserError
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
        """Classes that raise an alert at `time_s`, given this frame's detections."""
        present = {d.label for d in detections if d.label in self.classes and d.score >= self.min_score}
        alerts = []
        for label in sorted(present):
            last = self.last_seen.get(label)
            if last is None or time_s - last > self.cooldown_s:
                alerts.append(label)
            self.last_seen[label] = time_s
        return alerts


def worth_keeping(detections, watched, min_score) -> bool:
    return any(d.label in watched and d.score >= min_score for d in detections)


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
        from common.checkpoints import load_checkpoint, model_from_checkpoint

        ckpt = load_checkpoint(checkpoint_path)
        self.model = model_from_checkpoint(ckpt, source=str(checkpoint_path)).to(device).eval()
        self.classes, self.mean, self.std = ckpt["classes"], ckpt["mean"], ckpt["std"]
        self.size = ckpt["train_config"]["image_size"]
        self.resize = ckpt["train_config"].get("resize_size")
        self.device = device

    @torch.no_grad()
    def __call__(self, crop_uint8: torch.Tensor):
        from common.data import resize_center_crop
        from common.inference import prepare_batch

        # the same preprocessing as training and evaluation: the checkpoint's crop and normalisation
        x = resize_center_crop(crop_uint8, self.size, self.resize)[None].to(self.device)
        probs = F.softmax(self.model(prepare_batch(x, self.mean, self.std)).float(), 1)[0].cpu()
        best = int(probs.argmax())
        return self.classes[best], float(probs[best])


def contact_sheet(crops, captions, path, title="", cell=160):
    """A near-square grid of crops, each captioned."""
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
    if title:
        fig.suptitle(title, fontsize=11, fontweight="bold")
    fig.tight_layout(rect=(0, 0, 1, 0.95 if rows < 3 else 0.97) if title else None)
    return save(fig, path)


def parse_classes(text: Optional[str], valid) -> List[str]:
    if text is None:
        return []
    names = [c.strip() for c in text.split(",") if c.strip()]
    unknown = [c for c in names if c not in valid]
    if unknown:
        raise UserError(f"unknown class name(s) {unknown}; choose from: {', '.join(valid)}")
    return names
