"""Part B: the offline EfficientNet-Lite0, heads, stages, freezing strategies, weight downloads."""
import hashlib
import io
import json
import subprocess
import sys
from pathlib import Path

import matplotlib
import pytest
import torch
import torch.nn.functional as F
import torchvision
from torchvision.ops import StochasticDepth
from torchvision.transforms import v2

import common.training as training
import partB.transfer as finetune_module
from common.checkpoints import load_checkpoint, model_from_checkpoint
from common.data import decode_image, load_train_val
from common.errors import UserError
from common.inference import validate as evaluate
from common.io import save_json
from common.pretrained import (MIRROR_ENV, apply_freeze, build_pretrained, fetch_torchvision_weights,
                               frozen_modules_to_eval, head_paths, model_stages, parameter_groups, preprocess_for,
                               weights_enum)
from common.training import training_loss
from partA.evaluation import evaluate_on_test
from partA.from_scratch import run_scratch
from partB.compare import differences, insights, strategies
from partB.transfer import FINETUNE_RECIPE, resume_finetune, run_finetune

from conftest import DARKNET_DATA, ROOT

CATEGORIES = torchvision.models.ResNet18_Weights.IMAGENET1K_V1.meta["categories"]
GRACE = f"{matplotlib.get_data_path()}/sample_data/grace_hopper.jpg"


@pytest.fixture(scope="module")
def lite0():
    model, info = build_pretrained("efficientnet_lite0", "default")
    return model.eval(), info


def top3(model, path):
    tf = v2.Compose([v2.Resize(256, antialias=True), v2.CenterCrop(224), v2.ToDtype(torch.float32, scale=True),
                     v2.Normalize([0.5] * 3, [0.5] * 3)])
    with torch.no_grad():
        probs = F.softmax(model(tf(decode_image(path))[None]), 1)[0]
    values, indices = probs.topk(3)
    return [(CATEGORIES[i], float(v)) for v, i in zip(values, indices)]


def test_offline_lite0_loads_strictly_with_the_expected_parameter_count(lite0):
    model, info = lite0
    assert sum(p.numel() for p in model.parameters()) == 4_652_008
    assert info["preprocess"] == {"crop_size": 224, "resize_size": 256, "mean": [0.5] * 3, "std": [0.5] * 3}


def test_offline_lite0_recognises_grace_hopper(lite0):
    labels = top3(lite0[0], GRACE)
    assert labels[0][0] == "academic gown" and labels[0][1] == pytest.approx(0.48, abs=0.05)
    assert labels[1][0] == "mortarboard"


@pytest.mark.darknet
def test_offline_lite0_recognises_the_dog_and_the_eagle(lite0):
    dog = top3(lite0[0], DARKNET_DATA / "dog.jpg")
    assert [name for name, _ in dog[:2]] == ["German shepherd", "malamute"]
    assert dog[0][1] == pytest.approx(0.26, abs=0.05)
    assert top3(lite0[0], DARKNET_DATA / "eagle.jpg")[0][0] == "kite"


FAMILIES = ["resnet18", "mobilenet_v3_small", "efficientnet_b0", "googlenet", "vit_b_16", "convnext_tiny", "vgg11",
            "inception_v3"]


@pytest.fixture(scope="module", params=FAMILIES)
def family(request):
    model, _ = build_pretrained(request.param, weights="none", num_classes=10)
    return request.param, model


def trainable_names(model):
    return {n for n, p in model.named_parameters() if p.requires_grad}


def test_every_family_gets_a_10_class_head(family):
    name, model = family
    for path in head_paths(model):
        layer = model.get_submodule(path)
        assert (layer.out_features if hasattr(layer, "out_features") else layer.out_channels) == 10
    size = 299 if name == "inception_v3" else 224
    model.eval()
    with torch.no_grad():
        assert model(torch.zeros(1, 3, size, size)).shape == (1, 10)


def test_all_but_last_trains_exactly_the_heads(family):
    name, model = family
    apply_freeze(model, name, "all-but-last")
    heads = tuple(f"{h}." for h in head_paths(model))
    assert trainable_names(model) == {n for n, _ in model.named_parameters() if n.startswith(heads)}


def test_first_k_freezes_exactly_the_first_k_stages(family):
    name, model = family
    owner, stages = parameter_groups(model, name)
    k = len(stages) // 2
    apply_freeze(model, name, "first-k", k=k)
    expected = {n for n, g in owner.items() if g == "head" or g >= k}
    assert trainable_names(model) == expected
    assert any(g == 0 for g in owner.values()) and k > 0


def test_none_trains_everything_and_gradual_grows_from_the_top(family):
    name, model = family
    apply_freeze(model, name, "none")
    assert trainable_names(model) == {n for n, _ in model.named_parameters()}
    owner, stages = parameter_groups(model, name)
    apply_freeze(model, name, "gradual", unfrozen_stages=1)
    assert trainable_names(model) == {n for n, g in owner.items() if g == "head" or g == len(stages) - 1}


def test_k_beyond_the_stages_is_a_clear_error():
    model, _ = build_pretrained("resnet18", weights="none", num_classes=10)
    assert len(model_stages(model, "resnet18")) == 5
    with pytest.raises(UserError, match="--k 9 is beyond the 5 stages of resnet18"):
        apply_freeze(model, "resnet18", "first-k", k=9)


def test_input_size_and_normalisation_come_from_the_weights():
    _, info = build_pretrained("inception_v3", weights="none", num_classes=10)
    assert info["preprocess"]["crop_size"] == 299
    _, info = build_pretrained("efficientnet_v2_s", weights="none", num_classes=10)
    assert info["preprocess"]["crop_size"] == 384


def test_an_unknown_model_name_suggests_the_closest_ones():
    with pytest.raises(UserError, match="unknown model 'resnet5000'; did you mean resnet50, "):
        build_pretrained("resnet5000")
    with pytest.raises(UserError, match="unknown model 'ResNet'; did you mean resnet"):  # a family: its members
        build_pretrained("ResNet")
    listed = subprocess.run([sys.executable, str(ROOT / "partB/finetune.py"), "--list-models"], capture_output=True,
                            text=True, cwd=ROOT)
    names = listed.stdout.splitlines()  # one per line: greppable, countable
    assert listed.returncode == 0 and {"efficientnet_lite0", "resnet50"} <= set(names) and all(" " not in n for n in names)


def test_a_weights_file_for_another_architecture_names_the_keys(tmp_path):
    path = tmp_path / "wrong.pth"
    torch.save(torchvision.models.resnet18().state_dict(), path)
    with pytest.raises(UserError, match=r"does not match the model .*missing keys"):
        build_pretrained("mobilenet_v3_small", weights=str(path), num_classes=10)


def test_a_local_weights_file_is_accepted(tmp_path):
    reference = torchvision.models.resnet18()
    path = tmp_path / "mine.pth"
    torch.save(reference.state_dict(), path)
    model, info = build_pretrained("resnet18", weights=str(path))
    assert info["weights_source"] == str(path)
    assert torch.equal(model.conv1.weight, reference.conv1.weight)


def torchvision_file(model_fn, name):
    buffer = io.BytesIO()
    torch.save(model_fn().state_dict(), buffer)
    body = buffer.getvalue()
    return f"{name}-{hashlib.sha256(body).hexdigest()[:8]}.pth", body


def test_torchvision_download_path_against_a_local_server(http_server, tmp_path, monkeypatch):
    file_name, body = torchvision_file(torchvision.models.resnet18, "resnet18")
    http_server.handler.files[f"/{file_name}"] = body
    monkeypatch.setenv(MIRROR_ENV, http_server.url)
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))

    class FakeEnum:  # the real enum's file name carries the real hash; serve our own file under a new name
        url = f"https://download.pytorch.org/models/{file_name}"

    path = fetch_torchvision_weights(FakeEnum, progress=False)
    assert path == tmp_path / "hub" / "checkpoints" / file_name and path.read_bytes() == body
    assert weights_enum("resnet18", "default").url.endswith("resnet18-f37072fd.pth")


def test_a_tampered_torchvision_download_is_rejected(http_server, tmp_path, monkeypatch):
    file_name, body = torchvision_file(torchvision.models.resnet18, "resnet18")
    http_server.handler.files[f"/{file_name}"] = body + b"tampered"
    monkeypatch.setenv(MIRROR_ENV, http_server.url)

    class FakeEnum:
        url = f"https://download.pytorch.org/models/{file_name}"

    with pytest.raises(UserError, match="failed its hash check"):
        fetch_torchvision_weights(FakeEnum, cache_dir=tmp_path, progress=False)
    assert not (tmp_path / file_name).exists()


def test_offline_without_cached_weights_says_what_to_do(tmp_path, monkeypatch):
    monkeypatch.setenv(MIRROR_ENV, "http://127.0.0.1:9")
    with pytest.raises(UserError, match="efficientnet_lite0"):
        fetch_torchvision_weights(weights_enum("resnet18", "default"), cache_dir=tmp_path, progress=False)


def test_a_short_fine_tune_on_demo_data_beats_chance_by_far(demo_root, tmp_path):
    data = load_train_val(demo_root, 96, cache_dir=tmp_path / "cache", progress=False, resize=110)
    record = run_finetune({"model": "efficientnet_lite0", "freeze": "all-but-last", "image_size": 96,
                           "resize_size": 110, "epochs": 4, "lr": 3e-3, "batch_size": 16, "wandb": "disabled",
                           "quiet": True, "runs_dir": str(tmp_path / "runs"), "run_name": "ft"}, data=data)
    assert record["summary"]["best_val_acc"] >= 0.5  # chance is 0.1
    assert record["trainable_params"] == 12_810


def test_frozen_batchnorm_keeps_imagenet_statistics(demo_root, tmp_path):
    data = load_train_val(demo_root, 64, cache_dir=tmp_path / "cache", progress=False)
    before, _ = build_pretrained("efficientnet_lite0", "default", num_classes=10)
    run_finetune({"model": "efficientnet_lite0", "freeze": "first-k", "k": 8, "image_size": 64, "epochs": 1,
                  "batch_size": 16, "wandb": "disabled", "quiet": True, "runs_dir": str(tmp_path / "runs"),
                  "run_name": "bn"}, data=data)
    after = torch.load(tmp_path / "runs/bn/last.pt", weights_only=True)["model"]
    reference = before.state_dict()
    assert torch.equal(after["features.0.1.running_mean"], reference["features.0.1.running_mean"])  # frozen stage
    assert not torch.equal(after["features.8.1.running_mean"], reference["features.8.1.running_mean"])  # trained


def test_finetune_cli_lists_stages_and_rejects_bad_input():
    ok = subprocess.run([sys.executable, str(ROOT / "partB/finetune.py"), "--model", "resnet18", "--list-stages",
                         "--freeze", "first-k", "--k", "2"], capture_output=True, text=True, cwd=ROOT)
    assert ok.returncode == 0 and "layer1." in ok.stdout and "trainable" in ok.stdout
    bad = subprocess.run([sys.executable, str(ROOT / "partB/finetune.py"), "--model", "resnet5000"],
                         capture_output=True, text=True, cwd=ROOT)
    assert bad.returncode != 0 and "unknown model 'resnet5000'" in bad.stderr and "Traceback" not in bad.stderr


def test_compare_puts_scratch_and_fine_tuned_side_by_side(demo_root, tmp_path):
    common = {"wandb": "disabled", "quiet": True, "runs_dir": str(tmp_path / "runs"), "cache_dir": str(tmp_path / "c"),
              "data_dir": str(demo_root), "epochs": 1, "batch_size": 16}
    run_scratch({**common, "image_size": 32, "filters": "4,4,8,8,8", "dense_units": 8, "run_name": "scratch"})
    run_finetune({**common, "model": "efficientnet_lite0", "image_size": 64, "run_name": "tuned"})
    evaluate_on_test(tmp_path / "runs/tuned", demo_root, tmp_path / "eval/tuned", cache_dir=tmp_path / "c",
                     progress=False)
    result = subprocess.run([sys.executable, str(ROOT / "partB/compare.py"), "--runs-dir", str(tmp_path / "runs"),
                             "--eval-dir", str(tmp_path / "eval"), "--out", str(tmp_path / "cmp")],
                            capture_output=True, text=True, cwd=ROOT)
    assert result.returncode == 0, result.stderr
    report = json.loads((tmp_path / "cmp/compare.json").read_text())
    rows = {r["run"]: r for r in report["rows"]}
    assert set(rows) == {"scratch", "tuned"} and report["same_split"]
    assert rows["tuned"]["trainable_params"] == 12_810 and rows["tuned"]["test_acc"] is not None
    assert rows["scratch"]["test_acc"] is None  # not evaluated: reported as such, never computed here
    assert (tmp_path / "cmp/learning_curves.png").exists()


def test_frozen_backbone_without_augmentation_trains_the_head_on_cached_features(demo_root, tmp_path):
    data = load_train_val(demo_root, 64, cache_dir=tmp_path / "cache", progress=False)
    opts = {"model": "efficientnet_lite0", "freeze": "all-but-last", "image_size": 64, "augment": False, "epochs": 3,
            "batch_size": 16, "wandb": "disabled", "quiet": True, "runs_dir": str(tmp_path / "runs"),
            "cache_dir": str(tmp_path / "cache")}
    record = run_finetune({**opts, "run_name": "feat"}, data=data)
    assert record["finetune"]["feature_cache"] and list((tmp_path / "cache/features").glob("*.pt"))
    ckpt = load_checkpoint(tmp_path / "runs/feat/last.pt")
    imagenet, _ = build_pretrained("efficientnet_lite0", "default", num_classes=10)
    reference = imagenet.state_dict()
    assert all(torch.equal(ckpt["model"][k], reference[k]) for k in reference if not k.startswith("classifier"))
    assert not torch.equal(ckpt["model"]["classifier.1.weight"], reference["classifier.1.weight"])
    # the saved whole network scores the validation images exactly as the head did on their features
    full = model_from_checkpoint(ckpt)
    val = evaluate(full, data.val, ckpt["mean"], ckpt["std"], torch.device("cpu"))
    assert val["acc"] == pytest.approx(record["epochs"][-1]["val_acc"], abs=1e-6)
    # a run cut after epoch 2 resumes on the cached features and ends where the uninterrupted one did
    real_fit = training.fit

    def cut(*args, **kwargs):
        return real_fit(*args, **{**kwargs, "should_stop": lambda epoch, metrics: epoch == 2})

    finetune_module.fit = cut
    try:
        run_finetune({**opts, "run_name": "cut"}, data=data)
    finally:
        finetune_module.fit = real_fit

    record_path = tmp_path / "runs/cut/record.json"
    stored = json.loads(Path(record_path).read_text())
    stored["status"] = "interrupted"  # as a killed run leaves it
    save_json(record_path, stored)
    resumed = resume_finetune("cut", {}, runs_dir=str(tmp_path / "runs"), data=data)
    assert [e["epoch"] for e in resumed["epochs"]] == [1, 2, 3]
    final = load_checkpoint(tmp_path / "runs/cut/last.pt")["model"]
    assert torch.equal(final["classifier.1.weight"], ckpt["model"]["classifier.1.weight"])


@pytest.mark.slow
def test_auxiliary_heads_join_the_training_loss():
    torch.manual_seed(0)
    targets = torch.tensor([0, 1])
    criterion = torch.nn.CrossEntropyLoss()
    for name, weight in (("inception_v3", 0.4), ("googlenet", 0.3)):
        model, _ = build_pretrained(name, weights="none", num_classes=3)
        model.train()
        output = model(torch.randn(2, 3, 299 if name == "inception_v3" else 96, 299 if name == "inception_v3" else 96))
        logits, loss = training_loss(output, targets, criterion)
        aux = [v for k, v in output._asdict().items() if k != "logits"]
        expected = criterion(output.logits, targets) + sum(weight * criterion(a, targets) for a in aux)
        assert logits.shape == (2, 3) and torch.allclose(loss, expected)
        loss.backward()
        assert model.AuxLogits.fc.weight.grad is not None if name == "inception_v3" else model.aux1.fc2.weight.grad is not None


def test_a_vision_transformer_refuses_another_input_size(demo_root, tmp_path):
    with pytest.raises(UserError, match="vit_b_16 takes 224x224 inputs only"):
        run_finetune({"model": "vit_b_16", "weights": "none", "image_size": 128, "data_dir": str(demo_root),
                      "runs_dir": str(tmp_path), "wandb": "disabled", "quiet": True})


def test_the_requested_weights_decide_the_preprocessing():
    assert preprocess_for("resnet50", "IMAGENET1K_V1").resize_size == 256
    assert preprocess_for("resnet50", "IMAGENET1K_V2").resize_size == 232
    with pytest.raises(UserError, match="resnet50 has no weights 'IMAGENET1K_V9'"):
        preprocess_for("resnet50", "IMAGENET1K_V9")


def test_frozen_blocks_are_wholly_in_eval_mode_dropout_and_stochastic_depth_included(lite0):
    model, _ = build_pretrained("efficientnet_lite0", "default", num_classes=10)
    apply_freeze(model, "efficientnet_lite0", "all-but-last")
    model.train()
    frozen_modules_to_eval(model)
    droppers = [(n, m) for n, m in model.named_modules() if isinstance(m, (torch.nn.Dropout, StochasticDepth))]
    assert any(isinstance(m, StochasticDepth) for _, m in droppers)  # Lite0 has them: the check is not empty
    backbone = [m for n, m in droppers if not n.startswith("classifier")]
    assert backbone and not any(m.training for m in backbone)
    x = torch.rand(2, 3, 64, 64)
    with torch.no_grad():  # a frozen backbone in train mode computes the same features every time
        assert torch.equal(model.features(x), model.features(x))
    assert model.classifier.training  # the trainable head keeps its own dropout
    apply_freeze(model, "efficientnet_lite0", "gradual", unfrozen_stages=1)
    model.train()
    frozen_modules_to_eval(model)
    top = model.features[-1]
    assert top.training and not model.features[0].training


def test_finetune_help_shows_the_defaults_that_run(demo_root, tmp_path):
    result = subprocess.run([sys.executable, str(ROOT / "partB/finetune.py"), "--help"], capture_output=True, text=True,
                            cwd=ROOT)
    text = " ".join(result.stdout.split())
    for flag, value in (("--epochs", "10"), ("--lr", "0.001"), ("--weight-decay", "0.01"),
                        ("--label-smoothing", "0.1")):
        entry = __import__("re").search(rf" {flag} (?:FLOAT|INTEGER) (.*?)(?= --[a-z])", text).group(1)
        assert f"[default: {value}]" in entry, (flag, entry)
    assert "the weights' own crop size" in text
    run = subprocess.run([sys.executable, str(ROOT / "partB/finetune.py"), "--data-dir", str(demo_root), "--epochs", "1",
                          "--no-augment", "--image-size", "64", "--runs-dir", str(tmp_path / "runs"), "--run-name", "h",
                          "--cache-dir", str(tmp_path / "cache"), "--wandb", "disabled", "--quiet"],
                         capture_output=True, text=True, cwd=ROOT)
    assert run.returncode == 0, run.stderr
    config = __import__("json").loads((tmp_path / "runs/h/record.json").read_text())["config"]
    assert {k: config[k] for k in ("lr", "weight_decay", "label_smoothing")} == \
        {k: FINETUNE_RECIPE[k] for k in ("lr", "weight_decay", "label_smoothing")}


def test_part_b_refuses_settings_that_would_silently_change(demo_root, tmp_path):
    base = {"model": "efficientnet_lite0", "image_size": 64, "epochs": 1, "wandb": "disabled", "quiet": True,
            "runs_dir": str(tmp_path / "runs"), "data_dir": str(demo_root)}
    with pytest.raises(UserError, match="--backbone-lr-scale must be > 0"):
        run_finetune({**base, "freeze": "none", "backbone_lr_scale": 0})
    with pytest.raises(UserError, match="--unfreeze-every must be >= 1"):
        run_finetune({**base, "freeze": "gradual", "unfreeze_every": 0})
    with pytest.raises(UserError, match="first-k needs --k"):
        run_finetune({**base, "freeze": "first-k"})


@pytest.mark.parametrize("strategy", ["gradual", "none"])
def test_gradual_and_none_freezing_through_the_real_loop(demo_root, tmp_path, strategy):
    """gradual (unfreeze every epoch): epoch 1 trains the head only, epoch 2 adds the top stage — so after two
    epochs the top stage and the head moved and the stem did not; none moves everything."""
    data = load_train_val(demo_root, 32, cache_dir=tmp_path / "cache", progress=False)
    before, _ = build_pretrained("efficientnet_lite0", "default", num_classes=10)
    reference = {k: v.clone() for k, v in before.state_dict().items()}
    run_finetune({"model": "efficientnet_lite0", "freeze": strategy, "image_size": 32, "epochs": 2, "batch_size": 16,
                  "wandb": "disabled", "quiet": True, "runs_dir": str(tmp_path / "runs"), "run_name": "g",
                  "unfreeze_every": 1}, data=data)
    after = torch.load(tmp_path / "runs/g/last.pt", weights_only=True)["model"]
    moved = lambda key: not torch.equal(after[key], reference[key])  # noqa: E731
    assert moved("features.8.0.weight")  # the top stage (conv_head)
    assert moved("features.0.0.weight") == (strategy == "none")  # the stem: frozen throughout under gradual


def test_the_feature_cache_is_a_pure_speed_up_it_trains_what_the_normal_path_trains(demo_root, tmp_path):
    """EfficientNet's head is Dropout(0.2) → Linear: the cached path must apply that dropout too (it once trained
    the Linear alone: weights 7.8e-3 apart after one epoch). Same seed, same batches, same dropout masks."""
    data = load_train_val(demo_root, 64, cache_dir=tmp_path / "cache", progress=False)
    opts = {"model": "efficientnet_lite0", "freeze": "all-but-last", "image_size": 64, "augment": False, "epochs": 1,
            "batch_size": 16, "wandb": "disabled", "quiet": True, "runs_dir": str(tmp_path / "runs"),
            "cache_dir": str(tmp_path / "cache"), "precision": "off", "channels_last": False}
    cached = run_finetune({**opts, "run_name": "cached"}, data=data)
    plain = run_finetune({**opts, "run_name": "plain", "feature_cache": False}, data=data)
    assert cached["finetune"]["feature_cache"] and not plain["finetune"]["feature_cache"]
    a = load_checkpoint(tmp_path / "runs/cached/last.pt")["model"]
    b = load_checkpoint(tmp_path / "runs/plain/last.pt")["model"]
    start, _ = build_pretrained("efficientnet_lite0", "default", num_classes=10)
    moved = (a["classifier.1.weight"] - start.state_dict()["classifier.1.weight"]).abs().max()
    # the head is re-initialised by the seed in both runs; what training moved it by must match to float rounding
    assert torch.allclose(a["classifier.1.weight"], b["classifier.1.weight"], atol=1e-5), \
        (a["classifier.1.weight"] - b["classifier.1.weight"]).abs().max()
    assert moved > 1e-3


def test_the_comparison_says_how_soon_the_fine_tuned_run_passed_the_scratch_best_and_which_classes_gained():
    def curve(vals, trains, seconds):
        return [{"epoch": i + 1, "val_acc": v, "train_acc": t, "elapsed_s": s}
                for i, (v, t, s) in enumerate(zip(vals, trains, seconds))]

    scratch = {"run": "s", "kind": "scratch", "model": "5-block CNN", "freeze": "-", "image_size": 64, "val_acc": 0.60,
               "test_acc": 0.58, "trainable_params": 2_000_000, "total_s": 30.0, "feature_pass_s": None,
               "curve": curve([0.40, 0.55, 0.60], [0.5, 0.7, 0.8], [10, 20, 30]),
               "per_class": {"A": 0.5, "B": 0.6, "C": 0.7, "D": 0.9}}
    tuned = {"run": "t", "kind": "finetune", "model": "efficientnet_lite0", "freeze": "all-but-last", "image_size": 224,
             "val_acc": 0.90, "test_acc": 0.88, "trainable_params": 12_810, "total_s": 9.0, "feature_pass_s": 5.0,
             "curve": curve([0.70, 0.90], [0.75, 0.92], [2, 4]),
             "per_class": {"A": 0.9, "B": 0.8, "C": 0.75, "D": 0.85}}
    text = "\n".join(insights([scratch, tuned]))
    assert "(+30.0 points)" in text and "12,810 parameters against 2,000,000" in text
    # 0.70 ≥ 0.60 at epoch 1: 2 s of training + the 5 s feature pass; the scratch run reached 0.60 at epoch 3, 30 s
    assert "passed the scratch run's best validation accuracy (0.600) after 1 epoch, 7 s" in text
    assert "the scratch run took 3 epochs, 30 s" in text
    assert "+0.200 from scratch, +0.020 fine-tuned" in text  # 0.8 − 0.6 and 0.92 − 0.90
    assert "rose most in A 0.50 → 0.90, B 0.60 → 0.80, C 0.70 → 0.75 and fell most in D 0.90 → 0.85" in text
    assert "ImageNet features carry over" in text  # said only of a run that trains fewer parameters
    everything = {**tuned, "run": "n", "freeze": "none", "trainable_params": 3_383_818}
    assert "carry over" not in "\n".join(insights([scratch, everything]))
    # with several fine-tuned runs, scratch is compared with the best by validation accuracy only
    said = "\n".join(insights([scratch, {**everything, "val_acc": 0.5}, tuned]))
    assert "t (efficientnet_lite0, --freeze all-but-last), the best fine-tuned run," in said and "n (" not in said
    # ... and with the best fine-tuned run at the scratch run's 64 px: 0.50 − 0.58 = −8.0 points, below scratch
    small = {**tuned, "run": "k", "freeze": "first-k k=4", "image_size": 64, "val_acc": 0.55, "test_acc": 0.50}
    assert ("At the scratch run's own 64 px, the best fine-tuned run is k (--freeze first-k k=4) at 0.500 test accuracy "
            "(-8.0 points against scratch): the gain needs the larger input size (224 px).") in "\n".join(
        insights([scratch, tuned, small]))
    assert "own 64 px" not in said  # no fine-tuned run at 64 px: nothing to say


def test_the_strategies_are_ranked_only_where_nothing_else_differs():
    def row(run, freeze, val, **changed):
        settings = {"epochs": 3, "image_size": 48, "batch_size": 64, "lr": 1e-3, "weight_decay": 0.01, "augment": False,
                    "backbone_lr_scale": 0.1 if freeze == "none" else None, **changed}
        return {"run": run, "kind": "finetune", "model": "efficientnet_lite0", "freeze": freeze, "val_acc": val,
                "image_size": settings["image_size"],
                "test_acc": None, "trainable_params": 1000, "total_s": 10.0, "split_file": "split.json",
                "settings": settings}

    rows = [row("main", "all-but-last", 0.95, image_size=224), row("abl", "all-but-last", 0.59),
            row("fk", "first-k k=4", 0.79), row("none", "none", 0.46)]
    said, size = strategies(rows)  # the 224 px run differs in more than its strategy: not in the ranking
    assert "(efficientnet_lite0, 48 px, 3 epochs," in said and "0.950" not in said
    # ... but beside the 48 px all-but-last run it shows what the input size alone changed: 0.95 − 0.59 = 36 points
    assert size == ("all-but-last at 224 px reached 0.950 validation accuracy, at 48 px 0.590: +36.0 points from the "
                    "input size and its resizing, the recipe otherwise the same.")
    assert said.index("first-k k=4 0.790") < said.index("all-but-last 0.590") < said.index("none (backbone at 0.1 ×")
    assert strategies([rows[0], rows[2]]) == []  # they differ in strategy and input size: nothing is said


def test_the_comparison_names_every_setting_the_runs_differ_in():
    def row(run, **changed):
        settings = {"epochs": 3, "image_size": 64, "batch_size": 64, "lr": 1e-3, "weight_decay": 0.01, "augment": False,
                    "backbone_lr_scale": None, "optimizer": "adamw", "label_smoothing": 0.1, "warmup_epochs": 1.0,
                    "grad_clip": 1.0}
        return {"run": run, "settings": {**settings, **changed}}

    said = differences([row("s", epochs=15, augment=True, weight_decay=0.05), row("t", image_size=224),
                        row("n", epochs=1, backbone_lr_scale=0.1)])
    # a value several runs share is said once ("the other runs")
    assert said == ["The number of epochs differs: s 15, t 3, n 1.", "The input size (px) differs: t 224, the other runs 64.",
                    "The weight decay differs: s 0.05, the other runs 0.01.",
                    "The augmentation differs: s on, the other runs off.",
                    "n trains its backbone at 0.1 × the learning rate.",
                    "The same in every run: batch size 64, learning rate 0.001, optimizer adamw, label smoothing 0.1, "
                    "warm-up epochs 1, gradient clipping norm 1."]
