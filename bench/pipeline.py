"""`make bench`: epoch throughput of the seed's input pipeline, a competent one, and ours.

    python bench/pipeline.py --images 640 --epochs 2 --image-size 128

The same CNN on the same JPEGs, validated once per epoch; the three pipelines and the results:
docs/measurements.md, "Input pipeline".
"""
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import common  # noqa: E402,F401 (first: without the project's environment it says how to start)

import click
import torch
from torch import nn
from torch.utils.data import DataLoader, Subset

from common.cli import OneLineErrors
from common.data import TrainValData, load_or_make_split, load_tensor_set, scan_image_folder
from common.dataset_zip import locate_dataset
from common.models import CNNConfig, build_model
from common.device import autocast, resolve_device, resolve_precision
from common.recipe import TrainConfig
from common.training import RunSpec, fit

SEED_MODEL = dict(filters=[16, 32, 64, 128, 256], kernel_sizes=[3] * 5, activation="gelu", batch_norm=True,
                  dropout=0.2, dense_units=256)


def loader_epoch(model, train_loader, val_loader, optimizer, scaler, device, precision, channels_last, second_pass):
    """One epoch from DataLoaders; returns train images/s. `second_pass`: the seed's extra pass for train accuracy."""
    started = time.perf_counter()
    criterion = nn.CrossEntropyLoss()
    model.train()
    seen = 0
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    for x, y in train_loader:
        x = x.to(device, non_blocking=True).contiguous(memory_format=fmt)
        y = y.to(device, non_blocking=True)
        optimizer.zero_grad(set_to_none=True)
        with autocast(device, precision):
            loss = criterion(model(x).float(), y)
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()
        seen += len(y)
    model.eval()
    with torch.no_grad(), autocast(device, precision):  # validation (and the seed's second pass)
        for loader in (train_loader, val_loader) if second_pass else (val_loader,):
            sum((model(x.to(device)).argmax(1) == y.to(device)).sum().item() for x, y in loader)
    if device.type == "cuda":
        torch.cuda.synchronize()
    return seen / (time.perf_counter() - started)


def run_loader_pipeline(root, train_idx, val_idx, image_size, batch_size, epochs, device, seed, competent):
    """(a) the seed's pipeline, or (c) with competent=True the same data path done well."""
    from torchvision import datasets, transforms

    tf = transforms.Compose([transforms.Resize((image_size, image_size)), transforms.RandomHorizontalFlip(),
                             transforms.ToTensor(), transforms.Normalize([0.5] * 3, [0.5] * 3)])
    folder = datasets.ImageFolder(str(root), transform=tf)
    workers = (os.cpu_count() or 1) if competent else min(2, torch.get_num_threads())
    pin = competent and device.type == "cuda"
    loader = lambda idx, shuffle: DataLoader(Subset(folder, idx), batch_size=batch_size, shuffle=shuffle,
                                             num_workers=workers, drop_last=shuffle, persistent_workers=True,
                                             pin_memory=pin)
    train_loader, val_loader = loader(train_idx, True), loader(val_idx, False)
    torch.manual_seed(seed)
    model = build_model(CNNConfig(**SEED_MODEL, input_size=image_size, num_classes=len(folder.classes))).to(device)
    precision = resolve_precision("auto", device) if competent else "off"
    if competent:
        model = model.to(memory_format=torch.channels_last)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    scaler = torch.amp.GradScaler(device.type, enabled=precision == "fp16")
    rates = []
    for epoch in range(epochs):
        rates.append(loader_epoch(model, train_loader, val_loader, optimizer, scaler, device, precision,
                                  channels_last=competent, second_pass=not competent))
        click.echo(f"  {'competent' if competent else 'seed'} epoch {epoch + 1}: {rates[-1]:.1f} train img/s")
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
        state = RunSpec(Path(tmp) / "bench", {"kind": "cnn", "config": {}}, classes, mean, std)
        record = fit(model, data, cfg, state)
    rates = []
    for e in record["epochs"]:
        rates.append(len(train) // batch_size * batch_size / e["epoch_time"])
        click.echo(f"  ours epoch {e['epoch']}: {rates[-1]:.1f} train img/s (epoch incl. validation)")
    return rates, cache_time


@click.command(cls=OneLineErrors, context_settings={"show_default": True})
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
        train_idx, val_idx = [index[p] for p, _ in train_samples], [index[p] for p, _ in val_samples]
        seed_rates = run_loader_pipeline(dataset.train_dir, train_idx, val_idx, image_size, batch_size, epochs, dev, seed,
                                         competent=False)
        click.echo("(c) competent pipeline: DataLoader with a worker per core, pin_memory, persistent workers, "
                   "autocast, channels_last")
        competent_rates = run_loader_pipeline(dataset.train_dir, train_idx, val_idx, image_size, batch_size, epochs, dev,
                                              seed, competent=True)
        click.echo("(b) ours: decoded uint8 cache, tensor augmentation on the device, channels_last, autocast auto")
        our_rates, cache_time = run_ours(dataset.train_dir, train_samples, val_samples, scan.classes, image_size,
                                         batch_size, epochs, str(dev), seed, cache)
    seed_best, competent_best, ours_best = max(seed_rates), max(competent_rates), max(our_rates)
    click.echo(f"result: seed {seed_best:.1f}, competent {competent_best:.1f}, ours {ours_best:.1f} img/s per epoch -> "
               f"{ours_best / seed_best:.2f}x the seed's, {ours_best / competent_best:.2f}x the competent pipeline's "
               f"(one-time decode: {cache_time:.1f}s)")


if __name__ == "__main__":
    main()
