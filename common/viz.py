"""Figures: prediction grid, confusion matrix, learning curves. Matplotlib only, no display needed."""
import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from PIL import Image  # noqa: E402
from common.io import write_atomically  # noqa: E402

GOOD, BAD = "#1a9850", "#d73027"


def save(fig, path, rect=(0, 0, 1, 1)):
    """Lay the figure out tight within `rect` (None: as it is), then write it."""
    path = Path(path)
    if rect:
        fig.tight_layout(rect=rect)
    try:  # under a temporary name first: a full disk never leaves a truncated figure no viewer opens
        write_atomically(path, lambda handle: fig.savefig(handle, format=path.suffix[1:] or "png", dpi=110,
                                                          bbox_inches="tight"))
    finally:
        plt.close(fig)
    return path


def choose_grid_samples(labels, num_classes, per_class, seed):
    """Indices: `per_class` seeded picks of each class (fewer if a class is small), class by class."""
    rng = np.random.default_rng(seed)
    labels = np.asarray(labels)
    rows = []
    for c in range(num_classes):
        members = np.flatnonzero(labels == c)
        rows.append(sorted(rng.choice(members, size=min(per_class, len(members)), replace=False).tolist()))
    return rows


def prediction_grid(image_paths, rows, labels, probs, classes, path, title=""):
    """One row per class, `per_class` test images each: photo, true vs predicted, confidence, green ✓ or red ✗."""
    n_rows, n_cols = len(rows), max(len(r) for r in rows)
    fig, axes = plt.subplots(n_rows, n_cols, figsize=(3.2 * n_cols, 2.9 * n_rows), squeeze=False)
    for r, indices in enumerate(rows):
        for c in range(n_cols):
            ax = axes[r][c]
            ax.set_xticks([])
            ax.set_yticks([])
            if c >= len(indices):
                ax.axis("off")
                continue
            i = indices[c]
            with Image.open(image_paths[i]) as img:
                img = img.convert("RGB")
                img.thumbnail((320, 320))
                ax.imshow(img)
            pred = int(np.argmax(probs[i]))
            ok = pred == labels[i]
            colour = GOOD if ok else BAD
            for spine in ax.spines.values():
                spine.set_edgecolor(colour)
                spine.set_linewidth(5)
            mark = "✓" if ok else "✗"
            ax.set_title(f"{mark} {classes[pred]} {probs[i][pred]:.0%}", color=colour, fontsize=11, fontweight="bold")
            ax.set_xlabel(f"true: {classes[labels[i]]}", fontsize=9)
        axes[r][0].set_ylabel(classes[labels[indices[0]]] if indices else "", fontsize=11, fontweight="bold")
    if title:
        fig.suptitle(title, fontsize=14, fontweight="bold")
    return save(fig, path, rect=(0, 0, 1, 1 - 0.5 / n_rows / 2.9) if title else (0, 0, 1, 1))


def confusion_matrix(labels, preds, num_classes):
    matrix = np.zeros((num_classes, num_classes), dtype=int)
    for t, p in zip(labels, preds):
        matrix[t, p] += 1
    return matrix


def confusion_plot(matrix, classes, path, title="confusion matrix"):
    fig, ax = plt.subplots(figsize=(1.0 + 0.62 * len(classes), 0.8 + 0.55 * len(classes)))
    norm = matrix / np.maximum(1, matrix.sum(1, keepdims=True))
    ax.imshow(norm, cmap="Blues", vmin=0, vmax=1)
    for (r, c), v in np.ndenumerate(matrix):
        ax.text(c, r, str(v), ha="center", va="center", fontsize=8, color="white" if norm[r, c] > 0.5 else "black")
    ax.set_xticks(range(len(classes)), classes, rotation=45, ha="right")
    ax.set_yticks(range(len(classes)), classes)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title)
    return save(fig, path)


def learning_curves(records, path, title="learning curves"):
    """records: {label: run record}; accuracy and loss per epoch. One colour per run; in every panel
    validation is solid with dots and training is dashed, so no panel can be read the other way round."""
    fig, (ax_acc, ax_loss) = plt.subplots(1, 2, figsize=(11, 4))
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for i, (label, record) in enumerate(records.items()):
        epochs = [e["epoch"] for e in record["epochs"]]
        colour = colours[i % len(colours)]
        for ax, metric in ((ax_acc, "acc"), (ax_loss, "loss")):
            ax.plot(epochs, [e[f"val_{metric}"] for e in record["epochs"]], color=colour, ls="-", marker="o", ms=3,
                    label=f"{label} validation")
            ax.plot(epochs, [e[f"train_{metric}"] for e in record["epochs"]], color=colour, ls="--", alpha=0.7,
                    label=f"{label} training")
    ax_acc.set(xlabel="epoch", ylabel="accuracy", title="accuracy")
    ax_loss.set(xlabel="epoch", ylabel="loss", title="loss (train: with the run's label smoothing; val: plain cross-entropy)")
    for ax in (ax_acc, ax_loss):
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle(title)
    return save(fig, path)


def near_square_grid(count):
    """(rows, cols) with rows·cols ≥ count, as square as possible: 64 → 8×8, 100 → 10×10."""
    cols = math.ceil(math.sqrt(count))
    rows = math.ceil(count / cols)
    return rows, cols
