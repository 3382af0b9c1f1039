"""Data: locate (or download) the dataset, scan + validate, stratified split, decoded cache.

Flow: folder or zip → `scan_image_folder` → `load_or_make_split` (saved JSON) →
`load_tensor_set` (uint8 N×3×S×S decoded once per file set and size, cached on disk).

The TEST folder (`inaturalist_12K/val`) is deliberately absent from everything here that
training uses: `DatasetPaths` exposes only `train_dir`; the test folder is found only by
`partA.testset`, which the test-evaluation commands alone import.
"""
import errno
import functools
import hashlib
import json
import os
import random
import shutil
import warnings
import zipfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import List, Tuple

import torch
import torch.nn.functional as F
from PIL import Image, ImageOps
from tqdm import tqdm

from common.download import download_file
from common.errors import UserError
from common.io import save_json

DATASET_URL = "https://storage.googleapis.com/wandb_datasets/nature_12K.zip"
DEFAULT_DATA_DIR = "data"  # the one folder a missing dataset is downloaded into without being asked
ZIP_NAME = "nature_12K.zip"
DATASET_FOLDER = "inaturalist_12K"
IMAGE_EXTENSIONS = {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff"}
DEFAULT_CACHE = Path(os.environ.get("INAT_CACHE", "cache"))


@dataclass(frozen=True)
class DatasetPaths:
    """Where a dataset lives. Only the training folder is exposed to training code."""

    root: Path
    train_dir: Path

    @property
    def name(self):
        return self.root.name


def _dataset_root_in(folder: Path):
    """The folder holding train/ and val/ at or one level below `folder`, or None."""
    for candidate in (folder, folder / DATASET_FOLDER):
        if (candidate / "train").is_dir() and (candidate / "val").is_dir():
            return candidate
    return None


EXTRACTED_MARKER = ".extracted-from.json"  # written inside inaturalist_12K/ after a complete extraction


def locate_dataset(data_dir, download=True, url=DATASET_URL, progress=True) -> DatasetPaths:
    """Find `train/`+`val/` in `data_dir`, else extract a zip there (once), else download the zip.

    `data_dir` may be the dataset folder itself, its parent, a folder holding `nature_12K.zip`,
    or the zip file. A zip is extracted once: a marker remembers which zip (name, size, mtime)
    the folder came from, later runs reuse the folder, and a lock makes concurrent runs wait for
    one extraction instead of racing.
    """
    data_dir = Path(data_dir)
    if data_dir.suffix.lower() == ".zip":
        if not data_dir.is_file():
            raise UserError(f"zip file {data_dir} does not exist; pass the folder or the zip you have with --data-dir")
        return _dataset_from_zip(data_dir, data_dir.parent, progress)
    if data_dir.exists() and not data_dir.is_dir():
        raise UserError(f"--data-dir {data_dir} is a file, not a folder or a .zip: pass the folder that holds "
                        f"{DATASET_FOLDER}/ (or {ZIP_NAME})")
    root = _dataset_root_in(data_dir) if data_dir.is_dir() else None
    if root is not None:
        return DatasetPaths(root=root, train_dir=root / "train")
    for candidate in (data_dir, data_dir / DATASET_FOLDER):
        if (candidate / "train").is_dir() or (candidate / "val").is_dir():
            missing = "val" if (candidate / "train").is_dir() else "train"
            raise UserError(f"{candidate} has {'train' if missing == 'val' else 'val'}/ but no {missing}/: the "
                            f"dataset is incomplete; restore {candidate / missing} or point --data-dir elsewhere")
    zip_path = data_dir / ZIP_NAME
    if not zip_path.is_file():
        _refuse_image_folder_as_download_target(data_dir)
        if download and not data_dir.exists() and data_dir != Path(DEFAULT_DATA_DIR):
            raise UserError(f"--data-dir {data_dir} not found{_did_you_mean(data_dir)}: to download the dataset "
                            f"(3.6 GB) there, create it first (mkdir -p {data_dir}); the default folder "
                            f"{DEFAULT_DATA_DIR}/ is downloaded into without asking")
        if not download:
            raise UserError(
                f"no dataset in {data_dir}: expected {DATASET_FOLDER}/train and /val or {ZIP_NAME}; "
                f"download {url} there, or run `make demo-data` and use --data-dir data/demo (make: DATA=data/demo)"
            )
        download_file(url, zip_path, progress=progress, verify=_verify_dataset_zip, hint=(
            f"Download {url} by hand into {data_dir}/ (or pass --data-dir to a folder holding it), "
            f"or try offline with the demo data: `make demo-data` then --data-dir data/demo"
        ))
    return _dataset_from_zip(zip_path, data_dir, progress)


def _did_you_mean(missing: Path) -> str:
    """' (did you mean X?)' naming the closest existing folder beside the missing one, or ''."""
    import difflib

    parent = missing.parent if missing.parent.is_dir() else Path(".")
    folders = [p.name for p in parent.iterdir() if p.is_dir() and not p.name.startswith(".")]
    close = difflib.get_close_matches(missing.name, folders, n=1, cutoff=0.6)
    return f" (did you mean {parent / close[0]}?)" if close else ""


def _refuse_image_folder_as_download_target(folder: Path):
    """A folder that already holds images or class folders is the wrong --data-dir, not a download target."""
    if not folder.is_dir():
        return
    entries = list(folder.iterdir())
    has_images = any(p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS for p in entries)
    has_classes = any(p.is_dir() and any(q.suffix.lower() in IMAGE_EXTENSIONS for q in p.iterdir() if q.is_file())
                      for p in entries)
    if not (has_images or has_classes):
        return
    hint = ""
    for parent in folder.parents:
        root = _dataset_root_in(parent)
        if root is not None:
            hint = f" The dataset is at {root}: use --data-dir {root}."
            break
    raise UserError(f"{folder} already holds {'images' if has_images else 'class folders of images'}: it is a part of "
                    f"a dataset, not a place to download one into. Pass the folder that holds {DATASET_FOLDER}/ "
                    f"(with train/ and val/).{hint}")


def _zip_stamp(zip_path: Path) -> dict:
    st = zip_path.stat()
    return {"zip": zip_path.name, "size": st.st_size, "mtime_ns": st.st_mtime_ns}


def _verify_dataset_zip(zip_path):
    verify_zip(zip_path, required_prefixes=(f"{DATASET_FOLDER}/train/", f"{DATASET_FOLDER}/val/"))


def _dataset_from_zip(zip_path: Path, data_dir: Path, progress=True) -> DatasetPaths:
    """The dataset extracted from `zip_path` into `data_dir`: extracted now under a lock, or reused."""
    from common.locks import file_lock

    stamp = _zip_stamp(zip_path)
    with file_lock(data_dir / f".{zip_path.name}.lock",
                   waiting_message=f"waiting for another process that is extracting {zip_path} ..."):
        root = _dataset_root_in(data_dir)
        marker = data_dir / DATASET_FOLDER / EXTRACTED_MARKER
        if root is not None:
            from common.state import ExtractionMarker, read_state_or_none

            stored = read_state_or_none(marker, ExtractionMarker)  # damaged: as if made by hand, never reused
            if stored == stamp:
                return DatasetPaths(root=root, train_dir=root / "train")
            origin = "from another copy of the zip" if stored else "by hand (it has no extraction marker)"
            raise UserError(f"{root} already exists, made {origin}; use --data-dir {root} to train on it, or move it "
                            f"away to extract {zip_path} afresh")
        try:
            verify_zip(zip_path)
        except UserError as err:
            rejected = zip_path.with_name(zip_path.name + ".corrupt")
            os.replace(zip_path, rejected)  # never used again; the next run downloads a fresh copy
            raise UserError(f"{err.message.split(';')[0]}; moved it aside to {rejected} — run again to download a "
                            f"fresh copy, or put a good {zip_path.name} there") from None
        try:
            _verify_dataset_zip(zip_path)
        except UserError:
            raise UserError(f"{zip_path} is a valid zip but not the iNaturalist-12K archive: it has no "
                            f"{DATASET_FOLDER}/train/ and {DATASET_FOLDER}/val/ (left as it is)") from None
        extract_zip(zip_path, data_dir, progress=progress)
        save_json(marker, stamp)
    root = _dataset_root_in(data_dir)
    if root is None:
        raise UserError(f"{zip_path} extracted, but {data_dir} still has no {DATASET_FOLDER}/train and /val")
    return DatasetPaths(root=root, train_dir=root / "train")


# ------------------------------------------------------------------ the archive: verify, then extract

def verify_zip(path, required_prefixes=()):
    """Raise UserError unless every member's CRC is right and each required prefix is present."""
    try:
        with zipfile.ZipFile(path) as archive:
            bad = archive.testzip()
            names = archive.namelist()
    except (zipfile.BadZipFile, OSError, EOFError) as err:
        raise UserError(f"{path} is not a readable zip archive ({err}); delete it and download again") from None
    if bad is not None:
        raise UserError(f"{path} is corrupt: member {bad} fails its CRC check; delete it and download again")
    for prefix in required_prefixes:
        if not any(name.startswith(prefix) for name in names):
            raise UserError(f"{path} does not hold the expected folder {prefix!r}; is it the right archive?")
    return names


DISK_MARGIN = 64 * 2**20  # free space kept beyond the archive's unpacked size (file-system overhead, other writers)


def _check_free_space(folder, needed, what):
    free = shutil.disk_usage(folder).free
    if needed + DISK_MARGIN > free:
        raise UserError(f"{what} unpacks to {needed / 2**30:.2f} GiB but {folder} has {free / 2**30:.2f} GiB free; "
                        f"free space there or give another --data-dir (nothing was changed)")


def extract_zip(path, dest_dir, progress=True):
    """Extract into a temporary sibling folder, then move the top-level entries into place.

    An existing entry of the same name is never deleted or merged into: that is an error. The unpacked
    size is compared with the free space first, and a failed extraction removes its partial folder.
    """
    dest_dir = Path(dest_dir)
    dest_dir.mkdir(parents=True, exist_ok=True)
    tmp = dest_dir / f".extract-{Path(path).stem}.tmp"  # ours: left only by a killed extraction
    if tmp.exists():
        shutil.rmtree(tmp)
    with zipfile.ZipFile(path) as archive:
        members = archive.infolist()
        tops = {m.filename.split("/", 1)[0] for m in members if not m.filename.startswith("__MACOSX")}
        clash = sorted(t for t in tops if t and (dest_dir / t).exists())
        if clash:
            raise UserError(f"{dest_dir / clash[0]} already exists; extracting {Path(path).name} would replace it — "
                            f"move it away first (nothing was changed)")
        _check_free_space(dest_dir, sum(m.file_size for m in members), Path(path).name)
        tmp.mkdir(parents=True)
        try:
            for member in tqdm(members, desc=f"extract {Path(path).name}", unit="file", disable=not progress):
                target = (tmp / member.filename).resolve()
                if not target.is_relative_to(tmp.resolve()):  # refuse zip-slip paths
                    raise UserError(f"{path} holds an unsafe path {member.filename!r}; refusing to extract")
                archive.extract(member, tmp)
        except BaseException as err:
            shutil.rmtree(tmp, ignore_errors=True)  # never leave a half-extracted folder (or a full disk) behind
            if isinstance(err, OSError) and err.errno == errno.ENOSPC:
                raise UserError(f"the disk holding {dest_dir} filled up while extracting {Path(path).name}; the "
                                f"partial folder was removed — free space and run again") from None
            raise
    for entry in tmp.iterdir():
        if entry.name.startswith("__MACOSX"):
            continue
        os.replace(entry, dest_dir / entry.name)
    shutil.rmtree(tmp)


@dataclass
class FolderScan:
    root: Path
    classes: List[str]
    samples: List[Tuple[str, int]]  # (path relative to root, class index)
    skipped_non_images: List[str]


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
    escaping = sorted(p.name for p in folders if _outside(p, inside))
    classes = sorted(p.name for p in folders if p.name not in escaping)
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
    return FolderScan(root=root, classes=classes, samples=samples, skipped_non_images=skipped)


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
        stored = json.loads(path.read_text())
        stored_train = [tuple(s) for s in stored["train"]]
        stored_val = [tuple(s) for s in stored["val"]]
    except (OSError, ValueError, KeyError, TypeError) as err:
        return f"is damaged ({type(err).__name__})"
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
    import numpy as np

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
        raise UserError(f"cannot read image {path} ({type(err).__name__}: {err})") from None


def decode_and_resize(path, size, resize=None):
    """(uint8 3×size×size tensor, None) or (None, reason) for an unreadable file."""
    try:
        return resize_center_crop(decode_image(path), size, resize), None
    except Exception as err:  # a bad file is reported and skipped, never fatal
        return None, f"{type(err).__name__}: {err}"


@dataclass
class TensorSet:
    images: torch.Tensor  # uint8 N×3×S×S
    labels: torch.Tensor  # int64 N
    classes: List[str]
    paths: List[str]
    skipped: List[Tuple[str, str]]  # (path, reason) of files that could not be decoded

    def __len__(self):
        return len(self.labels)


def load_tensor_set(root, samples, classes, size, cache_dir=DEFAULT_CACHE, progress=True, workers=None,
                    resize=None) -> TensorSet:
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
    out = torch.empty(len(samples), 3, size, size, dtype=torch.uint8)
    ok = torch.zeros(len(samples), dtype=torch.bool)
    skipped = []
    workers = workers or os.cpu_count() or 1
    with ThreadPoolExecutor(workers) as pool:
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
    from common.io import save_torch  # local: keeps the import graph of this module small

    save_torch(path, tensor_set.__dict__)
    return tensor_set


def available_memory_bytes():
    """MemAvailable from /proc/meminfo (Linux), or None where it cannot be read."""
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def _check_memory_for(count, size, root):
    """The decoded set must fit in memory (with room for training): a clear error instead of an OOM kill."""
    needed = count * 3 * size * size
    available = available_memory_bytes()
    if available is not None and needed > 0.8 * available:
        raise UserError(f"decoding {count} images of {root} at {size} px needs {needed / 2**30:.1f} GiB but only "
                        f"{available / 2**30:.1f} GiB of memory is free; use a smaller --image-size")


def _read_tensor_cache(path: Path, count: int, size: int):
    """The cached TensorSet at `path`, or None when it is missing, unreadable or not what it should be.

    Loaded with weights_only (a crafted cache file cannot run code); a damaged file is rebuilt
    with a warning naming it, never trusted and never fatal.
    """
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
        warnings.warn(f"decode cache {path} is damaged ({type(err).__name__}: {err}); rebuilding it")
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
