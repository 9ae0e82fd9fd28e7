"""Datasets, robust image decoding, splits and dataset versions.

from visiontune.data import load_classification, read_image, ImageDataset
splits = load_classification("data/pets")          # folder, CSV, manifest, "torchvision:..."
splits.train, splits.val, splits.test, splits.classes, splits.version, splits.summary()
"""

from visiontune.data.dataset import SPLIT_NAMES, ImageDataset, Splits
from visiontune.data.decode import IMAGE_EXTENSIONS, is_image_file, list_images, read_image
from visiontune.data.manifest import Entry, Manifest
from visiontune.data.samples import DatasetWarning
from visiontune.data.sources import load_classification
from visiontune.data.splits import stratified_split
from visiontune.data.versions import apply_fixes, diff, snapshot

__all__ = [
    "IMAGE_EXTENSIONS",
    "SPLIT_NAMES",
    "DatasetWarning",
    "Entry",
    "ImageDataset",
    "Manifest",
    "Splits",
    "apply_fixes",
    "diff",
    "is_image_file",
    "list_images",
    "load_classification",
    "read_image",
    "snapshot",
    "stratified_split",
]
