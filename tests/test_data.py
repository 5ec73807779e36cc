"""Finding, reading and splitting datasets."""

from __future__ import annotations

import gzip

import numpy as np
import pytest

from distill.data import load_raw, make_splits, read_idx
from distill.data import sources
from distill.errors import DataError
from tests.conftest import synthetic_images, write_dataset, write_idx


def test_idx_round_trip_gzip_and_raw(tmp_path):
    images, labels = synthetic_images(5, seed=0)
    write_idx(tmp_path / "a", images, compress=True)
    write_idx(tmp_path / "b", labels, compress=False)
    assert np.array_equal(read_idx(str(tmp_path / "a.gz")), images)
    assert np.array_equal(read_idx(str(tmp_path / "b")), labels)


def test_truncated_idx_names_the_file(tmp_path):
    images, _ = synthetic_images(5, seed=0)
    write_idx(tmp_path / "a", images, compress=False)
    data = (tmp_path / "a").read_bytes()
    (tmp_path / "a").write_bytes(data[:-10])
    with pytest.raises(DataError, match=r"a: IDX header promises 3920 values .* truncated"):
        read_idx(str(tmp_path / "a"))


def test_not_idx(tmp_path):
    (tmp_path / "x.gz").write_bytes(gzip.compress(b"\x01\x02hello"))
    with pytest.raises(DataError, match="not an IDX file"):
        read_idx(str(tmp_path / "x.gz"))


def test_explicit_path_wins_and_files_get_checksums(tiny_data):
    raw = load_raw("mnist", str(tiny_data))
    assert raw.x_train.shape == (300, 28, 28) and raw.y_test.shape == (100,)
    assert len(raw.files) == 4 and all(len(digest) == 64 for _, digest in raw.files)


def test_search_order_env_then_system_then_keras_cache(tmp_path, monkeypatch):
    env_dir, system_dir, keras_home = tmp_path / "env", tmp_path / "system", tmp_path / "keras"
    monkeypatch.setattr(sources, "SYSTEM_DATA_DIR", str(system_dir))
    monkeypatch.setenv("KERAS_HOME", str(keras_home))
    monkeypatch.setenv("DISTILL_DATA_DIR", str(env_dir))

    def no_download(info):
        raise ConnectionError("offline")

    write_dataset(keras_home / "datasets" / "fashion-mnist", n_train=10, n_test=5)
    assert load_raw("fashion_mnist", download=no_download).source.startswith(str(keras_home))
    write_dataset(system_dir / "fashion-mnist", n_train=11, n_test=5)
    assert len(load_raw("fashion_mnist", download=no_download).x_train) == 11
    write_dataset(env_dir / "fashion_mnist", n_train=12, n_test=5)
    assert len(load_raw("fashion_mnist", download=no_download).x_train) == 12


def test_npz_in_keras_format(tmp_path):
    x, y = synthetic_images(20, seed=0)
    np.savez(tmp_path / "mnist.npz", x_train=x, y_train=y, x_test=x[:5], y_test=y[:5])
    raw = load_raw("mnist", str(tmp_path))
    assert raw.source.endswith("mnist.npz (npz)") and len(raw.x_test) == 5


def test_nothing_found_lists_where_it_looked(tmp_path, monkeypatch):
    monkeypatch.setattr(sources, "SYSTEM_DATA_DIR", str(tmp_path / "system"))
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras"))
    monkeypatch.setenv("DISTILL_DATA_DIR", str(tmp_path / "env"))

    def no_download(info):
        raise ConnectionError("no network")

    with pytest.raises(DataError) as caught:
        load_raw("mnist", download=no_download)
    message = str(caught.value)
    assert "no network" in message and str(tmp_path / "env" / "mnist") in message
    assert str(tmp_path / "system" / "mnist") in message and "DISTILL_DATA_DIR" in message


def test_explicit_path_without_files(tmp_path):
    with pytest.raises(DataError, match="no mnist files there"):
        load_raw("mnist", str(tmp_path))


def test_splits_are_disjoint_seeded_and_preprocessed(tiny_data):
    raw = load_raw("mnist", str(tiny_data))
    splits = make_splits(raw, seed=5, validation_split=0.2, scale=True, flatten=True)
    assert splits.x_train.shape == (240, 28, 28) and splits.x_val.shape == (60, 28, 28)
    assert splits.x_train.dtype == np.uint8  # stored compactly; preprocessed per batch
    inputs = np.asarray(splits.preprocess(splits.x_train[:4]))
    assert inputs.shape == (4, 784) and inputs.dtype == np.float32
    assert np.allclose(inputs, splits.x_train[:4].reshape(4, 784) / 255.0)
    assert splits.input_shape == (784,)
    again = make_splits(raw, seed=5, validation_split=0.2, scale=True, flatten=True)
    assert np.array_equal(splits.x_val, again.x_val)
    other = make_splits(raw, seed=6, validation_split=0.2, scale=True, flatten=True)
    assert not np.array_equal(splits.x_val, other.x_val)
    rows = {row.tobytes() for row in splits.x_train}
    assert not any(row.tobytes() in rows for row in splits.x_val)


def test_validation_count_limit_and_shape(tiny_data):
    raw = load_raw("mnist", str(tiny_data))
    splits = make_splits(raw, seed=0, validation_split=50, scale=False, flatten=False,
                         limit_train=200, limit_test=30)
    assert splits.sizes() == {"train": 150, "validation": 50, "test": 30}
    assert splits.input_shape == (28, 28, 1)
    assert np.asarray(splits.preprocess(splits.x_train[:2])).max() > 1  # scale: false
    none = make_splits(raw, seed=0, validation_split=0, scale=True, flatten=True)
    assert none.x_val is None and none.sizes()["validation"] == 0
    with pytest.raises(DataError, match="leaving none to train on"):
        make_splits(raw, seed=0, validation_split=300, scale=True, flatten=True)


def test_real_mnist_is_the_real_thing(real_mnist):
    raw = load_raw("mnist", str(real_mnist))
    assert raw.x_train.shape == (60000, 28, 28) and raw.x_test.shape == (10000, 28, 28)
    assert list(raw.y_train[:10]) == [5, 0, 4, 1, 9, 2, 1, 3, 1, 4]
    assert list(raw.y_test[:10]) == [7, 2, 1, 0, 4, 1, 4, 9, 5, 9]
    assert raw.x_train.mean() / 255 == pytest.approx(0.1307, abs=1e-4)
    assert list(np.bincount(raw.y_train)) == [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265,
                                              5851, 5949]
