"""A full disk is one clear line naming the folder, and leaves nothing half-written behind."""
import errno
import shutil
import zipfile

import click
import numpy as np
import pytest
from click.testing import CliRunner
from filelock import lock_descriptor

import common.dataset_zip as data
import common.io as io
from common.data import load_train_val
from common.dataset_zip import extract_zip
from common.cli import OneLineErrors
from common.errors import UserError
from common.locks import held_or_refused, take_and_sign
from common.viz import plt, save
from partA.from_scratch import run_scratch
from partC.media import VideoWriter

from conftest import fill_disk, options


def big_zip(path, megabytes):
    """A zip holding `megabytes` of zeros (a few KB packed): the iNaturalist layout's first folder."""
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("inaturalist_12K/train/a/0.jpg", b"\0" * (megabytes * 2**20))
    return path


def test_a_zip_larger_than_the_free_space_is_refused_before_extracting(small_disk, tmp_path):
    archive = big_zip(tmp_path / "nature_12K.zip", 8)  # 8 MiB unpacked, on a 4 MiB disk
    with pytest.raises(UserError, match=r"unpacks to 0\.01 GiB but .* free; free space there"):
        extract_zip(archive, small_disk, progress=False)
    assert list(small_disk.iterdir()) == []


def test_a_disk_that_fills_during_extraction_is_left_as_it_was(small_disk, tmp_path, monkeypatch):
    monkeypatch.setattr(data, "_check_free_space", lambda *args: None)  # another writer took the space meanwhile
    archive = big_zip(tmp_path / "nature_12K.zip", 8)
    with pytest.raises(UserError, match="filled up while extracting nature_12K.zip; the partial folder was removed"):
        data.extract_zip(archive, small_disk, progress=False)
    assert list(small_disk.iterdir()) == [] and shutil.disk_usage(small_disk).used < 2**20


def test_a_full_runs_dir_is_one_line_naming_it(small_disk, tiny_data, tmp_path):
    fill_disk(small_disk, leave=8 * 1024)  # the record fits, a checkpoint does not
    with pytest.raises(UserError, match=f"no space left in {small_disk / 'runs' / 'full'}"):
        run_scratch(options(tmp_path, epochs=1, run_name="full", runs_dir=str(small_disk / "runs")), data=tiny_data)
    # no half-written temp file left behind, and nothing else either: the run died before its first checkpoint, so
    # its folder (with its lock) went and the name is free again
    assert not (small_disk / "runs" / "full").exists()


def test_a_full_cache_dir_is_one_line_naming_it(small_disk, demo_root, tmp_path):
    fill_disk(small_disk, leave=8 * 1024)
    with pytest.raises(UserError, match=f"no space left in {small_disk / 'cache'}"):
        load_train_val(demo_root, 32, cache_dir=small_disk / "cache", progress=False)


def test_enospc_at_the_write_call_is_one_line_where_no_small_disk_can_be_mounted(tmp_path, monkeypatch):
    def no_space(obj, handle):
        handle.write(b"PK\3\4partial")
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(io.torch, "save", no_space)
    with pytest.raises(UserError, match=rf"no space left in {tmp_path} \(.* MiB free\) while writing last.pt"):
        io.save_torch(tmp_path / "last.pt", {"x": 1})
    assert list(tmp_path.iterdir()) == []


def test_a_figure_on_a_full_disk_is_one_line_and_no_truncated_file(small_disk):
    # evaluate.py --out on a nearly full disk left a test_grid.png of exactly 1 MiB that no viewer opens
    fill_disk(small_disk, leave=8 * 1024)
    fig, ax = plt.subplots(figsize=(20, 20))
    ax.imshow(np.random.default_rng(0).random((800, 800, 3)))  # noise: a PNG of megabytes
    with pytest.raises(UserError, match=rf"no space left in {small_disk} \(0\.\d MiB free\) while writing grid.png"):
        save(fig, small_disk / "grid.png")
    assert sorted(p.name for p in small_disk.iterdir()) == ["filler.bin"]


def test_a_full_disk_at_the_lock_is_one_line(small_disk):
    # train.py --runs-dir on a full disk: a traceback at take_and_sign (OSError: [Errno 28])
    with open(small_disk / "run.lock", "a+") as handle:
        fill_disk(small_disk, leave=0)
        with pytest.raises(UserError, match=f"no space left in {small_disk} .* while writing run.lock"):
            take_and_sign(handle, small_disk / "run.lock")
    # the hand-in's lock (filelock's on_acquired writes the holder): the same line, and the failed take leaves it free
    with pytest.raises(UserError, match=f"no space left in {small_disk} .* while writing assignment.lock"):
        with held_or_refused(small_disk / "assignment.lock", "busy"):
            pass
    with open(small_disk / "assignment.lock") as handle:
        assert lock_descriptor(handle.fileno(), blocking=False)


def test_a_full_disk_anywhere_in_a_command_is_one_line_naming_the_folder(tmp_path):
    @click.command(cls=OneLineErrors)
    def writes():
        raise OSError(errno.ENOSPC, "No space left on device", str(tmp_path / "out" / "clip.mp4"))

    result = CliRunner().invoke(writes, [])
    assert result.exit_code == 1 and result.output.count("\n") == 1
    assert f"Error: no space left in {tmp_path / 'out'} (" in result.output and "while writing clip.mp4" in result.output


def test_a_video_is_under_its_name_only_once_it_is_complete(tmp_path):
    writer = VideoWriter(tmp_path / "clip.mp4", fps=5, width=64, height=48)
    for _ in range(3):
        writer.write(np.zeros((48, 64, 3), np.uint8))
    assert not (tmp_path / "clip.mp4").exists()  # a kill or a full disk now leaves no truncated clip under the name
    writer.close()
    assert (tmp_path / "clip.mp4").stat().st_size > 0 and [p.name for p in tmp_path.iterdir()] == ["clip.mp4"]


def test_a_clip_that_fills_the_disk_is_removed_and_named_by_its_own_name(small_disk):
    # camera_trap.py --out on a full disk left a partial clip behind, named by its temporary name
    fill_disk(small_disk, leave=64 * 1024)
    writer = VideoWriter(small_disk / "clip.mp4", fps=5, width=320, height=240)
    noise = np.random.default_rng(0)
    with pytest.raises(OSError) as failed:
        for _ in range(200):  # noise encodes to tens of KB a frame: the 64 KB left run out within a few
            writer.write(noise.integers(0, 256, (240, 320, 3), dtype=np.uint8))
        writer.close()
    assert failed.value.errno == errno.ENOSPC and failed.value.filename == str(small_disk / "clip.mp4")
    assert sorted(p.name for p in small_disk.iterdir()) == ["filler.bin"]
