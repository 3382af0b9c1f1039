"""The TEST set (`inaturalist_12K/val`). Only the test-evaluation commands import this module.

Training, sweeps and reports work from `common.data`, which exposes only the training folder;
`tests/test_leakage.py` checks both that nothing else imports this module and that a training
run opens no file under the test folder.
"""
from common.data import DEFAULT_CACHE, load_tensor_set, scan_image_folder
from common.dataset_zip import locate_dataset
from common.errors import UserError


def load_test_set(data_dir, classes, image_size, cache_dir=DEFAULT_CACHE, progress=True, resize=None):
    """(decoded test images, test folder), checked to have the classes the model was trained on."""
    dataset = locate_dataset(data_dir, download=False)
    test_dir = dataset.root / "val"
    scan = scan_image_folder(test_dir)
    if scan.classes != list(classes):
        raise UserError(f"the test folder {test_dir} has classes {scan.classes}, but the checkpoint was trained on "
                        f"{list(classes)}; point --data-dir at the matching dataset")
    images = load_tensor_set(test_dir, scan.samples, scan.classes, image_size, cache_dir, progress=progress, resize=resize)
    return images, test_dir
