"""Datasets: find and read them (`sources`), split and preprocess them (`prepare`)."""

from distill.data.prepare import Splits, input_shape, make_splits
from distill.data.sources import DATASETS, DatasetInfo, RawDataset, load_raw, read_idx

__all__ = ["DATASETS", "DatasetInfo", "RawDataset", "Splits", "input_shape", "load_raw",
           "make_splits", "read_idx"]
