"""The camera-trap application: alert cool-down, crops, and the whole run on real photos."""
import json
import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image, ImageDraw

import partC.darknet_files as darknet_files
from common.data import read_image
from partA.from_scratch import run_scratch
from partC.detector import build_detector
from partC.media import VideoWriter, _font, _overlap, expand_inputs, iter_video, place_labels
from partC.trap import AlertPolicy, crop, frames_of
from partC.yolo import Detection

from conftest import DARKNET_DATA, ROOT


def seen(*labels, score=0.9):
    return [Detection(label, 0, score, [0, 0, 10, 10]) for label in labels]


def test_an_animal_staying_in_view_is_one_alert():
    policy = AlertPolicy(["bear"], cooldown_s=10)
    alerts = [policy.update(t, seen("bear")) for t in range(0, 60, 2)]
    assert sum(len(a) for a in alerts) == 1 and alerts[0] == ["bear"]


def test_an_animal_that_comes_back_after_the_cool_down_alerts_again():
    policy = AlertPolicy(["bear", "person"], cooldown_s=10)
    assert policy.update(0, seen("bear")) == ["bear"]
    assert policy.update(5, seen()) == []
    assert policy.update(9, seen("bear")) == []  # back within the cool-down: the same visit
    assert policy.update(30, seen("bear", "person")) == ["bear", "person"]


def test_unwatched_classes_and_weak_detections_do_not_alert():
    policy = AlertPolicy(["bear"], cooldown_s=10, min_score=0.5)
    assert policy.update(0, seen("dog")) == []
    assert policy.update(1, seen("bear", score=0.3)) == []


def test_crops_stay_inside_the_image():
    image = torch.zeros(3, 50, 80, dtype=torch.uint8)
    assert crop(image, [70, 40, 90, 60]).shape == (3, 12, 12)  # 68..80 x 38..50: margin, then clipped
    assert crop(image, [10, 10, 30, 20], margin=0.0).shape == (3, 11, 21)


@pytest.mark.darknet
def test_watcher_on_a_clip_of_real_photos_alerts_keeps_and_labels(tmp_path, demo_root):
    run_scratch({"data_dir": str(demo_root), "image_size": 32, "filters": "4,4,8,8,8", "dense_units": 8, "epochs": 1,
                 "runs_dir": str(tmp_path / "runs"), "cache_dir": str(tmp_path / "cache"), "run_name": "clf",
                 "wandb": "disabled", "quiet": True})
    out = tmp_path / "trap"
    result = subprocess.run([sys.executable, str(ROOT / "partC/camera_trap.py"), "--demo-clip", "--cooldown", "3",
                             "--alert", "horse,bird,giraffe", "--classifier", str(tmp_path / "runs/clf/best.pt"),
                             "--out", str(out), "--quiet"], capture_output=True, text=True, cwd=ROOT)
    assert result.returncode == 0, result.stderr
    events = [json.loads(line) for line in (out / "events.jsonl").read_text().splitlines()]
    alerts = [e for e in events if e["type"] == "alert"]
    # horses at 0-2 s and again at 12-14 s (gone > 3 s in between): two horse alerts; one bird, one giraffe
    assert [a["class"] for a in alerts].count("horse") == 2
    assert {"bird", "giraffe"} <= {a["class"] for a in alerts}
    frames = [e for e in events if e["type"] == "frame"]
    assert frames and all((out / e["kept_as"]).exists() for e in frames)
    assert any(s for e in frames for s in e["species"])  # crops labelled by the classifier
    assert (out / "watched.mp4").stat().st_size > 10_000 and (out / "contact_sheet.png").exists()
    summary = json.loads((out / "summary.json").read_text())
    # 6 photos x (2 s + 1 s of the blurred empty scene) at 4 frames/s = 72 frames; the empty ones are not kept
    assert summary["alerts"] == len(alerts) and summary["frames"] == 72 and summary["kept"] == 48
    visits = summary["visits"]  # one crop per visit on the contact sheet, at its best score: the table's numbers
    assert all(v["best_score"] >= (v["alert_score"] or 0) for v in visits)
    assert sum(v["alert_score"] is not None for v in visits) == len(alerts)  # each alert opened one visit


def test_stills_are_timed_by_their_exif_capture_time(tmp_path):
    for name, stamp in (("a.jpg", "2026:05:01 06:00:00"), ("b.jpg", "2026:05:01 06:00:05"),
                        ("c.jpg", "2026:05:01 06:10:00")):
        exif = Image.Exif()
        exif.get_ifd(0x8769)[0x9003] = stamp
        Image.new("RGB", (32, 24), (90, 120, 30)).save(tmp_path / name, exif=exif)
    times = [t for _, _, t, _ in frames_of(expand_inputs([tmp_path]), fps=1.0, stride=1)]
    assert times == [0.0, 5.0, 600.0]
    (tmp_path / "d.jpg").write_bytes(b"broken")  # no EXIF on one still: position / fps for all, bad frame counted
    frames = list(frames_of(expand_inputs([tmp_path]), fps=2.0, stride=1))
    assert [t for _, _, t, _ in frames] == [0.0, 0.5, 1.0, 1.5] and frames[-1][3] is None


def _clip(path, frames=6, fps=2, colour=(40, 90, 160)):
    writer = VideoWriter(path, fps, 64, 48)
    for _ in range(frames):
        writer.write(np.full((48, 64, 3), colour, np.uint8))
    writer.close()
    return path


def test_several_videos_share_one_clock_and_a_broken_one_is_skipped(tmp_path, capsys):
    _clip(tmp_path / "a.mp4")
    (tmp_path / "b.mp4").write_bytes(b"not a video")
    _clip(tmp_path / "c.mp4")
    skipped = []
    frames = list(frames_of(expand_inputs([tmp_path]), fps=2.0, stride=1, skipped=skipped))
    times = [t for _, _, t, _ in frames]
    # a.mp4: 6 frames at 2 fps → 0.0 … 2.5 s; c.mp4 starts one frame period (0.5 s) after a's last frame
    assert times[:6] == pytest.approx([0.0, 0.5, 1.0, 1.5, 2.0, 2.5])
    assert times[6:] == pytest.approx([3.0, 3.5, 4.0, 4.5, 5.0, 5.5])
    assert [p for p, _ in skipped] == [str(tmp_path / "b.mp4")] and "cannot open video" in skipped[0][1]


def test_a_still_without_exif_among_stamped_ones_is_warned_about(tmp_path, capsys):
    exif = Image.Exif()
    exif.get_ifd(0x8769)[0x9003] = "2026:05:01 06:00:00"
    Image.new("RGB", (32, 24)).save(tmp_path / "a.jpg", exif=exif)
    Image.new("RGB", (32, 24)).save(tmp_path / "b.jpg")
    list(frames_of(expand_inputs([tmp_path]), fps=1.0, stride=1))
    assert "1 of 2 stills have no EXIF capture time" in capsys.readouterr().err


def test_detect_skips_a_bad_file_in_a_folder_and_reports_it(tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    Image.new("RGB", (64, 48), (30, 60, 90)).save(folder / "good.jpg")
    (folder / "junk.jpg").write_bytes(b"\xff\xd8 not really")
    (folder / "broken.mp4").write_bytes(b"nope")
    result = subprocess.run([sys.executable, str(ROOT / "partC/detect.py"), str(folder), "--out", str(tmp_path / "out"),
                             "--quiet"], capture_output=True, text=True, cwd=ROOT)
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "out" / "good.jpg").exists() and "2 unreadable input(s) skipped" in result.stdout
    assert "skipped" in result.stderr and "junk.jpg" in result.stderr and "broken.mp4" in result.stderr


def test_detection_labels_are_placed_so_none_hides_another():
    # three near-identical boxes (person.jpg's horse / sheep / dog boxes overlap like this) and one at the top edge
    boxes = [(100, 100, 300, 300), (105, 102, 290, 310), (98, 99, 310, 305), (0, 0, 80, 60)]
    sizes = [(90, 20)] * 4
    rects = place_labels(boxes, sizes, 640, 424)
    assert all(_overlap(a, b) == 0 for i, a in enumerate(rects) for b in rects[i + 1:])
    assert all(0 <= r[0] and 0 <= r[1] and r[2] <= 640 and r[3] <= 424 for r in rects)


@pytest.mark.darknet
def test_person_jpg_labels_do_not_overlap():
    image = read_image(DARKNET_DATA / "person.jpg")
    detections = build_detector(device="cpu", conf=0.25)(image)
    boxes = list(dict.fromkeys(tuple(round(v) for v in d.box) for d in detections))
    assert len(boxes) >= 3
    font = _font(max(12, round(min(image.shape[1:]) / 35)))
    draw = ImageDraw.Draw(__import__("PIL.Image", fromlist=["Image"]).new("RGB", (10, 10)))
    sizes = [(draw.textbbox((0, 0), "sheep 0.34 / horse 0.92", font=font)[2] + 6, 24) for _ in boxes]
    rects = place_labels(boxes, sizes, image.shape[2], image.shape[1])
    assert all(_overlap(a, b) == 0 for i, a in enumerate(rects) for b in rects[i + 1:])


def test_the_offline_photos_are_darknets_else_grace_hopper_with_a_note(tmp_path, monkeypatch):
    if DARKNET_DATA.is_dir():  # with Debian's darknet: the photos named, or every photo it ships
        assert [p.name for p in darknet_files.offline_photos(["dog.jpg", "eagle.jpg"])] == ["dog.jpg", "eagle.jpg"]
        assert len(darknet_files.offline_photos()) >= 5
    monkeypatch.setattr(darknet_files, "DARKNET_SHARE", tmp_path)  # a machine without the package
    notes = []
    photos = darknet_files.offline_photos(["dog.jpg"], warn=notes.append)
    assert [p.name for p in photos] == ["grace_hopper.jpg"] and photos[0].is_file()
    assert len(notes) == 1 and "apt-get install darknet" in notes[0]
    assert darknet_files.offline_photos() == photos  # the assignment's default inputs fall back the same way


def test_a_video_that_ends_before_its_stated_length_says_so(tmp_path, capsys):
    """A cut MP4 whose header comes first (faststart) opens and decodes its first half with no bad frame: 33 of 60
    frames were read as a whole video, without a word."""
    import av
    whole, cut = tmp_path / "whole.mp4", tmp_path / "cut.mp4"
    with av.open(str(whole), "w", options={"movflags": "faststart"}) as container:
        stream = container.add_stream("mpeg4", rate=10)
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
        noise = np.random.default_rng(0)
        for _ in range(60):
            image = noise.integers(0, 255, (48, 64, 3), dtype=np.uint8)
            container.mux(stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")))
        container.mux(stream.encode())
    cut.write_bytes(whole.read_bytes()[: whole.stat().st_size * 6 // 10])
    read = sum(1 for _ in iter_video(cut))
    assert 0 < read < 60
    assert f"{cut} ends after {read} of its stated 60 frames" in capsys.readouterr().err
