"""Tests for metaadv_tf.data. No test touches the network: the connectivity probe is patched.

Tests marked by ``needs_fashion_mnist`` read the real Fashion-MNIST from the default data dir
(``$METAADV_DATA_DIR`` or ``~/tensorflow_datasets``); the set-up script prepares it, and if it is
missing they prepare it from the Debian package (about 15-40 s, once).
"""
from __future__ import annotations

import gzip
import hashlib
import os
import re
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Iterable

import numpy as np
import pytest
import tensorflow_datasets as tfds

from metaadv_tf import data

REAL_PROBE = data.network_available


def _fashion_mnist_available() -> bool:
    prepared = tfds.builder("fashion_mnist", data_dir=data.default_data_dir()).is_prepared()
    return prepared or data.debian_fashion_mnist_available()


needs_fashion_mnist = pytest.mark.skipif(
    not _fashion_mnist_available(),
    reason="Fashion-MNIST is neither prepared nor installed (dataset-fashion-mnist)",
)
needs_debian = pytest.mark.skipif(
    not data.debian_fashion_mnist_available(), reason="needs Debian package dataset-fashion-mnist"
)


@pytest.fixture(autouse=True)
def offline(monkeypatch: pytest.MonkeyPatch) -> list[tuple]:
    """Makes the connectivity probe answer "offline"; returns the list of its calls."""
    calls: list[tuple] = []

    def probe(*args: object, **kwargs: object) -> bool:
        calls.append(args)
        return False

    monkeypatch.setattr(data, "network_available", probe)
    return calls


def _labels(dataset: Iterable) -> np.ndarray:
    """All labels of a batched dataset, in order."""
    return np.concatenate([labels.numpy() for _, labels in dataset])


def _sorted_rows(images: np.ndarray) -> np.ndarray:
    """The distinct images of a batch, flattened and sorted: compares batches as sets."""
    return np.unique(images.reshape(len(images), -1), axis=0)


def _fashion_test(**kwargs: object):
    """``load`` on Fashion-MNIST's test split."""
    return data.load("fashion_mnist", "test", **kwargs)


# --- Debian files -> TFDS's registered checksums ------------------------------------------------


@needs_debian
def test_restored_gzip_headers_reproduce_tfds_checksums(tmp_path: Path) -> None:
    digests = data.write_fashion_mnist_manual_dir(tmp_path)
    url_infos = tfds.builder_cls("fashion_mnist").url_infos
    assert len(url_infos) == 4
    for info in url_infos.values():
        written = (tmp_path / info.filename).read_bytes()
        assert hashlib.sha256(written).hexdigest() == info.checksum == digests[info.filename]
        assert len(written) == info.size
        debian = (data.DEBIAN_FASHION_MNIST_DIR / info.filename).read_bytes()
        assert written.endswith(debian[10:])  # same compressed payload
    labels = tmp_path / "t10k-labels-idx1-ubyte.gz"
    assert labels.read_bytes()[10:33] == b"t10k-labels-idx1-ubyte\0"  # FNAME
    with gzip.open(labels) as stream:
        assert stream.read()[:8] == bytes.fromhex("00000801 00002710")  # idx1 magic, 10000 labels
        assert stream.mtime == data.FASHION_MNIST_MTIMES["t10k"]


def test_restore_gzip_header_rejects_other_input() -> None:
    with pytest.raises(ValueError, match="no optional header fields"):
        data.restore_gzip_header(gzip.compress(b"x", mtime=0)[:3] + b"\x08" + bytes(6), "x", 0)
    with pytest.raises(ValueError, match="gzip"):
        data.restore_gzip_header(b"not a gzip file", "x", 0)


# --- Real Fashion-MNIST, offline ----------------------------------------------------------------


@needs_fashion_mnist
def test_fashion_mnist_loads_offline(offline: list[tuple]) -> None:
    dataset = _fashion_test(batch_size=1000)
    batches = list(dataset)
    assert len(batches) == 10 and not offline
    images = np.concatenate([images.numpy() for images, _ in batches])
    labels = np.concatenate([labels.numpy() for _, labels in batches])
    assert images.shape == (10000, 28, 28, 1) and images.dtype == np.float32
    assert labels.shape == (10000,) and labels.dtype == np.int32
    assert images.min() == 0.0 and images.max() == 1.0
    assert set(np.unique(labels)) == set(range(10))
    assert np.bincount(labels).tolist() == [1000] * 10


@needs_fashion_mnist
def test_batch_sizes_and_drop_remainder() -> None:
    kwargs = dict(split="train", batch_size=300, num_examples=1000)
    sizes = [len(labels) for _, labels in data.load("fashion_mnist", **kwargs)]
    assert sizes == [300, 300, 300, 100]
    dropped = data.load("fashion_mnist", drop_remainder=True, **kwargs)
    assert [len(labels) for _, labels in dropped] == [300, 300, 300]
    assert dropped.element_spec[0].shape.as_list() == [300, 28, 28, 1]


@needs_fashion_mnist
def test_order_depends_only_on_seed_and_epoch() -> None:
    def order(**kwargs: object) -> np.ndarray:
        return _labels(_fashion_test(batch_size=256, num_examples=2000, **kwargs))

    first = order(seed=3, epoch=5)
    np.testing.assert_array_equal(first, order(seed=3, epoch=5))
    assert (first != order(seed=3, epoch=6)).mean() > 0.5
    assert (first != order(seed=4, epoch=5)).mean() > 0.5
    unshuffled = order(shuffle=False)
    assert (first != unshuffled).mean() > 0.5
    np.testing.assert_array_equal(np.sort(first), np.sort(unshuffled))


@needs_fashion_mnist
def test_num_examples_takes_the_first_examples_before_shuffling() -> None:
    images, labels = data.load_arrays("fashion_mnist", "test", num_examples=100)
    assert images.shape == (100, 28, 28, 1) and images.dtype == np.float32
    assert labels.shape == (100,) and labels.dtype == np.int32
    first_50 = data.load_arrays("fashion_mnist", "test", num_examples=50)
    np.testing.assert_array_equal(first_50[0], images[:50])
    np.testing.assert_array_equal(first_50[1], labels[:50])
    (shuffled, _), = list(_fashion_test(batch_size=100, num_examples=100, seed=7))
    np.testing.assert_array_equal(_sorted_rows(shuffled.numpy()), _sorted_rows(images))
    unshuffled = next(iter(_fashion_test(batch_size=100, num_examples=100, shuffle=False)))
    np.testing.assert_array_equal(unshuffled[0].numpy(), images)


@needs_fashion_mnist
def test_info_matches_prepared_dataset() -> None:
    data.prepare("fashion_mnist")
    builder = tfds.builder("fashion_mnist", data_dir=data.default_data_dir())
    info = data.get_info("fashion_mnist")
    assert {name: split.num_examples for name, split in builder.info.splits.items()} == info.splits
    assert builder.info.features["image"].shape == info.image_shape
    assert builder.info.features["label"].num_classes == info.num_classes


# --- Other datasets, mocked by TFDS -------------------------------------------------------------


@pytest.mark.parametrize("name", ["cifar10", "mnist"])
def test_mocked_datasets_load(name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # "Online", so the builder's download_and_prepare runs; mock_data makes it a no-op.
    monkeypatch.setattr(data, "network_available", lambda *args, **kwargs: True)
    shape = data.get_info(name).image_shape
    with tfds.testing.mock_data(num_examples=20):
        batches = list(data.load(name, "train", batch_size=8, data_dir=str(tmp_path)))
        images, labels = data.load_arrays(name, data_dir=str(tmp_path))
    assert [tuple(batch.shape) for batch, _ in batches] == [(8, *shape), (8, *shape), (4, *shape)]
    assert all(batch_labels.dtype == np.int32 for _, batch_labels in batches)
    assert images.shape == (20, *shape) and images.dtype == np.float32
    assert 0.0 <= images.min() and images.max() <= 1.0 and images.max() > 0.5
    assert labels.dtype == np.int32 and 0 <= labels.min() and labels.max() < 10


def test_registry() -> None:
    assert data.list_datasets() == ["cifar10", "fashion_mnist", "mnist"]
    cifar = data.get_info("cifar10")
    assert (cifar.image_shape, cifar.num_classes) == ((32, 32, 3), 10)
    assert cifar.splits == {"train": 50000, "test": 10000}


# --- Errors -------------------------------------------------------------------------------------


def test_unknown_dataset() -> None:
    with pytest.raises(ValueError, match=r"Unknown dataset 'fashion-mnist'\. Did you mean 'fas"):
        data.get_info("fashion-mnist")
    with pytest.raises(ValueError, match=r"Expected one of: cifar10, fashion_mnist, mnist"):
        data.load("imagenet")


def test_unknown_split() -> None:
    with pytest.raises(ValueError, match=r"Unknown fashion_mnist split 'valid'\..*: train, test\."):
        data.load("fashion_mnist", "valid")
    with pytest.raises(ValueError, match=r"Unknown cifar10 split 'val'"):
        data.load_arrays("cifar10", "val")


def test_bad_sizes() -> None:
    with pytest.raises(ValueError, match=r"batch_size=64 is larger than the 50 examples selected"):
        data.load("fashion_mnist", "test", batch_size=64, num_examples=50)
    with pytest.raises(ValueError, match=r"batch_size=20000 is larger than the 10000 examples"):
        data.load("mnist", "test", batch_size=20000)
    with pytest.raises(ValueError, match=r"num_examples=60001 is more than the 60000 examples"):
        data.load_arrays("mnist", "train", num_examples=60001)
    with pytest.raises(ValueError, match=r"batch_size must be an integer >= 1"):
        data.load("mnist", batch_size=0)


@pytest.mark.parametrize(
    ("name", "host", "instruction"),
    [
        ("fashion_mnist", "fashion-mnist.s3-website.eu-central-1.amazonaws.com",
         r"apt-get install -y dataset-fashion-mnist.*scripts/prepare_data\.py"),
        ("cifar10", "www.cs.toronto.edu", r"with internet access.*scripts/prepare_data\.py"),
    ],
)
def test_missing_data_offline_fails_fast(
    name: str, host: str, instruction: str, tmp_path: Path, offline: list[tuple],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(data, "debian_fashion_mnist_available", lambda: False)
    start = time.monotonic()
    message = rf"not prepared in {re.escape(str(tmp_path))}.*unreachable.*{instruction}"
    with pytest.raises(RuntimeError, match=message):
        data.load(name, "test", data_dir=str(tmp_path))
    assert time.monotonic() - start < 10
    assert offline == [(host, 80 if name == "fashion_mnist" else 443)]
    assert not (tmp_path / name).exists()


def test_network_probe_on_loopback() -> None:
    with socket.create_server(("127.0.0.1", 0)) as server:
        port = server.getsockname()[1]
        assert REAL_PROBE("127.0.0.1", port, timeout=2.0)
    start = time.monotonic()
    assert not REAL_PROBE("127.0.0.1", port, timeout=2.0)
    assert time.monotonic() - start < 3


def test_default_data_dir(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv(data.DATA_DIR_ENV, str(tmp_path))
    assert data.default_data_dir() == str(tmp_path)
    monkeypatch.delenv(data.DATA_DIR_ENV)
    assert data.default_data_dir() == os.path.expanduser("~/tensorflow_datasets")


def test_import_does_not_load_tfds() -> None:
    code = "import sys, metaadv_tf.data; assert 'tensorflow_datasets' not in sys.modules"
    root = str(Path(data.__file__).parents[1])
    env = {**os.environ, "PYTHONPATH": root, "TF_CPP_MIN_LOG_LEVEL": "2"}
    subprocess.run([sys.executable, "-c", code], check=True, env=env, timeout=120)
