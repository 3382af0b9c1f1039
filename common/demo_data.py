"""The embedded demo dataset: a synthetic, learnable, photo-like 10-class ImageFolder.

Each class is a shape family (disc, ring, star…) drawn with a random colour, pose, scale and
position over a textured, cluttered background, then blurred, noised and saved as a real JPEG
of iNaturalist's typical size (≈500×375, landscape or portrait). Colour carries no class
information and distractor shapes of every class appear small in the clutter, so a model must
learn shape at scale — a 5-block CNN needs several epochs to pass 80% validation accuracy.

Layout matches iNaturalist-12K: `<out>/inaturalist_12K/{train,val}/<class>/<hex>.jpg`.
"""
import hashlib
import math
import os
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter
from tqdm import tqdm

CLASSES = ["checker", "crescent", "cross", "disc", "dots", "ring", "square", "star", "stripes", "triangle"]
SIZES = [(500, 375), (500, 375), (500, 333), (375, 500), (500, 400)]


def _random_colour(rng):
    return tuple(int(c) for c in rng.integers(0, 256, 3))


def _rotate(points, cx, cy, angle):
    c, s = math.cos(angle), math.sin(angle)
    return [(cx + (x - cx) * c - (y - cy) * s, cy + (x - cx) * s + (y - cy) * c) for x, y in points]


def _polygon(cx, cy, r, sides, angle):
    return [(cx + r * math.cos(angle + 2 * math.pi * i / sides), cy + r * math.sin(angle + 2 * math.pi * i / sides))
            for i in range(sides)]


def _draw_shape(draw, kind, cx, cy, r, colour, rng, angle):
    """Draw one object of class `kind` centred at (cx, cy) with radius r."""
    second = _random_colour(rng)
    if kind == "disc":
        draw.ellipse([cx - r, cy - r * 0.9, cx + r, cy + r * 0.9], fill=colour)
    elif kind == "ring":
        width = max(2, int(r * rng.uniform(0.2, 0.35)))
        draw.ellipse([cx - r, cy - r, cx + r, cy + r], outline=colour, width=width)
    elif kind == "square":
        draw.polygon(_polygon(cx, cy, r, 4, angle), fill=colour)
    elif kind == "triangle":
        draw.polygon(_polygon(cx, cy, r, 3, angle), fill=colour)
    elif kind == "star":
        points = []
        for i in range(10):
            radius = r if i % 2 == 0 else r * 0.42
            a = angle + math.pi * i / 5
            points.append((cx + radius * math.cos(a), cy + radius * math.sin(a)))
        draw.polygon(points, fill=colour)
    elif kind == "cross":
        w = r * 0.32
        arm = [(cx - r, cy - w), (cx + r, cy - w), (cx + r, cy + w), (cx - r, cy + w)]
        draw.polygon(_rotate(arm, cx, cy, angle), fill=colour)
        draw.polygon(_rotate(arm, cx, cy, angle + math.pi / 2), fill=colour)
    elif kind == "crescent":
        draw.ellipse([cx - r, cy - r, cx + r, cy + r], fill=colour)
        dx, dy = 0.45 * r * math.cos(angle), 0.45 * r * math.sin(angle)
        draw.ellipse([cx - r * 0.85 + dx, cy - r * 0.85 + dy, cx + r * 0.85 + dx, cy + r * 0.85 + dy], fill=second)
    elif kind == "stripes":
        stripe = max(3, int(r * rng.uniform(0.15, 0.25)))
        for k in range(-int(r), int(r), 2 * stripe):
            band = [(cx - r, cy + k), (cx + r, cy + k), (cx + r, cy + k + stripe), (cx - r, cy + k + stripe)]
            draw.polygon(_rotate(band, cx, cy, angle), fill=colour)
    elif kind == "checker":
        cell = r / 2
        for i in range(4):
            for j in range(4):
                fill = colour if (i + j) % 2 == 0 else second
                x0, y0 = cx - r + i * cell, cy - r + j * cell
                quad = [(x0, y0), (x0 + cell, y0), (x0 + cell, y0 + cell), (x0, y0 + cell)]
                draw.polygon(_rotate(quad, cx, cy, angle), fill=fill)
    elif kind == "dots":
        for _ in range(int(rng.integers(5, 9))):
            a, d = rng.uniform(0, 2 * math.pi), rng.uniform(0, r * 0.8)
            dr = r * rng.uniform(0.12, 0.22)
            x, y = cx + d * math.cos(a), cy + d * math.sin(a)
            draw.ellipse([x - dr, y - dr, x + dr, y + dr], fill=colour)
    else:
        raise ValueError(kind)


def _background(width, height, rng):
    """A smooth two-colour gradient with low-frequency blotches, like out-of-focus foliage."""
    a, b = np.array(_random_colour(rng), np.float32), np.array(_random_colour(rng), np.float32)
    angle = rng.uniform(0, 2 * math.pi)
    x = np.linspace(0, 1, width, dtype=np.float32)[None, :] * math.cos(angle)
    y = np.linspace(0, 1, height, dtype=np.float32)[:, None] * math.sin(angle)
    t = x + y
    t = (t - t.min()) / max(1e-6, float(t.max() - t.min()))
    image = a * (1 - t[..., None]) + b * t[..., None]
    coarse = rng.standard_normal((height // 25 + 2, width // 25 + 2, 3), dtype=np.float32) * 28
    small = Image.fromarray(np.uint8(np.clip(coarse + 128, 0, 255)))
    blotches = np.asarray(small.resize((width, height), Image.BICUBIC), np.float32) - 128
    return Image.fromarray(np.uint8(np.clip(image + blotches, 0, 255)))


def make_image(label, rng, size=None):
    """One demo photo of class `label` as a PIL RGB image."""
    width, height = size or SIZES[int(rng.integers(len(SIZES)))]
    image = _background(width, height, rng)
    draw = ImageDraw.Draw(image)
    short = min(width, height)
    for _ in range(int(rng.integers(3, 8))):  # clutter: small shapes of any class, lines
        if rng.random() < 0.5:
            kind = CLASSES[int(rng.integers(len(CLASSES)))]
            _draw_shape(draw, kind, rng.uniform(0, width), rng.uniform(0, height), short * rng.uniform(0.02, 0.05),
                        _random_colour(rng), rng, rng.uniform(0, 2 * math.pi))
        else:
            draw.line([(rng.uniform(0, width), rng.uniform(0, height)), (rng.uniform(0, width), rng.uniform(0, height))],
                      fill=_random_colour(rng), width=int(rng.integers(2, 7)))
    r = short * rng.uniform(0.22, 0.42)
    # keep the object's centre inside the central square that the loader's centre crop keeps
    left, top = (width - short) / 2, (height - short) / 2
    cx = rng.uniform(left + r * 0.7, left + short - r * 0.7)
    cy = rng.uniform(top + r * 0.7, top + short - r * 0.7)
    _draw_shape(draw, CLASSES[label], cx, cy, r, _random_colour(rng), rng, rng.uniform(0, 2 * math.pi))
    image = image.filter(ImageFilter.GaussianBlur(rng.uniform(0.3, 1.5)))
    noise = rng.standard_normal((height, width, 3), dtype=np.float32) * rng.uniform(4, 12)
    pixels = np.asarray(image, np.float32) + noise
    return Image.fromarray(np.uint8(np.clip(pixels, 0, 255)))


def _write_image(job):
    path, label, image_seed, quality = job
    tmp = path.with_suffix(".tmp")
    make_image(label, np.random.default_rng(image_seed)).save(tmp, format="JPEG", quality=quality)
    tmp.replace(path)  # a killed generator never leaves a half-written JPEG behind


def generate_demo_dataset(out_dir, train_per_class=150, test_per_class=30, seed=0, quality=88, workers=None):
    """Write the demo ImageFolder; return its root. Deterministic for a seed; skips existing files."""
    root = Path(out_dir) / "inaturalist_12K"
    jobs = []
    for split, per_class, offset in (("train", train_per_class, 0), ("val", test_per_class, 10_000_000)):
        for label, name in enumerate(CLASSES):
            folder = root / split / name
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(per_class):
                image_seed = seed * 100_000_000 + offset + label * 100_000 + i
                path = folder / (hashlib.md5(f"{split}-{name}-{image_seed}".encode()).hexdigest() + ".jpg")
                if not path.exists():
                    jobs.append((path, label, image_seed, quality))
    if jobs:
        with ProcessPoolExecutor(workers or os.cpu_count() or 1) as pool:
            list(tqdm(pool.map(_write_image, jobs, chunksize=16), total=len(jobs), desc="demo images", unit="img"))
    return root


if __name__ == "__main__":
    import click

    @click.command()
    @click.option("--out", default="data/demo", show_default=True, help="Folder to write inaturalist_12K/ into.")
    @click.option("--train-per-class", type=int, default=150, show_default=True)
    @click.option("--test-per-class", type=int, default=30, show_default=True)
    @click.option("--seed", type=int, default=0, show_default=True)
    def main(out, train_per_class, test_per_class, seed):
        """Write the synthetic demo dataset (iNaturalist-12K layout)."""
        root = generate_demo_dataset(out, train_per_class, test_per_class, seed)
        click.echo(f"demo dataset: {root} ({len(CLASSES)} classes: {', '.join(CLASSES)})")

    main()
