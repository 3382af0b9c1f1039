"""Data pipeline: scanning, conversion of odd images, the stratified split, the decoded cache."""
import json
import os
import warnings

import numpy as np
import pytest
import torch
from PIL import Image

from common import data as data_module
from common.augment import AugmentConfig, augment_batch
from common.data import (channel_stats, decode_image, load_or_make_split, load_tensor_set, load_train_val,
                         locate_dataset, scan_image_folder, stratified_split)
from common.errors import UserError

from conftest import write_image


def make_folder(root, counts, size=(40, 30)):
    for name, n in counts.items():
        for i in range(n):
            write_image(root / name / f"{i:03d}.jpg", size=size, colour=(i * 10 % 255, 80, 120))
    return root


def test_scan_sorts_classes_and_skips_non_images(tmp_path):
    make_folder(tmp_path, {"b": 2, "a": 3})
    (tmp_path / "a" / "notes.txt").write_text("not an image")
    with pytest.warns(UserWarning, match="skipped 1 non-image"):
        scan = scan_image_folder(tmp_path)
    assert scan.classes == ["a", "b"]
    assert [label for _, label in scan.samples] == [0, 0, 0, 1, 1]


def test_scan_errors_are_clear(tmp_path):
    with pytest.raises(UserError, match="does not exist"):
        scan_image_folder(tmp_path / "missing")
    with pytest.raises(UserError, match="no class sub-folders"):
        scan_image_folder(tmp_path)
    make_folder(tmp_path, {"a": 1})
    (tmp_path / "empty").mkdir()
    with pytest.raises(UserError, match="empty holds no images"):
        scan_image_folder(tmp_path)


@pytest.mark.parametrize("mode, fmt", [("L", "JPEG"), ("CMYK", "JPEG"), ("RGBA", "PNG"), ("P", "PNG"), ("LA", "PNG"),
                                       ("RGB", "BMP")])
def test_odd_images_decode_to_rgb(tmp_path, mode, fmt):
    path = write_image(tmp_path / f"x.{fmt.lower()}", size=(20, 10), mode=mode, fmt=fmt)
    image = decode_image(path)
    assert image.dtype == torch.uint8 and image.shape == (3, 10, 20)


def test_transparent_pixels_become_white_not_black(tmp_path):
    path = tmp_path / "alpha.png"
    Image.new("RGBA", (4, 4), (0, 0, 0, 0)).save(path)
    assert decode_image(path).min() == 255


def test_unreadable_files_are_skipped_and_counted(tmp_path):
    make_folder(tmp_path, {"a": 3})
    (tmp_path / "a" / "corrupt.jpg").write_bytes(b"\xff\xd8\xff\xe0 this is not a jpeg")
    good = (tmp_path / "a" / "000.jpg").read_bytes()
    (tmp_path / "a" / "truncated.jpg").write_bytes(good[: len(good) // 2])
    scan = scan_image_folder(tmp_path)
    with pytest.warns(UserWarning, match="skipped 2 unreadable"):
        tensors = load_tensor_set(tmp_path, scan.samples, scan.classes, 16, cache_dir=tmp_path / "cache", progress=False)
    assert len(tensors) == 3
    assert sorted(p for p, _ in tensors.skipped) == ["a/corrupt.jpg", "a/truncated.jpg"]


def test_split_is_stratified_disjoint_and_seeded():
    samples = [(f"c{c}/{i}.jpg", c) for c in range(3) for i in range(50)]
    train, val = stratified_split(samples, 3, 0.2, seed=1)
    assert set(train).isdisjoint(val) and len(train) + len(val) == 150
    assert [sum(1 for _, lab in val if lab == c) for c in range(3)] == [10, 10, 10]
    assert stratified_split(samples, 3, 0.2, seed=1) == (train, val)
    assert stratified_split(samples, 3, 0.2, seed=2)[1] != val


def test_split_file_is_written_and_reused(tmp_path):
    root = make_folder(tmp_path / "ds" / "train", {"a": 10, "b": 10})
    scan = scan_image_folder(root)
    train, val, path = load_or_make_split(scan, 0.2, seed=3, cache_dir=tmp_path / "cache")
    stored = json.loads(path.read_text())
    assert [tuple(s) for s in stored["val"]] == val and [tuple(s) for s in stored["train"]] == train
    assert load_or_make_split(scan, 0.2, seed=3, cache_dir=tmp_path / "cache") == (train, val, path)


def test_a_split_file_pointing_into_the_test_folder_is_rebuilt_not_read(tmp_path):
    root = make_folder(tmp_path / "ds" / "train", {"a": 10, "b": 10})
    make_folder(tmp_path / "ds" / "val", {"a": 2, "b": 2})
    scan = scan_image_folder(root)
    train, val, path = load_or_make_split(scan, 0.2, seed=3, cache_dir=tmp_path / "cache")
    stored = json.loads(path.read_text())
    stored["val"] = [["../val/a/000.jpg", 0], ["../val/b/000.jpg", 1]]  # a tampered split: test images as validation
    path.write_text(json.dumps(stored))
    with pytest.warns(UserWarning, match="does not split this training folder"):
        again = load_or_make_split(scan, 0.2, seed=3, cache_dir=tmp_path / "cache")
    assert again == (train, val, path) and not any(".." in p for p, _ in again[1])
    assert json.loads(path.read_text())["val"] == [list(v) for v in val]  # the file is repaired too


def test_a_truncated_split_file_is_rebuilt_with_a_warning_naming_it(tmp_path):
    root = make_folder(tmp_path / "ds" / "train", {"a": 10, "b": 10})
    scan = scan_image_folder(root)
    train, val, path = load_or_make_split(scan, 0.2, seed=3, cache_dir=tmp_path / "cache")
    path.write_text(path.read_text()[:40])
    with pytest.warns(UserWarning, match=f"split file {path} is damaged"):
        assert load_or_make_split(scan, 0.2, seed=3, cache_dir=tmp_path / "cache") == (train, val, path)


def test_links_leading_out_of_the_training_folder_are_skipped_and_counted(tmp_path):
    root = make_folder(tmp_path / "ds" / "train", {"a": 3, "b": 3})
    test_image = write_image(tmp_path / "ds" / "val" / "a" / "secret.jpg")
    (root / "a" / "link.jpg").symlink_to(test_image)
    (root / "b" / "inside.jpg").symlink_to(root / "b" / "000.jpg")  # a link within train/ is fine
    with pytest.warns(UserWarning, match="skipped 1 link"):  # a/link.jpg
        scan = scan_image_folder(root)
    assert scan.classes == ["a", "b"] and "a/link.jpg" not in [p for p, _ in scan.samples]
    assert "b/inside.jpg" in [p for p, _ in scan.samples]


@pytest.mark.parametrize("split", ["train", "test"])
def test_a_class_folder_that_is_a_link_is_refused_before_anything_trains(tmp_path, split):
    """A linked class was dropped with a warning: a 9-class model trained to the end, refused only at evaluation."""
    root = make_folder(tmp_path / "ds" / split, {"a": 3, "b": 3})
    elsewhere = make_folder(tmp_path / "elsewhere", {"c": 3}) / "c"
    (root / "c").symlink_to(elsewhere, target_is_directory=True)
    with pytest.raises(UserError, match=f"class folder {root / 'c'} is a link .*copy the images in"):
        scan_image_folder(root)


def test_macos_and_archive_leftovers_are_neither_classes_nor_images(tmp_path):
    root = make_folder(tmp_path, {"a": 2, "b": 2})
    write_image(root / "__MACOSX" / "a" / "._000.jpg")
    write_image(root / "a" / "__MACOSX" / "x.jpg")
    write_image(root / "a" / "._001.jpg")
    (root / ".DS_Store").write_bytes(b"\0\0\0\1Bud1")
    (root / "b" / ".DS_Store").write_bytes(b"\0\0\0\1Bud1")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # not even "skipped N non-image file(s)": they are not the user's files
        scan = scan_image_folder(root)
    assert scan.classes == ["a", "b"] and [p for p, _ in scan.samples] == ["a/000.jpg", "a/001.jpg", "b/000.jpg",
                                                                            "b/001.jpg"]


def test_cache_decodes_once_and_a_changed_file_set_rebuilds(tmp_path, monkeypatch):
    root = make_folder(tmp_path / "train", {"a": 4, "b": 4})
    scan = scan_image_folder(root)
    first = load_tensor_set(root, scan.samples, scan.classes, 16, cache_dir=tmp_path / "c", progress=False)
    monkeypatch.setattr(data_module, "decode_and_resize", lambda *a: pytest.fail("decoded again"))
    second = load_tensor_set(root, scan.samples, scan.classes, 16, cache_dir=tmp_path / "c", progress=False)
    assert torch.equal(first.images, second.images)
    monkeypatch.undo()
    write_image(root / "a" / "new.jpg", colour=(0, 255, 0))
    scan = scan_image_folder(root)
    third = load_tensor_set(root, scan.samples, scan.classes, 16, cache_dir=tmp_path / "c", progress=False)
    assert len(third) == 9 and len(list((tmp_path / "c" / "images").glob("*.pt"))) == 2


def test_cache_is_resized_and_centre_cropped(tmp_path):
    root = make_folder(tmp_path / "train", {"a": 1}, size=(500, 375))
    scan = scan_image_folder(root)
    tensors = load_tensor_set(root, scan.samples, scan.classes, 32, cache_dir=tmp_path / "c", progress=False)
    assert tensors.images.shape == (1, 3, 32, 32) and tensors.images.dtype == torch.uint8


def test_load_train_val_never_lists_test_images(demo_root, tmp_path):
    data = load_train_val(demo_root, 16, cache_dir=tmp_path / "c", progress=False)
    assert len(data.train) + len(data.val) == 120 and len(data.classes) == 10
    test_files = {p.resolve() for p in (demo_root / "inaturalist_12K" / "val").rglob("*.jpg")}
    train_files = {p.resolve() for p in (demo_root / "inaturalist_12K" / "train").rglob("*.jpg")}
    used = {(data.dataset.train_dir / p).resolve() for p in data.train.paths + data.val.paths}
    assert len(test_files) == 30 and used == train_files  # every training image, and nothing else ...
    assert not used & test_files  # ... so no test image (the demo test folder holds 30)
    assert not any(field_value == data.dataset.root / "val" for field_value in vars(data.dataset).values())


def test_locate_dataset_offline_without_data_says_what_to_do(tmp_path):
    with pytest.raises(UserError, match="no dataset in .*make demo-data"):
        locate_dataset(tmp_path, download=False)


def test_channel_stats():
    images = torch.zeros(2, 3, 4, 4, dtype=torch.uint8)
    images[:, 0] = 255
    mean, std = channel_stats(images)
    assert mean == pytest.approx([1.0, 0.0, 0.0]) and std[0] == pytest.approx(0.0, abs=1e-5)


def test_augmentation_is_seeded_shape_preserving_and_optional():
    x = torch.rand(4, 3, 24, 24)
    a = augment_batch(x, AugmentConfig(), torch.Generator().manual_seed(0))
    b = augment_batch(x, AugmentConfig(), torch.Generator().manual_seed(0))
    assert a.shape == x.shape and torch.equal(a, b) and not torch.allclose(a, x)
    assert 0.0 <= a.min() and a.max() <= 1.0
    assert torch.equal(augment_batch(x, AugmentConfig(enabled=False)), x)
    assert torch.equal(augment_batch(x, AugmentConfig(strength=0)), x)


def test_flip_only_augmentation_mirrors_images():
    x = torch.rand(64, 3, 8, 8)
    cfg = AugmentConfig(min_scale=1.0, rotation=0.0, color_jitter=0.0, strength=1.0)
    out = augment_batch(x, cfg, torch.Generator().manual_seed(0))
    # with crop area 1 the aspect jitter still resamples; a flipped image is closer to its mirror
    flipped = [(o - xi.flip(-1)).abs().mean() < (o - xi).abs().mean() for o, xi in zip(out, x)]
    assert 10 < sum(flipped) < 54


def test_a_dataset_without_its_test_folder_is_reported_not_downloaded(tmp_path):
    make_folder(tmp_path / "inaturalist_12K" / "train", {"a": 1})
    with pytest.raises(UserError, match="has train/ but no val/"):
        locate_dataset(tmp_path, download=True, url="http://127.0.0.1:9/never-asked.zip")


def test_a_damaged_decode_cache_is_rebuilt_with_a_warning_naming_it(tmp_path):
    root = make_folder(tmp_path / "train", {"a": 3, "b": 3})
    scan = scan_image_folder(root)
    first = load_tensor_set(root, scan.samples, scan.classes, 16, cache_dir=tmp_path / "c", progress=False)
    (cache_file,) = (tmp_path / "c" / "images").glob("*.pt")
    cache_file.write_bytes(cache_file.read_bytes()[:200])  # truncated, as by a full disk or a kill
    with pytest.warns(UserWarning, match=f"decode cache {cache_file} is damaged.*rebuilding"):
        again = load_tensor_set(root, scan.samples, scan.classes, 16, cache_dir=tmp_path / "c", progress=False)
    assert torch.equal(first.images, again.images)
    assert torch.load(cache_file, weights_only=True)["images"].shape == first.images.shape  # rewritten whole


def test_a_decode_cache_that_would_run_code_is_never_executed(tmp_path):
    root = make_folder(tmp_path / "train", {"a": 3, "b": 3})
    scan = scan_image_folder(root)
    load_tensor_set(root, scan.samples, scan.classes, 16, cache_dir=tmp_path / "c", progress=False)
    (cache_file,) = (tmp_path / "c" / "images").glob("*.pt")
    marker = tmp_path / "pwned"
    torch.save({"x": Exploit(marker)}, cache_file)
    with pytest.warns(UserWarning, match="is damaged"):
        load_tensor_set(root, scan.samples, scan.classes, 16, cache_dir=tmp_path / "c", progress=False)
    assert not marker.exists()


class Exploit:
    """Unpickling this runs a shell command: what a hostile .pt file does."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def test_a_class_whose_every_image_is_unreadable_is_an_error(tmp_path):
    make_folder(tmp_path, {"a": 3})
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "x.jpg").write_bytes(b"not an image")
    (tmp_path / "b" / "y.jpg").write_bytes(b"nor this")
    scan = scan_image_folder(tmp_path)
    with pytest.warns(UserWarning), pytest.raises(UserError, match="every image of class 'b'.*is unreadable"):
        load_tensor_set(tmp_path, scan.samples, scan.classes, 16, cache_dir=tmp_path / "cache", progress=False)


def test_one_image_in_a_class_names_the_empty_validation_split():
    samples = [("a/0.jpg", 0), ("a/1.jpg", 0), ("b/0.jpg", 1)]
    with pytest.raises(UserError, match="b has 1 image.*at least 2.*validation split"):
        stratified_split(samples, 2, 0.2, seed=0)


def test_a_16_bit_grayscale_png_keeps_its_tones(tmp_path):
    ramp = np.linspace(0, 65535, 32 * 32).reshape(32, 32).astype(np.uint16)
    Image.fromarray(ramp).save(tmp_path / "g16.png")
    assert Image.open(tmp_path / "g16.png").mode == "I;16"
    image = decode_image(tmp_path / "g16.png")
    # 0..65535 scaled by 255/65535: the ramp's mean stays mid-grey (~127.5), black and white at the ends
    assert image.shape == (3, 32, 32) and abs(image.float().mean().item() - 127.5) < 1.0
    assert image.min() == 0 and image.max() == 255
