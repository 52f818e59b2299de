"""Data: the bundled MNIST subset, file loaders, lazy data sets larger than memory,
batching (in worker processes too) and augmentation."""

from convprop.data.datasets import (
    ArrayDataset,
    DataError,
    load,
    load_idx_directory,
    load_image,
    load_image_folder,
    load_mnist_5k,
    load_npz,
    read_idx,
    stratified_split,
)
from convprop.data.lazy import (
    LazyArray,
    LazyDataset,
    load_npy_directory,
    open_image_folder,
    open_npy_directory,
)
from convprop.data.loader import DataLoader
from convprop.data.transforms import (
    AUGMENTATIONS,
    Compose,
    ElasticDeformation,
    Normalize,
    RandomAffine,
    build_augmentation,
    channel_statistics,
)

__all__ = [
    "AUGMENTATIONS",
    "ArrayDataset",
    "Compose",
    "DataError",
    "DataLoader",
    "ElasticDeformation",
    "LazyArray",
    "LazyDataset",
    "Normalize",
    "RandomAffine",
    "build_augmentation",
    "channel_statistics",
    "load",
    "load_idx_directory",
    "load_image",
    "load_image_folder",
    "load_mnist_5k",
    "load_npy_directory",
    "load_npz",
    "open_image_folder",
    "open_npy_directory",
    "read_idx",
    "stratified_split",
]
