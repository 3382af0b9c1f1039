"""Test evaluation of a trained run — the only library code that reads the TEST folder.

`evaluate_on_test` loads the run's best checkpoint, predicts every test image, and writes the
test accuracy, per-class accuracy, confusion matrix and the 10×3 prediction grid.
"""
from pathlib import Path

import torch

from common.checkpoints import load_checkpoint, load_record, model_from_checkpoint, resolve_run_dir
from common.data import load_train_val
from common.errors import UserError
from common.io import save_json
from common.run_records import best_run
from partA.testset import load_test_set
from common.device import resolve_device
from common.inference import predict
from common.viz import choose_grid_samples, confusion_matrix, confusion_plot, prediction_grid


def _best_checkpoint_and_data(run_dir, data_dir):
    """(best checkpoint, run record, dataset folder): --data-dir, else the one the run used."""
    ckpt = load_checkpoint(Path(run_dir) / "best.pt")
    record = load_record(run_dir)
    data_dir = data_dir or record.get("dataset")
    if not data_dir:
        raise UserError("pass --data-dir: the run record does not say which dataset it used")
    return ckpt, record, data_dir


def evaluate_on_test(run_dir, data_dir, out_dir, seed=0, per_class=3, device="auto", cache_dir="cache", progress=True):
    run_dir = Path(run_dir)
    ckpt, record, data_dir = _best_checkpoint_and_data(run_dir, data_dir)
    image_size = ckpt["train_config"]["image_size"]
    resize = ckpt["train_config"].get("resize_size")
    test, test_dir = load_test_set(data_dir, ckpt["classes"], image_size, cache_dir, progress=progress, resize=resize)
    model = model_from_checkpoint(ckpt, source=str(run_dir / "best.pt"))
    dev = resolve_device(device)
    model.to(dev)
    logits = predict(model, test.images, ckpt["mean"], ckpt["std"], dev)
    probs = torch.softmax(logits, 1)
    preds = probs.argmax(1)
    labels = test.labels
    classes = ckpt["classes"]
    matrix = confusion_matrix(labels.tolist(), preds.tolist(), len(classes))
    per_class_acc = {c: float(matrix[i, i] / max(1, matrix[i].sum())) for i, c in enumerate(classes)}
    accuracy = float((preds == labels).float().mean())
    out_dir = Path(out_dir)
    rows = choose_grid_samples(labels.tolist(), len(classes), per_class, seed)
    grid = prediction_grid([test_dir / p for p in test.paths], rows, labels.tolist(), probs.numpy(), classes,
                           out_dir / "test_grid.png",
                           title=f"{run_dir.name}: test accuracy {accuracy:.1%} ({len(labels)} images)")
    confusion = confusion_plot(matrix, classes, out_dir / "confusion_matrix.png",
                               title=f"test confusion matrix — accuracy {accuracy:.1%}")
    summary = {
        "run": run_dir.name, "checkpoint": str(run_dir / "best.pt"), "epoch": ckpt["epoch"],
        "best_val_acc": ckpt["best_val_acc"], "test_acc": accuracy, "test_images": len(labels),
        "skipped_test_images": len(test.skipped), "per_class_acc": per_class_acc,
        "confusion_matrix": matrix.tolist(), "classes": classes, "grid": str(grid), "confusion_plot": str(confusion),
        "grid_seed": seed, "kind": record.get("kind"),
    }
    save_json(out_dir / "test_summary.json", summary)
    return summary


def load_run_for_inspection(run, runs_dir, sweep, data_dir, source, cache_dir, progress=True):
    """(run folder, model in eval mode, checkpoint, images of `source`) for the visualisation commands: run `run`,
    else the best from-scratch run (of `sweep`, when given)."""
    run_dir = resolve_run_dir(run, runs_dir) if run else best_run(runs_dir, kind="scratch", sweep=sweep)
    ckpt, _, data_dir = _best_checkpoint_and_data(run_dir, data_dir)
    cfg = ckpt["train_config"]
    if source == "test":
        images, _ = load_test_set(data_dir, ckpt["classes"], cfg["image_size"], cache_dir, progress=progress,
                               resize=cfg.get("resize_size"))
    elif source == "val":
        images = load_train_val(data_dir, cfg["image_size"], cfg["val_fraction"], cfg["seed"], cache_dir,
                                download=False, progress=progress, resize=cfg.get("resize_size")).val
    else:
        raise UserError(f"--source must be test or val, got {source!r}")
    model = model_from_checkpoint(ckpt, source=str(run_dir / "best.pt"))
    return run_dir, model, ckpt, images
