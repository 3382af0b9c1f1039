"""Batched augmentation and normalisation on tensors, on whatever device training uses.

One affine `grid_sample` per batch does random-resized-crop, horizontal flip and rotation for
every image at once; colour jitter is a few broadcast multiplies. No per-image Python, no PIL,
so the GPU (or the CPU's vector units) does the work that a DataLoader would do image by image.
"""
import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F


@dataclass
class AugmentConfig:
    enabled: bool = True
    strength: float = 1.0  # scales every range below; 0 = identity
    min_scale: float = 0.35  # random-resized-crop area range [min_scale, 1]
    flip: bool = True
    rotation: float = 15.0  # degrees, ±
    color_jitter: float = 0.3  # brightness/contrast/saturation ±


def _uniform(n, low, high, generator, device):
    return torch.rand(n, generator=generator, device=device) * (high - low) + low


def augment_batch(images: torch.Tensor, cfg: AugmentConfig, generator=None) -> torch.Tensor:
    """Random resized crop + flip + rotation (one affine resample) and colour jitter.

    `images` is float N×3×H×W in [0, 1]; the output has the same shape. The random draws come
    from `generator`, so a seeded generator reproduces the same augmentation.
    """
    if not cfg.enabled or cfg.strength <= 0:
        return images
    n, device = images.shape[0], images.device
    s = cfg.strength
    min_scale = 1.0 - (1.0 - cfg.min_scale) * min(s, 1.0)
    area = _uniform(n, min_scale, 1.0, generator, device)
    log_ratio = _uniform(n, math.log(3 / 4) * min(s, 1.0), math.log(4 / 3) * min(s, 1.0), generator, device)
    ratio = log_ratio.exp()
    half_w = (area * ratio).sqrt().clamp(max=1.0)  # crop width as a fraction of the image
    half_h = (area / ratio).sqrt().clamp(max=1.0)
    cx = _uniform(n, -1.0, 1.0, generator, device) * (1.0 - half_w)
    cy = _uniform(n, -1.0, 1.0, generator, device) * (1.0 - half_h)
    angle = _uniform(n, -cfg.rotation * s, cfg.rotation * s, generator, device) * (math.pi / 180.0)
    flip = torch.ones(n, device=device)
    if cfg.flip:
        flip = torch.where(torch.rand(n, generator=generator, device=device) < 0.5, -flip, flip)
    cos, sin = angle.cos(), angle.sin()
    theta = torch.stack([
        torch.stack([half_w * cos * flip, -half_h * sin, cx], dim=1),
        torch.stack([half_w * sin * flip, half_h * cos, cy], dim=1),
    ], dim=1)
    grid = F.affine_grid(theta, list(images.shape), align_corners=False)
    out = F.grid_sample(images, grid.to(images.dtype), mode="bilinear", padding_mode="reflection", align_corners=False)
    if cfg.color_jitter > 0:
        j = cfg.color_jitter * s
        view = (n, 1, 1, 1)
        brightness = _uniform(n, 1 - j, 1 + j, generator, device).view(view)
        contrast = _uniform(n, 1 - j, 1 + j, generator, device).view(view)
        saturation = _uniform(n, 1 - j, 1 + j, generator, device).view(view)
        out = out * brightness
        mean = out.mean(dim=(1, 2, 3), keepdim=True)
        out = (out - mean) * contrast + mean
        gray = (0.299 * out[:, 0:1] + 0.587 * out[:, 1:2] + 0.114 * out[:, 2:3])
        out = (out - gray) * saturation + gray
        out = out.clamp(0.0, 1.0)
    return out
