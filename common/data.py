"""Data: scan + validate, stratified split, decoded cache (the dataset is found, extracted or downloaded by
`common/dataset_zip.py`): `scan_image_folder` → `load_or_make_split` (saved JSON) → `load_tensor_set` (uint8
N×3×S×S, decoded once per file set and size, cached on disk).

The TEST folder is absent from everything here: `DatasetPaths` exposes only `train_dir`; the test folder is found
only by `partA.testset`, which the test-evaluation commands alone import.
"""
import functools
import hashlib
import json
import os
import random
import warnings
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import List, Tuple

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageOps
from tqdm import tqdm

from common.dataset_zip import IMAGE_EXTENSIONS, DatasetPaths, locate_dataset
from common.errors import UserError, describe
from common.io import save_json, save_torch
from common.state import DamagedFile, SplitFile, read_state

DEFAULT_CACHE = Path(os.environ.get("INAT_CACHE", "cache"))


@dataclass
class FolderScan:
    root: Path
    classes: List[str]
    samples: List[Tuple[str, int]]  # (path relative to root, class index)


# What archivers and file managers leave beside the data: never a class, never an image.
SYSTEM_FOLDERS = {"__MACOSX"}


def _is_system_entry(path: Path) -> bool:
    return path.name.startswith(".") or path.name in SYSTEM_FOLDERS  # .DS_Store, ._x.jpg, .git, __MACOSX


def _outside(path: Path, root_resolved: Path) -> bool:
    """Does `path` (a symlink, or a file under one) lead outside the folder? Such files are not read:
    a link from train/ into the test folder would otherwise bypass the test set's isolation."""
    return not path.resolve().is_relative_to(root_resolved)


def scan_image_folder(root) -> FolderScan:
    """Classes are the sorted sub-folders; files with non-image extensions, system files and links that
    lead outside the folder are skipped and counted."""
    root = Path(root)
    if not root.is_dir():
        raise UserError(f"image folder {root} does not exist; check --data-dir")
    inside = root.resolve()
    folders = [p for p in root.iterdir() if p.is_dir() and not _is_system_entry(p)]
    linked = sorted(p for p in folders if p.is_symlink())
    if linked:  # up front: a run trained without that class would be refused only at evaluation, after training
        raise UserError(f"class folder {linked[0]} is a link (to {linked[0].resolve()}); a class must be a real folder "
                        f"in {root} — links are not followed, so nothing outside it is read: copy the images in")
    escaping = []
    classes = sorted(p.name for p in folders)
    if not classes:
        raise UserError(f"{root} has no class sub-folders; expected {root}/<class>/<image files>")
    samples, skipped = [], []
    for index, name in enumerate(classes):
        files = sorted(p for p in (root / name).rglob("*") if p.is_file()
                       and not any(_is_system_entry(part) for part in p.relative_to(root).parents if part.name)
                       and not _is_system_entry(p))
        escaping += [str(p.relative_to(root)) for p in files if _outside(p, inside)]
        files = [p for p in files if not _outside(p, inside)]
        images = [p for p in files if p.suffix.lower() in IMAGE_EXTENSIONS]
        skipped += [str(p.relative_to(root)) for p in files if p.suffix.lower() not in IMAGE_EXTENSIONS]
        if not images:
            raise UserError(f"class folder {root / name} holds no images; remove it or add images")
        samples += [(str(p.relative_to(root)), index) for p in images]
    if skipped:
        warnings.warn(f"skipped {len(skipped)} non-image file(s) in {root}, e.g. {skipped[0]}")
    if escaping:
        warnings.warn(f"skipped {len(escaping)} link(s) in {root} that lead outside it, e.g. {escaping[0]} -> "
                      f"{(root / escaping[0]).resolve()}")
    return FolderScan(root=root, classes=classes, samples=samples)


def _fingerprint(items) -> str:
    return hashlib.sha1(json.dumps(items, sort_keys=True).encode()).hexdigest()[:16]


def stratified_split(samples, num_classes, val_fraction, seed):
    """Per class, a seeded shuffle puts round(fraction·n) images (at least 1) in validation."""
    if not 0.0 < val_fraction < 1.0:
        raise UserError(f"validation fraction must be between 0 and 1, got {val_fraction}")
    rng = random.Random(seed)
    train, val = [], []
    for label in range(num_classes):
        members = sorted(path for path, lab in samples if lab == label)
        if len(members) < 2:
            folder = Path(members[0]).parent if members else f"class {label}"
            raise UserError(f"{folder} has {len(members)} image(s): each class needs at least 2, one for training and "
                            f"one for the validation split (which would otherwise be empty); add images")
        rng.shuffle(members)
        n_val = min(max(1, round(val_fraction * len(members))), len(members) - 1)
        val += [(p, label) for p in members[:n_val]]
        train += [(p, label) for p in members[n_val:]]
    return sorted(train), sorted(val)


def load_or_make_split(scan: FolderScan, val_fraction=0.2, seed=42, cache_dir=DEFAULT_CACHE):
    """The split for (file set, fraction, seed): read from its JSON file, or made and saved.

    A split file is data the project wrote, but a file on disk can be damaged or edited: it is used only
    when it splits exactly the scanned training files; otherwise it is rebuilt from the seed, with a
    warning — so an edited split can never point training at a file outside train/ (the test set)."""
    fingerprint = _fingerprint([scan.classes, scan.samples])
    path = Path(cache_dir) / "splits" / f"{scan.root.parent.name}-seed{seed}-val{val_fraction:g}-{fingerprint}.json"
    train, val = stratified_split(scan.samples, len(scan.classes), val_fraction, seed)
    if path.exists():
        problem = _split_file_problem(path, scan, train, val)
        if problem is None:
            return train, val, path
        warnings.warn(f"split file {path} {problem}; rebuilt it from --seed {seed}")
    save_json(path, {"root": str(scan.root), "classes": scan.classes, "seed": seed,
                     "val_fraction": val_fraction, "train": train, "val": val})
    return train, val, path


def _split_file_problem(path, scan, train, val):
    """Why the stored split cannot be used (None: it is the split the seed makes of these files)."""
    try:
        stored = read_state(path, SplitFile, "")
    except (DamagedFile, FileNotFoundError) as err:
        return f"is damaged ({getattr(err, 'problem', 'missing')})"
    stored_train = [tuple(s) for s in stored["train"]]
    stored_val = [tuple(s) for s in stored["val"]]
    if stored.get("classes") != scan.classes or stored_train != train or stored_val != val:
        return "does not split this training folder's files the way its seed does (edited?)"
    return None


# ---------------------------------------------------------------- decoding and the tensor cache

def resize_center_crop(image: torch.Tensor, size: int, resize: int = None) -> torch.Tensor:
    """uint8 C×H×W → uint8 C×size×size: shorter side to `resize` (default `size`, antialiased), centre crop.

    Pretrained models use their weights' own pair, e.g. resize 256 → crop 224.
    """
    _, h, w = image.shape
    scale = (resize or size) / min(h, w)
    nh, nw = max(size, round(h * scale)), max(size, round(w * scale))
    resized = F.interpolate(image[None].float(), size=(nh, nw), mode="bilinear", antialias=True, align_corners=False)[0]
    top, left = (nh - size) // 2, (nw - size) // 2
    return resized[:, top:top + size, left:left + size].round().clamp(0, 255).to(torch.uint8)


def _to_8bit_gray(img):
    """16-bit (or 32-bit integer/float) grayscale → 8-bit L. PIL's own convert clips at 255, which
    turns a 16-bit PNG almost white; scale the sample range down instead (65535 → 255)."""
    values = np.asarray(img, dtype=np.float64)
    top = 65535.0 if img.mode.startswith("I;16") or values.max(initial=0) > 255 else 255.0
    if img.mode == "F" and values.max(initial=0) <= 1.0:
        top = 1.0
    return Image.fromarray(np.clip(values / top * 255.0 + 0.5, 0, 255).astype(np.uint8), mode="L")


def decode_image(path, upright=False) -> torch.Tensor:
    """Decode any image file as uint8 RGB C×H×W; grayscale, CMYK, palette and alpha converted.

    PIL is used with truncated-image loading off, so a truncated or corrupt file raises
    instead of silently decoding to grey. upright: turned as its EXIF orientation says (a phone's portrait photo is
    stored lying down with a tag) — for photos shown to people; the training decode keeps the stored pixels, as
    every decode cache and checkpoint was made from them.
    """
    with Image.open(path) as opened:
        opened.load()
        img = ImageOps.exif_transpose(opened) if upright else opened
        if img.mode.startswith("I;16") or img.mode in ("I", "F"):
            img = _to_8bit_gray(img)
        if img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info):
            rgba = img.convert("RGBA")
            background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
            img = Image.alpha_composite(background, rgba)  # alpha over white, not over black
        rgb = img.convert("RGB")
    return torch.frombuffer(bytearray(rgb.tobytes()), dtype=torch.uint8).view(rgb.height, rgb.width, 3).permute(2, 0, 1)


def read_image(path) -> torch.Tensor:
    """A photo a user gives (to detect on, or to show feature maps of), turned upright by its EXIF orientation."""
    try:
        return decode_image(path, upright=True)
    except Exception as err:
        raise UserError(f"cannot read image {path} ({describe(err)})") from None


def decode_and_resize(path, size, resize=None):
    """(uint8 3×size×size tensor, None) or (None, reason) for an unreadable file."""
    try:
        return resize_center_crop(decode_image(path), size, resize), None
    except Exception as err:  # a bad file is reported and skipped, never fatal
        return None, describe(err)


@dataclass
class TensorSet:
    images: torch.Tensor  # uint8 N×3×S×S
    labels: torch.Tensor  # int64 N
    classes: List[str]
    paths: List[str]
    skipped: List[Tuple[str, str]]  # (path, reason) of files that could not be decoded

    def __len__(self):
        return len(self.labels)


def load_tensor_set(root, samples, classes, size, cache_dir=DEFAULT_CACHE, progress=True, resize=None) -> TensorSet:
    """Decode `samples` once at `size`; later calls with the same files and size read the cache.

    The cache key covers each file's path, byte size and mtime, so a changed file set builds a
    new cache instead of serving stale tensors.
    """
    root = Path(root)
    stats = []
    for rel, _ in samples:
        st = (root / rel).stat()
        stats.append((rel, st.st_size, int(st.st_mtime)))
    key = _fingerprint([str(root.resolve()), size, resize, classes, samples, stats])
    tag = f"{size}px" if resize in (None, size) else f"{resize}to{size}px"
    path = Path(cache_dir) / "images" / f"{root.parent.name}-{root.name}-{tag}-{key}.pt"
    cached = _read_tensor_cache(path, len(samples), size)
    if cached is not None:
        return cached
    _check_memory_for(len(samples), size, root)
    tensor_set = _decode_all(root, samples, classes, size, resize, progress)
    save_torch(path, tensor_set.__dict__)
    return tensor_set


def _decode_all(root, samples, classes, size, resize, progress) -> TensorSet:
    """Decode every sample in threads; unreadable files are skipped with a warning, unless a whole class is."""
    out = torch.empty(len(samples), 3, size, size, dtype=torch.uint8)
    ok = torch.zeros(len(samples), dtype=torch.bool)
    skipped = []
    with ThreadPoolExecutor(os.cpu_count() or 1) as pool:
        results = pool.map(lambda s: decode_and_resize(root / s[0], size, resize), samples)
        for i, (image, reason) in enumerate(tqdm(results, total=len(samples), desc=f"decode {root.name} @{size}px",
                                                 disable=None if progress else True, unit="img")):
            if image is None:
                skipped.append((samples[i][0], reason))
            else:
                out[i] = image
                ok[i] = True
    if skipped:
        warnings.warn(f"skipped {len(skipped)} unreadable image(s) in {root}, e.g. {skipped[0][0]} ({skipped[0][1]})")
    keep = ok.nonzero().flatten()
    tensor_set = TensorSet(
        images=out[keep].contiguous(),
        labels=torch.tensor([samples[i][1] for i in keep.tolist()], dtype=torch.long),
        classes=list(classes),
        paths=[samples[i][0] for i in keep.tolist()],
        skipped=skipped,
    )
    if len(tensor_set) == 0:
        raise UserError(f"none of the {len(samples)} images in {root} could be decoded")
    present = set(tensor_set.labels.tolist())
    empty = [c for i, c in enumerate(classes) if i not in present and any(label == i for _, label in samples)]
    if empty:
        raise UserError(f"every image of class {empty[0]!r} in {root} is unreadable ({len(empty)} such class(es)); "
                        f"fix or remove {root / empty[0]}")
    return tensor_set


def _check_memory_for(count, size, root):
    """The decoded set must fit in memory (with room for training): a clear error instead of an OOM kill."""
    needed = count * 3 * size * size
    try:  # MemAvailable (Linux); where it cannot be read, nothing is checked
        line = next(line for line in Path("/proc/meminfo").read_text().splitlines() if line.startswith("MemAvailable:"))
        available = int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError, StopIteration):
        return
    if needed > 0.8 * available:
        raise UserError(f"decoding {count} images of {root} at {size} px needs {needed / 2**30:.1f} GiB but only "
                        f"{available / 2**30:.1f} GiB of memory is free; use a smaller --image-size")


def _read_tensor_cache(path: Path, count: int, size: int):
    """The cached TensorSet at `path` (loaded with weights_only), or None when it is missing — or, with a warning
    naming it, unreadable or not what it should be: it is then rebuilt."""
    if not path.exists():
        return None
    try:
        cached = torch.load(path, weights_only=True)
        tensor_set = TensorSet(**cached)
        images = tensor_set.images
        if (images.dtype != torch.uint8 or images.dim() != 4 or tuple(images.shape[1:]) != (3, size, size)
                or len(tensor_set.labels) != len(images) or len(images) + len(tensor_set.skipped) != count):
            raise ValueError("unexpected contents")
        return tensor_set
    except Exception as err:
        warnings.warn(f"decode cache {path} is damaged ({describe(err)}); rebuilding it")
        return None


def channel_stats(images: torch.Tensor):
    """Per-channel mean and std (0..1 scale) of a uint8 N×3×H×W tensor, computed in chunks."""
    total = torch.zeros(3, dtype=torch.float64)
    total_sq = torch.zeros(3, dtype=torch.float64)
    for chunk in images.split(512):
        x = chunk.double() / 255.0
        total += x.sum(dim=(0, 2, 3))
        total_sq += (x * x).sum(dim=(0, 2, 3))
    count = images.shape[0] * images.shape[2] * images.shape[3]
    mean = total / count
    std = (total_sq / count - mean**2).clamp_min(1e-12).sqrt()
    return mean.float().tolist(), std.float().tolist()


def content_digest(*tensors) -> str:
    """sha1 of tensors' bytes (≈ 1 GB/s): other pictures under the same file names give another digest."""
    digest = hashlib.sha1()
    for tensor in tensors:
        digest.update(memoryview(tensor.detach().cpu().contiguous().numpy()).cast("B"))
    return digest.hexdigest()[:16]


@dataclass
class TrainValData:
    train: TensorSet
    val: TensorSet
    classes: List[str]
    mean: List[float]
    std: List[float]
    split_file: Path
    dataset: DatasetPaths

    @functools.cached_property
    def content_digest(self) -> str:
        """What the images are, not what they are called: a resume and the feature cache check it (once)."""
        return content_digest(self.train.images, self.val.images)


def load_train_val(data_dir, image_size, val_fraction=0.2, seed=42, cache_dir=DEFAULT_CACHE,
                   download=True, progress=True, resize=None) -> TrainValData:
    """Everything training needs — and nothing from the test folder."""
    dataset = locate_dataset(data_dir, download=download, progress=progress)
    scan = scan_image_folder(dataset.train_dir)
    train_samples, val_samples, split_file = load_or_make_split(scan, val_fraction, seed, cache_dir)
    train = load_tensor_set(dataset.train_dir, train_samples, scan.classes, image_size, cache_dir, progress, resize=resize)
    val = load_tensor_set(dataset.train_dir, val_samples, scan.classes, image_size, cache_dir, progress, resize=resize)
    mean, std = channel_stats(train.images)
    return TrainValData(train, val, scan.classes, mean, std, split_file, dataset)
