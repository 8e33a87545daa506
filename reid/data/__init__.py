"""Re-ID data: dataset readers, the PK sampler, transforms and the MOT-to-Market converter."""

from reid.data.dataset import ImageDataset, ReIDDataset, Sample, load_image, relabel
from reid.data.readers import list_dataset_formats, load_dataset, register_reader
from reid.data.sampler import PKSampler
from reid.data.transforms import build_transforms

__all__ = [
    "ImageDataset",
    "PKSampler",
    "ReIDDataset",
    "Sample",
    "build_transforms",
    "list_dataset_formats",
    "load_dataset",
    "load_image",
    "register_reader",
    "relabel",
]
