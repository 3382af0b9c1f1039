"""A full disk is one clear line naming the folder, and leaves nothing half-written behind."""
import errno
import shutil
import zipfile

import pytest

import common.dataset_zip as data
import common.io as io
from common.data import load_train_val
from common.dataset_zip import extract_zip
from common.errors import UserError
from partA.from_scratch import run_scratch

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
    with pytest.raises(UserError, match=f"no space left in {tmp_path} while writing last.pt"):
        io.save_torch(tmp_path / "last.pt", {"x": 1})
    assert list(tmp_path.iterdir()) == []
