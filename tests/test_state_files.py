"""Files the project writes and reads back (plans, step markers, sweep folders, records, caches): damage is rebuilt
or said in one line naming the file and the way out — never a traceback, never a block on later runs, never a
cache used without checking what it holds."""
import json
import subprocess
import sys

import pytest
import torch
from PIL import Image

from common.checkpoints import build_model_from_spec, load_record
from common.data import decode_image, load_or_make_split, read_image, scan_image_folder
from common.errors import UserError
from common.io import save_json, save_torch, seal
from common import training
from common.state import DamagedFile, Detection, Plan, RunRecord, StepMarker, lock_holder, read_json_lines, read_state
from handin import assignment
from handin.steps import is_done, marker
from partA.from_scratch import run_scratch
from partA.sweep_engine import run_agent
from partB.compare import row_for
from partB.transfer import cached_features

from conftest import ROOT, options
from test_assignment import finish_step, plant_run, saved_plan
from test_sweep import GRID, fake_trainer, handin_outputs, new_sweep

# ------------------------------------------------------------------------------------------ the one reader

DAMAGE = {"empty": ("", "is empty"), "cut short": ('{"inputs": [1, 2', "not valid JSON"),
          "a list": ("[]", "its top level: input should be a valid dictionary"),
          "a wrong type": ('{"inputs": 1, "outputs": {"a": "big"}}', "outputs.a: input should be a valid list"),
          # 100,000 levels: past the interpreter's recursion limit (1,000) in json's decoder
          "nested too deeply": ("[" * 100_000, "not valid JSON: nested too deeply")}


@pytest.mark.parametrize("damage", DAMAGE, ids=list(DAMAGE))
def test_the_reader_names_the_file_what_is_wrong_and_the_way_out(tmp_path, damage):
    text, problem = DAMAGE[damage]
    path = tmp_path / "x.done"
    path.write_text(text)
    with pytest.raises(DamagedFile) as err:
        read_state(path, StepMarker, "run it again")
    assert str(err.value).startswith(f"{path} is ") and problem in str(err.value) and str(err.value).endswith(
        "; run it again") and "\n" not in str(err.value)


def test_the_reader_is_strict_about_types_and_lets_extra_fields_pass(tmp_path):
    path = tmp_path / "record.json"
    path.write_text(json.dumps({"status": "finished", "epochs": [], "added_by_a_newer_version": 1}))
    assert read_state(path, RunRecord, "")["added_by_a_newer_version"] == 1
    path.write_text(json.dumps({"status": 3}))  # "3" or 3 is no status
    with pytest.raises(DamagedFile, match="status: input should be a valid string"):
        read_state(path, RunRecord, "")


# ------------------------------------------------------------------------------------------ the assignment's state

def test_a_step_whose_output_was_deleted_or_whose_run_moved_away_runs_again(tmp_path):
    saved = saved_plan(tmp_path)
    out, runs = saved["args"]["out"], tmp_path / "runs"
    plant_run(runs, "hw-a", 0.5)
    plant_run(runs, "hw-finetune", 0.9, sweep=None)
    steps = {s.name: s for s in assignment.steps_of(saved)}
    for step in steps.values():
        finish_step(out, step)
    assert all(is_done(out, s) for s in steps.values())
    for path in (tmp_path / "out" / "detect").iterdir():  # the user deletes outputs/<name>/detect's files
        path.unlink()
    (tmp_path / "runs" / "hw-finetune").rename(tmp_path / "elsewhere")  # and moves the fine-tuning run away
    stale = [name for name, s in steps.items() if not is_done(out, s)]
    assert stale == ["finetune", "finetune-eval", "detect", "report"]
    (tmp_path / "out" / "compare" / "made.txt").write_text("edited")  # an output changed after the step: stale too
    assert not is_done(out, steps["finetune-eval"])


def test_a_step_that_ran_again_makes_the_report_stale(tmp_path):
    saved = saved_plan(tmp_path)
    out = saved["args"]["out"]
    plant_run(tmp_path / "runs", "hw-a", 0.5)
    steps = {s.name: s for s in assignment.steps_of(saved)}
    for step in steps.values():
        finish_step(out, step)
    assert is_done(out, steps["report"])
    (tmp_path / "out" / "detect" / "made.txt").write_text("detected again")  # detect ran again: new files ...
    finish_step(out, steps["detect"])  # ... and a new marker naming them
    assert is_done(out, steps["detect"]) and not is_done(out, steps["report"])


def test_a_marker_of_the_wrong_shape_makes_its_step_stale_with_a_note(tmp_path, capsys):
    saved = saved_plan(tmp_path)
    out = saved["args"]["out"]
    detect = next(s for s in assignment.steps_of(saved) if s.name == "detect")
    finish_step(out, detect)
    assert is_done(out, detect)
    marker(out, detect).write_text("[]")
    assert not is_done(out, detect)
    assert "detect.done is damaged (its top level" in capsys.readouterr().err  # a status: stdout stays the plan


@pytest.mark.parametrize("damage", ["", '{"args": {"data_dir"', '{"args": [], "budget": 10}'])
def test_a_damaged_plan_is_planned_again_and_a_step_alone_says_how(tmp_path, monkeypatch, capsys, damage):
    saved = saved_plan(tmp_path)
    plan_file = tmp_path / "out" / "plan.json"
    plan_file.parent.mkdir(parents=True)
    plan_file.write_text(damage)  # e.g. 0 bytes: the disk filled while it was written
    result = subprocess.run([sys.executable, "handin/assignment.py", "--out", str(tmp_path / "out"), "--step", "detect"],
                            capture_output=True, text=True, cwd=ROOT)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert f"{plan_file} is " in result.stderr and "run without --step to plan again" in result.stderr

    data = tmp_path / "data"
    for c in range(10):  # a dataset folder with the demo's classes, for the plan to find
        (data / "inaturalist_12K" / "train" / f"c{c}").mkdir(parents=True)
        (data / "inaturalist_12K" / "val" / f"c{c}").mkdir(parents=True)
    monkeypatch.setattr(assignment, "measure_images_per_s", lambda *a: (saved["rate"], saved["train_images"]))
    a = saved["args"]
    replanned = assignment.make_plan(str(data), 10.0, 10, a["sweep_config"], "local", ["dog.jpg"], "cpu", None,
                                     a["out"], a["runs_dir"], a["cache_dir"], "hw")
    assert "rebuilding it" in capsys.readouterr().out
    assert read_state(plan_file, Plan, "") == json.loads(json.dumps(replanned))  # written whole, and readable


# ------------------------------------------------------------------------------------------ the sweep's folder

@pytest.mark.parametrize("name, text, says", [
    ("config.yaml", "method: grid\nparameters: [", "not valid YAML"),
    ("config.yaml", "- just\n- a list\n", "its top level"),
    ("config.yaml", "method: " + "[" * 100_000, "not valid YAML: nested too deeply"),
    ("config.yaml", "method: !!timestamp not-a-date", "not valid YAML: AttributeError"),  # PyYAML's own crash
    ("options.json", "", "empty \\(its write was cut short"),
    ("options.json", '{"seed": "forty-two"}', "seed: input should be a valid integer")])
def test_a_damaged_sweep_folder_is_one_line_with_the_way_out(tmp_path, name, text, says):
    sweep = new_sweep(tmp_path, GRID)
    run_agent(sweep, count=1, runs_dir=str(tmp_path), train=fake_trainer(epochs=2), log=lambda *_: None)
    (sweep.folder / name).write_text(text)
    with pytest.raises(UserError, match=f"{sweep.folder / name} is .*{says}.*another --name"):
        run_agent(sweep, count=2, runs_dir=str(tmp_path), train=fake_trainer(epochs=2), log=lambda *_: None)


@pytest.mark.parametrize("line", ['{"op_code": 5}', '[1, 2, 3]', '{"op_code": 0, "worker_id": "w", "study_name": 7}',
                                  '{"op_code": 99, "worker_id": "w"}'])
def test_journal_entries_of_the_wrong_shape_are_one_line_not_optunas_traceback(tmp_path, line):
    sweep = new_sweep(tmp_path, GRID)
    run_agent(sweep, count=2, runs_dir=str(tmp_path), train=fake_trainer(epochs=2), log=lambda *_: None)
    journal = sweep.folder / "journal.log"
    lines = journal.read_text().splitlines(keepends=True)
    journal.write_text("".join(lines[:4]) + line + "\n" + "".join(lines[4:]))
    with pytest.raises(UserError, match=f"sweep journal {journal} is damaged .* move it aside"):
        run_agent(sweep, count=3, runs_dir=str(tmp_path), train=fake_trainer(epochs=2), log=lambda *_: None)


def test_a_journal_deleted_mid_sweep_is_refused_not_restarted_silently(tmp_path):
    sweep = new_sweep(tmp_path, GRID)

    def recording_trainer(options, should_stop, resume, extra):
        """fake_trainer, plus the record a real run leaves in the runs folder"""
        record = fake_trainer(epochs=2)(options, should_stop, resume, extra)
        (tmp_path / options["run_name"]).mkdir()
        (tmp_path / options["run_name"] / "record.json").write_text(json.dumps({**record, **extra}))
        return record

    run_agent(sweep, count=2, runs_dir=str(tmp_path), train=recording_trainer, log=lambda *_: None)
    (sweep.folder / "journal.log").unlink()
    with pytest.raises(UserError, match="does not know 2 finished run.*deleted or replaced.*the runs stay"):
        run_agent(sweep, count=4, runs_dir=str(tmp_path), train=recording_trainer, log=lambda *_: None)
    assert not (sweep.folder / "journal.log").exists() or not sweep.runs()  # nothing proposed into a new journal


# ------------------------------------------------------------------------------------------ runs and checkpoints

def test_a_checkpoint_whose_model_config_has_an_unknown_key_is_one_line(tmp_path):
    spec = {"kind": "cnn", "config": {"filters": [4, 8, 8, 16, 16], "wings": 2}}
    with pytest.raises(UserError, match="unknown key\\(s\\) wings .*another version"):
        build_model_from_spec(spec, "run x's best.pt")


def test_an_empty_record_is_read_from_last_pt_by_evaluate_and_compare(tiny_data, tmp_path):
    record = run_scratch(options(tmp_path, epochs=2, run_name="r"), data=tiny_data)
    run_dir = tmp_path / "runs" / "r"
    (run_dir / "record.json").write_bytes(b"")  # a full disk cut its last write
    assert load_record(run_dir)["epochs"] == json.loads(json.dumps(record["epochs"]))
    assert row_for(run_dir, tmp_path / "no-eval")["val_acc"] == record["summary"]["best_val_acc"]


def test_a_run_that_dies_in_its_first_epoch_says_there_is_nothing_to_resume_and_frees_its_name(tiny_data, tmp_path,
                                                                                                 monkeypatch):
    real = training.train_one_epoch

    def poisoned(session, cfg, epoch, *args):
        with torch.no_grad():
            next(session.model.parameters()).fill_(float("nan"))
        return real(session, cfg, epoch, *args)

    monkeypatch.setattr(training, "train_one_epoch", poisoned)
    with pytest.raises(training.TrainingDiverged) as err:
        run_scratch(options(tmp_path, epochs=2, run_name="early"), data=tiny_data)
    assert "before any epoch was saved: there is nothing to resume" in str(err.value)
    assert "--resume" not in str(err.value) and "holds the last good epoch" not in str(err.value)
    assert not (tmp_path / "runs" / "early").exists()
    monkeypatch.setattr(training, "train_one_epoch", real)
    assert run_scratch(options(tmp_path, epochs=1, run_name="early"), data=tiny_data)["status"] == "finished"


# ------------------------------------------------------------------------------------------ caches

def test_a_feature_cache_whose_bytes_changed_is_computed_again(tmp_path):
    path, timing = tmp_path / "lite0-abc.pt", tmp_path / "lite0-abc.json"
    save_torch(path, (torch.ones(6, 4), torch.zeros(2, 4)))
    save_json(timing, {"seconds": 1.5})
    seal([path, timing], path.with_suffix(".sha256"))
    train_x, val_x, seconds = cached_features(path, timing, 6, 2)
    assert train_x.sum() == 24 and seconds == 1.5
    data = bytearray(path.read_bytes())
    where = bytes(data).index(torch.ones(1).numpy().tobytes())  # inside the first tensor's storage
    data[where + 3] ^= 0x01  # 1.0 -> another float, same size: torch.load would read it without a word
    path.write_bytes(bytes(data))
    with pytest.warns(UserWarning, match="does not match its digest"):
        assert cached_features(path, timing, 6, 2) is None
    assert cached_features(tmp_path / "none.pt", timing, 6, 2) is None


# ------------------------------------------------------------------------------------------ Part C's photos

def test_a_portrait_photo_is_read_upright_for_part_c_and_the_training_decode_is_unchanged(tmp_path):
    image = Image.new("RGB", (40, 30), (200, 30, 30))  # stored 40 wide, 30 high ...
    image.paste((20, 20, 200), (0, 0, 10, 30))  # ... with a blue band on its left edge
    exif = image.getexif()
    exif[0x0112] = 6  # ... and a tag saying: turn 90° clockwise to view (how phones store portrait shots)
    image.save(tmp_path / "portrait.jpg", exif=exif, quality=95)
    upright = read_image(tmp_path / "portrait.jpg")
    assert tuple(upright.shape) == (3, 40, 30)  # 30 wide, 40 high, as the camera saw it
    assert upright[2, :5, :].float().mean() > 150  # the left band is now along the top
    assert tuple(decode_image(tmp_path / "portrait.jpg").shape) == (3, 30, 40)  # training pixels as stored


# ------------------------------------------------------------------------------------------ the report

def test_a_figure_a_step_should_have_written_is_a_counted_missing_note(tmp_path):
    outputs, build = handin_outputs(tmp_path)
    (outputs / "compare" / "learning_curves.png").unlink()
    (outputs / "interpret" / "rep-best" / "filters.png").unlink()
    page = build()
    assert "Missing — learning_curves.png (Learning curves" in page and "python partB/compare.py writes it" in page
    assert "Missing — filters.png (First-layer filters) of rep-best" in page
    missing = json.loads((outputs / "report" / "report.json").read_text())["missing"]
    assert len(missing) == 2 and any(m.startswith("learning_curves.png") for m in missing)


def test_damaged_lines_of_detections_are_left_out_and_said_once(tmp_path):
    path = tmp_path / "detections.jsonl"
    good = {"source": "dog.jpg", "label": "dog", "score": 0.57, "frame": None}
    path.write_text(json.dumps(good) + "\n" + '{"source": "dog.jpg", "label": "d' + "\n[]\n" + json.dumps(good) + "\n")
    said = []
    assert read_json_lines(path, Detection, said.append) == [good, good]
    assert said == [f"{path}: 2 damaged line(s) left out"]


def test_a_split_file_of_the_wrong_shape_is_rebuilt_with_one_warning(demo_root, tmp_path):
    scan = scan_image_folder(demo_root / "inaturalist_12K" / "train")
    train, val, path = load_or_make_split(scan, cache_dir=tmp_path)
    path.write_text(json.dumps({"classes": scan.classes, "seed": 42, "train": "everything", "val": []}))
    with pytest.warns(UserWarning, match="is damaged \\(train: input should be a valid list\\); rebuilt it"):
        assert load_or_make_split(scan, cache_dir=tmp_path)[:2] == (train, val)


def test_a_lock_file_being_written_names_an_unknown_holder(tmp_path):
    assert lock_holder('{"pid": 12', tmp_path / "run.lock") == {}
    assert lock_holder('{"pid": 12, "host": "h"}', tmp_path / "run.lock")["pid"] == 12
