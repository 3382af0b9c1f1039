"""Where the dataset comes from: a folder holding inaturalist_12K/{train,val}, a zip extracted there once (a marker
remembers which zip, a lock makes concurrent runs wait instead of racing), or the zip downloaded (resumable,
CRC-checked as it is extracted) into the default folder. `common/data.py` then scans, splits and decodes what this finds."""
import difflib
import errno
import os
import shutil
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path

from tqdm import tqdm

from common.download import download_file
from common.errors import UserError, describe
from common.io import save_json
from common.locks import file_lock
from common.state import ExtractionMarker, read_state_or_none

IMAGE_EXTENSIONS = {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff"}

DATASET_URL = "https://storage.googleapis.com/wandb_datasets/nature_12K.zip"
DEFAULT_DATA_DIR = "data"  # the one folder a missing dataset is downloaded into without being asked
ZIP_NAME = "nature_12K.zip"
DATASET_FOLDER = "inaturalist_12K"
DATASET_PREFIXES = (f"{DATASET_FOLDER}/train/", f"{DATASET_FOLDER}/val/")  # the folders that make a zip the dataset's


@dataclass(frozen=True)
class DatasetPaths:
    """Where a dataset lives. Only the training folder is exposed to training code."""

    root: Path
    train_dir: Path


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
        download_file(url, zip_path, progress=progress, verify=lambda part: verify_zip(part, DATASET_PREFIXES), hint=(
            f"Download {url} by hand into {data_dir}/ (or pass --data-dir to a folder holding it), "
            f"or try offline with the demo data: `make demo-data` then --data-dir data/demo"
        ))
    return _dataset_from_zip(zip_path, data_dir, progress)


def _did_you_mean(missing: Path) -> str:
    """' (did you mean X?)' naming the closest existing folder beside the missing one, or ''."""
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


def _dataset_from_zip(zip_path: Path, data_dir: Path, progress=True) -> DatasetPaths:
    """The dataset extracted from `zip_path` into `data_dir`: extracted now under a lock, or reused."""
    stamp = {"zip": zip_path.name, "size": (stat := zip_path.stat()).st_size, "mtime_ns": stat.st_mtime_ns}
    with file_lock(data_dir / f".{zip_path.name}.lock",
                   waiting_message=f"waiting for another process that is extracting {zip_path} ..."):
        root = _dataset_root_in(data_dir)
        marker = data_dir / DATASET_FOLDER / EXTRACTED_MARKER
        if root is not None:
            stored = read_state_or_none(marker, ExtractionMarker)  # damaged: as if made by hand, never reused
            if stored == stamp:
                return DatasetPaths(root=root, train_dir=root / "train")
            origin = "from another copy of the zip" if stored else "by hand (it has no extraction marker)"
            raise UserError(f"{root} already exists, made {origin}; use --data-dir {root} to train on it, or move it "
                            f"away to extract {zip_path} afresh")
        try:
            verify_zip(zip_path, DATASET_PREFIXES)  # its member list alone: the extraction checks each CRC as it reads
            extract_zip(zip_path, data_dir, progress=progress)
        except CorruptZip as err:
            rejected = zip_path.with_name(zip_path.name + ".corrupt")
            os.replace(zip_path, rejected)  # renamed, not deleted (it is the user's); the next run downloads afresh
            raise UserError(f"{err.message.split(';')[0]}; moved it aside to {rejected} — run again to download a "
                            f"fresh copy, or put a good {zip_path.name} there") from None
        save_json(marker, stamp)
    root = _dataset_root_in(data_dir)
    if root is None:
        raise UserError(f"{zip_path} extracted, but {data_dir} still has no {DATASET_FOLDER}/train and /val")
    return DatasetPaths(root=root, train_dir=root / "train")


# ------------------------------------------------------------------ the archive: verify, then extract

class CorruptZip(UserError):
    """A zip whose bytes are damaged (no readable member list, or a member failing its CRC): moved aside, not used."""


def verify_zip(path, required_prefixes=()):
    """The member names, read from the central directory alone (a cut-off zip has none): no member's data is read."""
    try:
        with zipfile.ZipFile(path) as archive:
            names = archive.namelist()
    except (zipfile.BadZipFile, OSError, EOFError) as err:
        raise CorruptZip(f"{path} is not a readable zip archive ({err}); delete it and download again") from None
    for prefix in required_prefixes:
        if not any(name.startswith(prefix) for name in names):
            raise UserError(f"{path} is a valid zip but not the iNaturalist-12K archive: the expected folder "
                            f"{prefix!r} is missing; pass the dataset's zip with --data-dir (this one was left as it is)")
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
        unsafe = next((m.filename for m in members if not (tmp / m.filename).resolve().is_relative_to(tmp.resolve())),
                      None)
        if unsafe is not None:  # zip slip: checked first, so its message is not a clash with the folder above
            raise UserError(f"{path} holds an unsafe path {unsafe!r}; refusing to extract (nothing was changed)")
        tops = {m.filename.split("/", 1)[0] for m in members if not m.filename.startswith("__MACOSX")}
        clash = sorted(t for t in tops if t and (dest_dir / t).exists())
        if clash:
            raise UserError(f"{dest_dir / clash[0]} already exists; extracting {Path(path).name} would replace it — "
                            f"move it away first (nothing was changed)")
        _check_free_space(dest_dir, sum(m.file_size for m in members), Path(path).name)
        tmp.mkdir(parents=True)
        try:
            for member in tqdm(members, desc=f"extract {Path(path).name}", unit="file", disable=not progress):
                archive.extract(member, tmp)
        except BaseException as err:
            shutil.rmtree(tmp, ignore_errors=True)  # never leave a half-extracted folder (or a full disk) behind
            if isinstance(err, OSError) and err.errno == errno.ENOSPC:
                raise UserError(f"the disk holding {dest_dir} filled up while extracting {Path(path).name}; the "
                                f"partial folder was removed — free space and run again") from None
            if isinstance(err, (zipfile.BadZipFile, zlib.error, EOFError)):  # damaged bytes, found as they are read
                raise CorruptZip(f"{path} is corrupt ({describe(err)}), its partial extraction removed; get a new copy") from None
            raise
    for entry in tmp.iterdir():
        if entry.name.startswith("__MACOSX"):
            continue
        os.replace(entry, dest_dir / entry.name)
    shutil.rmtree(tmp)
