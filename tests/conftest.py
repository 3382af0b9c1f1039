"""Shared fixtures: tiny image folders, the demo dataset at test scale, a local HTTP server."""
import os
import shutil
import subprocess
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import torch
from PIL import Image

from common.data import load_train_val
from common.demo_data import generate_demo_dataset

os.environ.setdefault("WANDB_MODE", "disabled")  # never block on the network in tests
os.environ.setdefault("WANDB_SILENT", "true")

ROOT = Path(__file__).resolve().parents[1]
DARKNET_DATA = Path("/usr/share/darknet/data")


def write_image(path, size=(40, 30), mode="RGB", colour=(200, 30, 30), fmt=None):
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    image = Image.new("RGB", size, colour)
    image = image.convert(mode) if mode != "RGB" else image
    image.save(path, format=fmt)
    return path


SLOW_FIXTURES = {"demo_root", "tiny_data", "detector_factory", "lite0"}
SLOW_MODULES = {"test_leakage", "test_structure", "test_tracking"}
SLOW_CALLS = {"subprocess", "run_cli", "run_detect", "run_python", "audited", "run_scratch", "run_finetune"}


def pytest_collection_modifyitems(config, items):
    """Markers that say what a test needs: darknet (Debian's photos and cfgs), network (a server on
    127.0.0.1 that the test starts), gpu (a CUDA device). Tests whose need is missing are skipped, saying why."""
    for item in items:
        fixtures = set(getattr(item, "fixturenames", ()))
        if {"http_server", "silent_server"} & fixtures:
            item.add_marker(pytest.mark.network)
        # slow: trains or decodes the demo data, loads real weights, or runs a whole script in a subprocess
        if (SLOW_FIXTURES & fixtures or item.module.__name__ in SLOW_MODULES
                or SLOW_CALLS & set(getattr(item.function, "__code__", None).co_names)):
            item.add_marker(pytest.mark.slow)
        if "darknet" in item.keywords and not DARKNET_DATA.is_dir():
            item.add_marker(pytest.mark.skip(reason="needs Debian's darknet package (apt-get install darknet; "
                                                    ".ci/run installs it)"))
        if "gpu" in item.keywords and not torch.cuda.is_available():
            item.add_marker(pytest.mark.skip(reason="needs a CUDA GPU (make gpu-check runs the GPU paths)"))


# A tiny CNN on 32-px demo images: real training in a second or two.
TINY = dict(image_size=32, filters="4,8,8,16,16", dense_units=16, batch_size=16, wandb="disabled", quiet=True,
            lr=3e-3, warmup_epochs=0.5)


def options(tmp_path, **extra):
    return {**TINY, "runs_dir": str(tmp_path / "runs"), "cache_dir": str(tmp_path / "cache"), **extra}


@pytest.fixture(scope="module")
def tiny_data(demo_root, tmp_path_factory):
    return load_train_val(demo_root, 32, cache_dir=tmp_path_factory.mktemp("cache"), progress=False)


@pytest.fixture(scope="session")
def demo_root(tmp_path_factory):
    """The real demo generator at test scale: 10 classes, 12 train + 3 test images each."""
    out = tmp_path_factory.mktemp("demo")
    generate_demo_dataset(out, train_per_class=12, test_per_class=3, seed=0)
    return out


class _Handler(BaseHTTPRequestHandler):
    files = {}  # path → bytes
    drop_after = {}  # path → byte count after which the first response is cut off
    honour_range = True
    requests = []
    no_length = set()

    def log_message(self, *args):
        pass

    def do_GET(self):
        type(self).requests.append((self.path, self.headers.get("Range")))
        body = self.files.get(self.path)
        if body is None:
            self.send_error(404)
            return
        start = 0
        range_header = self.headers.get("Range")
        if range_header and self.honour_range:
            start = int(range_header.split("=")[1].split("-")[0])
            if start >= len(body):
                self.send_error(416)
                return
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
        else:
            self.send_response(200)
        chunk = body[start:]
        if self.path not in self.no_length:  # without a length, the end of the body is the closed connection
            self.send_header("Content-Length", str(len(chunk)))
        self.end_headers()
        cut = self.drop_after.pop(self.path, None)
        if cut is not None:
            self.wfile.write(chunk[:cut])
            self.wfile.flush()
            self.connection.shutdown(2)  # the transfer dies half-way, like a dropped connection
            self.close_connection = True
            return
        self.wfile.write(chunk)


@pytest.fixture
def http_server():
    """A file server on 127.0.0.1 with Range support; `server.files['/x'] = bytes`."""
    handler = type("Handler", (_Handler,), {"files": {}, "drop_after": {}, "requests": [], "honour_range": True,
                                            "no_length": set()})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    server.handler = handler
    server.url = f"http://127.0.0.1:{server.server_address[1]}"
    yield server
    server.shutdown()
    server.server_close()


@pytest.fixture
def small_disk(tmp_path):
    """A 4 MiB tmpfs: a real full disk, where this machine lets the tests mount one (root on Linux; CI is)."""
    mount = tmp_path / "small-disk"
    mount.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(mount)], capture_output=True)
    if done.returncode != 0:
        pytest.skip("cannot mount a small tmpfs here (needs root); test_io's simulated ENOSPC covers the code path")
    yield mount
    subprocess.run(["umount", "-l", str(mount)], capture_output=True)


def fill_disk(folder, leave=16 * 1024):
    """Fill the file system holding `folder` until `leave` bytes are free; returns the filler file."""
    filler = Path(folder) / "filler.bin"
    with open(filler, "wb") as handle:
        handle.write(b"\0" * max(0, shutil.disk_usage(folder).free - leave))
    return filler
