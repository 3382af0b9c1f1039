"""`make bench`: epoch throughput of the seed's input pipeline vs ours, same model, same images.

(a) seed: torchvision ImageFolder, PIL decode + Resize every epoch, a DataLoader, fp32, NCHW,
    and a second pass over the training set for train accuracy;
(b) ours: images decoded once into the uint8 cache (timed separately: a one-time cost), batches
    augmented as tensors on the device, channels_last, autocast where the hardware has bf16,
    train accuracy from the training pass (common.training.fit, the real loop).

Both train the same CNN (the seed's best config) on the same JPEGs (≈500×375, the demo data
unless --data-dir says otherwise) and validate once per epoch.

    python partA/bench.py --images 640 --epochs 2 --image-size 128
"""
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import click
import torch
from torch import nn

from common.data import TrainValData, load_or_make_split, load_tensor_set, locate_dataset, scan_image_folder
from common.models import CNNConfig, build_model
from common.training import RunState, TrainConfig, fit, resolve_device, resolve_precision

SEED_MODEL = dict(filters=[16, 32, 64, 128, 256], kernel_sizes=[3] * 5, activation="gelu", batch_norm=True,
                  dropout=0.2, dense_units=256)


def seed_pipeline_epoch(model, train_loader, val_loader, optimizer, device):
    """One epoch the way the public implementations do it; returns (train images/s, train acc, val acc)."""
    started = time.perf_counter()
    criterion = nn.CrossEntropyLoss()
    model.train()
    seen = 0
    for x, y in train_loader:
        x, y = x.to(device), y.to(device)
        optimizer.zero_grad()
        loss = criterion(model(x), y)
        loss.backward()
        optimizer.step()
        seen += len(y)
    model.eval()
    with torch.no_grad():  # the second pass for train accuracy, then validation
        accuracies = [sum((model(x.to(device)).argmax(1) == y.to(device)).sum().item() for x, y in loader)
                      / len(loader.dataset) for loader in (train_loader, val_loader)]
    return seen / (time.perf_counter() - started), *accuracies


def run_seed(root, train_idx, val_idx, image_size, batch_size, epochs, device, seed):
    from torch.utils.data import DataLoader, Subset
    from torchvision import datasets, transforms

    tf = transforms.Compose([transforms.Resize((image_size, image_size)), transforms.RandomHorizontalFlip(),
                             transforms.ToTensor(), transforms.Normalize([0.5] * 3, [0.5] * 3)])
    folder = datasets.ImageFolder(str(root), transform=tf)
    workers = min(2, torch.get_num_threads())
    train_loader = DataLoader(Subset(folder, train_idx), batch_size=batch_size, shuffle=True, num_workers=workers,
                              drop_last=True, persistent_workers=True)
    val_loader = DataLoader(Subset(folder, val_idx), batch_size=batch_size, num_workers=workers, persistent_workers=True)
    torch.manual_seed(seed)
    model = build_model(CNNConfig(**SEED_MODEL, input_size=image_size, num_classes=len(folder.classes))).to(device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    rates = []
    for epoch in range(epochs):
        rate, _, _ = seed_pipeline_epoch(model, train_loader, val_loader, optimizer, device)
        rates.append(rate)
        click.echo(f"  seed epoch {epoch + 1}: {rate:.1f} train img/s")
    return rates


def run_ours(root, train_samples, val_samples, classes, image_size, batch_size, epochs, device, seed, cache_dir):
    started = time.perf_counter()
    train = load_tensor_set(root, train_samples, classes, image_size, cache_dir, progress=False)
    val = load_tensor_set(root, val_samples, classes, image_size, cache_dir, progress=False)
    cache_time = time.perf_counter() - started
    click.echo(f"  ours: decoded cache ready in {cache_time:.1f}s ({len(train) + len(val)} images; once per "
               f"file set and size, reused by every later run)")
    mean, std = [0.5] * 3, [0.5] * 3
    data = TrainValData(train, val, classes, mean, std, Path("-"), None)
    cfg = TrainConfig(image_size=image_size, batch_size=batch_size, epochs=epochs, seed=seed, wandb="disabled",
                      quiet=True, device=device, label_smoothing=0.0, lr=1e-3)
    torch.manual_seed(seed)
    model = build_model(CNNConfig(**SEED_MODEL, input_size=image_size, num_classes=len(classes)))
    with tempfile.TemporaryDirectory() as tmp:
        state = RunState(Path(tmp) / "bench", {"kind": "cnn", "config": {}}, classes, mean, std)
        record = fit(model, data, cfg, state)
    rates = []
    for e in record["epochs"]:
        rates.append(len(train) // batch_size * batch_size / e["epoch_time"])
        click.echo(f"  ours epoch {e['epoch']}: {rates[-1]:.1f} train img/s (epoch incl. validation)")
    return rates, cache_time


@click.command(context_settings={"show_default": True})
@click.option("--data-dir", default="data/demo", help="Dataset folder (the demo data by default).")
@click.option("--images", type=int, default=640, help="Training images used (validation: a quarter of that).")
@click.option("--image-size", type=int, default=128)
@click.option("--batch-size", type=int, default=64)
@click.option("--epochs", type=int, default=2)
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default="auto")
@click.option("--seed", type=int, default=0)
@click.option("--cache-dir", default=None, help="Cache folder [default: a fresh temporary one, so decode is timed].")
def main(data_dir, images, image_size, batch_size, epochs, device, seed, cache_dir):
    """Compare epoch throughput of the seed pipeline and ours on the same model and images."""
    dataset = locate_dataset(data_dir, download=False)
    scan = scan_image_folder(dataset.train_dir)
    with tempfile.TemporaryDirectory() as tmp_cache:
        cache = Path(cache_dir or tmp_cache)
        train_samples, val_samples, _ = load_or_make_split(scan, 0.2, seed, cache)
        gen = torch.Generator().manual_seed(seed)
        train_samples = [train_samples[i] for i in torch.randperm(len(train_samples), generator=gen)[:images].tolist()]
        val_samples = [val_samples[i] for i in torch.randperm(len(val_samples), generator=gen)[:images // 4].tolist()]
        index = {path: i for i, (path, _) in enumerate(scan.samples)}
        dev = resolve_device(device)
        click.echo(f"bench: {len(train_samples)} train + {len(val_samples)} val JPEGs from {dataset.train_dir}, "
                   f"{image_size}px, batch {batch_size}, {epochs} epochs, device {dev}, "
                   f"{torch.get_num_threads()} threads, autocast {resolve_precision('auto', dev)}")
        click.echo("(a) seed pipeline: ImageFolder + PIL Resize each epoch, DataLoader, fp32 NCHW, 2nd pass for train acc")
        seed_rates = run_seed(dataset.train_dir, [index[p] for p, _ in train_samples], [index[p] for p, _ in val_samples],
                              image_size, batch_size, epochs, dev, seed)
        click.echo("(b) ours: decoded uint8 cache, tensor augmentation on the device, channels_last, autocast auto")
        our_rates, cache_time = run_ours(dataset.train_dir, train_samples, val_samples, scan.classes, image_size,
                                         batch_size, epochs, str(dev), seed, cache)
    seed_best, ours_best = max(seed_rates), max(our_rates)
    click.echo(f"result: seed {seed_best:.1f} img/s, ours {ours_best:.1f} img/s per epoch -> "
               f"{ours_best / seed_best:.2f}x faster epochs (one-time decode: {cache_time:.1f}s)")


if __name__ == "__main__":
    main()
