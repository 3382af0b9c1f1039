"""A second real image set, offline: scikit-learn's bundled handwritten digits as an iNaturalist-style folder.

1,797 real 8×8 grayscale scans (UCI optical digits, ~180 per class) are upscaled to 64×64
(bicubic), given a colour tint and written as JPEGs into `inaturalist_12K/{train,val}/<digit>/`,
with a seeded stratified 20 % as the test folder. It is small and easy, but real: a check that a
recipe's gains are not an artefact of the synthetic demo shapes.

    python -m common.digits_data --out data/digits
"""
from pathlib import Path

import numpy as np
from PIL import Image

CLASS_NAMES = [f"digit{d}" for d in range(10)]


def generate_digits_dataset(out_dir, test_fraction=0.2, size=64, seed=0):
    from sklearn.datasets import load_digits

    digits = load_digits()
    rng = np.random.default_rng(seed)
    root = Path(out_dir) / "inaturalist_12K"
    for label in range(10):
        indices = np.flatnonzero(digits.target == label)
        rng.shuffle(indices)
        n_test = round(test_fraction * len(indices))
        for split, chosen in (("val", indices[:n_test]), ("train", indices[n_test:])):
            folder = root / split / CLASS_NAMES[label]
            folder.mkdir(parents=True, exist_ok=True)
            for i in chosen:
                path = folder / f"{i:04d}.jpg"
                if path.exists():
                    continue
                gray = Image.fromarray(np.uint8(digits.images[i] / 16.0 * 255)).resize((size, size), Image.BICUBIC)
                tint = rng.uniform(0.6, 1.0, 3)  # a random ink colour per image: three channels that differ
                rgb = np.stack([np.asarray(gray, np.float32) * t for t in tint], -1)
                tmp = path.with_suffix(".tmp")
                Image.fromarray(np.uint8(np.clip(rgb, 0, 255))).save(tmp, format="JPEG", quality=92)
                tmp.replace(path)
    return root


if __name__ == "__main__":
    import click

    @click.command()
    @click.option("--out", default="data/digits", show_default=True)
    @click.option("--seed", type=int, default=0, show_default=True)
    def main(out, seed):
        """Write scikit-learn's digits as an iNaturalist-layout image folder."""
        click.echo(f"digits dataset: {generate_digits_dataset(out, seed=seed)}")

    main()
