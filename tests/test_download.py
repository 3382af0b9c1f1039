"""The real download path, against a local HTTP server: progress, resume, integrity, extraction."""
import collections
import hashlib
import io
import re
import struct
import subprocess
import sys
import zipfile

import pytest

from common.dataset_zip import extract_zip, locate_dataset
from common.dataset_zip import verify_zip
from common.download import download_file
from common.errors import UserError

from conftest import ROOT, write_image


def dataset_zip(tmp_path, compression=zipfile.ZIP_STORED):
    """A small zip with the real archive's layout (inaturalist_12K/{train,val}/<class>/...)."""
    buffer = io.BytesIO()
    image = write_image(tmp_path / "src.jpg").read_bytes()
    with zipfile.ZipFile(buffer, "w", compression) as archive:
        for split in ("train", "val"):
            for cls in ("Aves", "Fungi"):
                for i in range(3):
                    archive.writestr(f"inaturalist_12K/{split}/{cls}/{i:032x}.jpg", image + bytes(i))
    return buffer.getvalue()


def test_download_writes_complete_file_and_checks_sha256(http_server, tmp_path):
    body = bytes(range(256)) * 4000
    http_server.handler.files["/f.bin"] = body
    dest = download_file(f"{http_server.url}/f.bin", tmp_path / "f.bin", sha256=hashlib.sha256(body).hexdigest(),
                         progress=False)
    assert dest.read_bytes() == body and not (tmp_path / "f.bin.part").exists()


def test_interrupted_download_resumes_with_a_range_request(http_server, tmp_path):
    body = bytes(range(256)) * 8000
    http_server.handler.files["/big.bin"] = body
    http_server.handler.drop_after["/big.bin"] = 300_000
    with pytest.raises(UserError, match="run the same command again to resume"):
        download_file(f"{http_server.url}/big.bin", tmp_path / "big.bin", progress=False)
    assert not (tmp_path / "big.bin").exists()
    assert (tmp_path / "big.bin.part").stat().st_size == 300_000
    download_file(f"{http_server.url}/big.bin", tmp_path / "big.bin", progress=False)
    assert (tmp_path / "big.bin").read_bytes() == body
    assert http_server.handler.requests[-1] == ("/big.bin", "bytes=300000-")


def test_server_without_range_support_restarts_cleanly(http_server, tmp_path):
    body = b"x" * 50_000
    http_server.handler.files["/f"] = body
    http_server.handler.honour_range = False
    (tmp_path / "f.part").write_bytes(b"garbage")
    download_file(f"{http_server.url}/f", tmp_path / "f", progress=False)
    assert (tmp_path / "f").read_bytes() == body


def test_checksum_mismatch_is_rejected_and_not_kept(http_server, tmp_path):
    http_server.handler.files["/f"] = b"tampered"
    with pytest.raises(UserError, match="sha256"):
        download_file(f"{http_server.url}/f", tmp_path / "f", sha256="0" * 64, progress=False)
    assert not (tmp_path / "f").exists() and not (tmp_path / "f.part").exists()


def test_offline_download_says_what_to_do(tmp_path):
    with pytest.raises(UserError, match="offline.*by hand"):
        download_file("http://127.0.0.1:9/nature_12K.zip", tmp_path / "z.zip", progress=False,
                      hint="Download it by hand.")


def test_locate_dataset_downloads_verifies_and_extracts_the_zip(http_server, tmp_path, monkeypatch):
    http_server.handler.files["/nature_12K.zip"] = dataset_zip(tmp_path)
    monkeypatch.chdir(tmp_path)  # the default --data-dir, data/, is downloaded into without being asked
    paths = locate_dataset("data", url=f"{http_server.url}/nature_12K.zip", progress=False)
    assert paths.train_dir.resolve() == tmp_path / "data" / "inaturalist_12K" / "train"
    assert len(list(paths.train_dir.glob("*/*.jpg"))) == 6
    assert not list((tmp_path / "data").glob(".extract-*"))
    # the second call finds the folder and neither downloads nor extracts
    http_server.handler.files.clear()
    assert locate_dataset("data", url=f"{http_server.url}/nature_12K.zip").root == paths.root


def test_a_missing_data_dir_that_is_not_the_default_is_not_downloaded_into(http_server, tmp_path):
    http_server.handler.files["/nature_12K.zip"] = dataset_zip(tmp_path)
    (tmp_path / "inat").mkdir()
    with pytest.raises(UserError, match=rf"--data-dir {tmp_path / 'inta'} not found \(did you mean {tmp_path / 'inat'}\?\)"):
        locate_dataset(tmp_path / "inta", url=f"{http_server.url}/nature_12K.zip", progress=False)
    assert not (tmp_path / "inta").exists() and http_server.handler.requests == []
    (tmp_path / "new").mkdir()  # a folder the user made for it: that is asking
    assert locate_dataset(tmp_path / "new", url=f"{http_server.url}/nature_12K.zip", progress=False).root.is_dir()


def test_corrupt_archive_is_rejected_and_set_aside(http_server, tmp_path):
    good = bytearray(dataset_zip(tmp_path))
    offset = good.index(b"JFIF") + 40  # flip bytes inside the first stored image: its CRC no longer matches
    good[offset:offset + 8] = b"\x00" * 8
    http_server.handler.files["/nature_12K.zip"] = bytes(good)
    (tmp_path / "data").mkdir()
    with pytest.raises(UserError, match="corrupt|not a readable zip"):
        locate_dataset(tmp_path / "data", url=f"{http_server.url}/nature_12K.zip", progress=False)
    assert not (tmp_path / "data" / "nature_12K.zip").exists()
    assert (tmp_path / "data" / "nature_12K.zip.corrupt").exists()
    assert not (tmp_path / "data" / "inaturalist_12K").exists()


def with_damaged_member(data: bytes, name: str) -> bytes:
    """`data` with 8 bytes flipped in the middle of `name`'s data: the member list is intact, the CRC no longer matches."""
    info = zipfile.ZipFile(io.BytesIO(data)).getinfo(name)
    name_length, extra_length = struct.unpack("<HH", data[info.header_offset + 26:info.header_offset + 30])
    middle = info.header_offset + 30 + name_length + extra_length + info.compress_size // 2
    return data[:middle] + bytes(b ^ 0xFF for b in data[middle:middle + 8]) + data[middle + 8:]


@pytest.mark.parametrize("compression", [zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED], ids=["stored", "deflated"])
def test_a_member_failing_its_crc_during_extraction_is_one_line_and_the_zip_is_set_aside(tmp_path, compression):
    zip_path = tmp_path / "mine" / "nature_12K.zip"
    zip_path.parent.mkdir()
    last = f"inaturalist_12K/val/Fungi/{2:032x}.jpg"  # extracted last: the members before it are already on disk
    damaged = with_damaged_member(dataset_zip(tmp_path, compression), last)
    zip_path.write_bytes(damaged)
    with pytest.raises(UserError, match="is corrupt.*partial extraction removed"):  # the extraction finds it itself
        extract_zip(zip_path, tmp_path / "direct", progress=False)
    assert list((tmp_path / "direct").iterdir()) == []
    with pytest.raises(UserError) as caught:
        locate_dataset(zip_path, download=False, progress=False)
    assert "\n" not in caught.value.message
    assert re.search(r"is corrupt .*partial extraction removed; moved it aside to .*nature_12K.zip.corrupt",
                     caught.value.message), caught.value.message
    assert not zip_path.exists() and (zip_path.parent / "nature_12K.zip.corrupt").read_bytes() == damaged
    assert not (zip_path.parent / "inaturalist_12K").exists() and not list(zip_path.parent.glob(".extract-*"))


def test_a_good_zips_data_is_read_once_from_download_to_extraction(http_server, tmp_path, monkeypatch):
    body = dataset_zip(tmp_path)
    http_server.handler.files["/nature_12K.zip"] = body
    http_server.handler.no_length.add("/nature_12K.zip")  # the download is vouched for by the zip's own member list
    opened = collections.Counter()
    real_open = zipfile.ZipFile.open

    def counting_open(self, name, *args, **kwargs):
        opened[getattr(name, "filename", name)] += 1
        return real_open(self, name, *args, **kwargs)

    monkeypatch.setattr(zipfile.ZipFile, "open", counting_open)
    (tmp_path / "data").mkdir()
    paths = locate_dataset(tmp_path / "data", url=f"{http_server.url}/nature_12K.zip", progress=False)
    assert len(list(paths.train_dir.rglob("*.jpg"))) == 6
    assert opened == collections.Counter(zipfile.ZipFile(io.BytesIO(body)).namelist())  # each member once


def test_zip_with_the_wrong_layout_is_rejected(tmp_path):
    path = tmp_path / "other.zip"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("photos/a.jpg", b"123")
    with pytest.raises(UserError, match="expected folder"):
        verify_zip(path, required_prefixes=("inaturalist_12K/train/",))


def test_a_local_zip_is_accepted_without_download(tmp_path):
    path = tmp_path / "mine" / "nature_12K.zip"
    path.parent.mkdir()
    path.write_bytes(dataset_zip(tmp_path))
    paths = locate_dataset(path, download=False)
    assert paths.train_dir.is_dir() and (paths.root / "val").is_dir()


def test_a_zip_data_dir_is_extracted_once_and_then_reused(tmp_path):
    zip_path = tmp_path / "mine" / "nature_12K.zip"
    zip_path.parent.mkdir()
    zip_path.write_bytes(dataset_zip(tmp_path))
    first = locate_dataset(zip_path, download=False, progress=False)
    added = first.train_dir / "Aves" / "mine.jpg"  # the user's own file
    added.write_bytes(b"x")
    mtime = (first.train_dir / "Fungi").stat().st_mtime_ns
    second = locate_dataset(zip_path, download=False, progress=False)
    assert second.root == first.root and added.exists()  # not deleted by a re-extraction
    assert (first.train_dir / "Fungi").stat().st_mtime_ns == mtime  # not re-extracted (the decode cache stays valid)


def test_concurrent_runs_wait_for_one_extraction(tmp_path):
    zip_path = tmp_path / "nature_12K.zip"
    zip_path.write_bytes(dataset_zip(tmp_path))
    code = ("import sys; from common.dataset_zip import locate_dataset; "
            "print(len(list(locate_dataset(sys.argv[1], download=False, progress=False).train_dir.rglob('*.jpg'))))")
    procs = [subprocess.Popen([sys.executable, "-c", code, str(zip_path)], cwd=ROOT, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for _ in range(3)]
    results = [p.communicate(timeout=120) for p in procs]
    assert [p.returncode for p in procs] == [0, 0, 0], [err for _, err in results]
    assert [out.strip() for out, _ in results] == ["6", "6", "6"]


def test_an_existing_folder_is_never_replaced_by_an_extraction(tmp_path):
    zip_path = tmp_path / "nature_12K.zip"
    zip_path.write_bytes(dataset_zip(tmp_path))
    mine = tmp_path / "inaturalist_12K" / "train" / "Aves"
    mine.mkdir(parents=True)
    (mine / "keep.jpg").write_bytes(b"mine")
    (tmp_path / "inaturalist_12K" / "val").mkdir()
    with pytest.raises(UserError, match="already exists, made by hand.*use --data-dir"):
        locate_dataset(zip_path, download=False, progress=False)
    assert (mine / "keep.jpg").read_bytes() == b"mine"
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "inaturalist_12K").mkdir()
    with pytest.raises(UserError, match="would replace it"):
        extract_zip(zip_path, tmp_path / "other", progress=False)


@pytest.mark.parametrize("member", ["../../x"])  # its top folder, "..", exists: it was named as a clash
def test_a_member_that_escapes_is_named_as_unsafe_and_nothing_is_written(tmp_path, member):
    zip_path = tmp_path / "evil.zip"
    with zipfile.ZipFile(zip_path, "w") as archive:
        archive.writestr("inaturalist_12K/train/a.txt", "ok")
        archive.writestr(member, "escaped")
    dest = tmp_path / "a" / "b"
    with pytest.raises(UserError, match=f"holds an unsafe path {re.escape(repr(member))}"):
        extract_zip(zip_path, dest, progress=False)
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["a", "b", "evil.zip"]


def test_a_train_folder_as_data_dir_is_not_a_download_target(tmp_path, http_server):
    root = tmp_path / "data" / "inaturalist_12K"
    for split in ("train", "val"):
        (root / split / "Aves").mkdir(parents=True)
        write_image(root / split / "Aves" / "a.jpg")
    with pytest.raises(UserError, match=f"not a place to download one into.*use --data-dir {root}"):
        locate_dataset(root / "train", url=f"{http_server.url}/nature_12K.zip", progress=False)
    assert not http_server.handler.requests and not (root / "train" / "nature_12K.zip.part").exists()


def test_a_plain_file_as_data_dir_is_one_clear_error(tmp_path):
    (tmp_path / "notes.txt").write_text("x")
    with pytest.raises(UserError, match="is a file, not a folder or a .zip"):
        locate_dataset(tmp_path / "notes.txt")


def test_a_valid_zip_of_another_layout_is_left_alone_and_named(tmp_path):
    path = tmp_path / "nature_12K.zip"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("photos/a.jpg", b"123")
    with pytest.raises(UserError, match="valid zip but not the iNaturalist-12K archive.*left as it is"):
        locate_dataset(tmp_path, download=False)
    assert path.exists() and not (tmp_path / "nature_12K.zip.corrupt").exists()


def test_a_dropped_download_without_a_length_is_not_taken_as_complete(http_server, tmp_path):
    body = dataset_zip(tmp_path)
    http_server.handler.files["/nature_12K.zip"] = body
    http_server.handler.no_length.add("/nature_12K.zip")
    http_server.handler.drop_after["/nature_12K.zip"] = len(body) // 2
    (tmp_path / "data").mkdir()
    with pytest.raises(UserError, match="incomplete or damaged.*again to resume"):
        locate_dataset(tmp_path / "data", url=f"{http_server.url}/nature_12K.zip", progress=False)
    assert not (tmp_path / "data" / "nature_12K.zip").exists()
    assert (tmp_path / "data" / "nature_12K.zip.part").stat().st_size == len(body) // 2
    paths = locate_dataset(tmp_path / "data", url=f"{http_server.url}/nature_12K.zip", progress=False)  # resumes
    assert len(list(paths.train_dir.rglob("*.jpg"))) == 6
    with pytest.raises(UserError, match="sent no length"):  # no length and nothing to check it with
        download_file(f"{http_server.url}/nature_12K.zip", tmp_path / "raw.bin", progress=False)
    assert not (tmp_path / "raw.bin").exists()
