"""Data layer: files in, one prepared :class:`~data.dataset.Dataset` out, plus seeded splits."""

from data.dataset import Dataset, SyntheticTruth
from data.errors import DataError, DownloadError, ReclensError
from data.loaders import load

__all__ = ["Dataset", "SyntheticTruth", "DataError", "DownloadError", "ReclensError", "load"]
