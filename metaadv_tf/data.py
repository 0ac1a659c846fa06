"""Image classification datasets through tensorflow-datasets, as batched ``tf.data`` pipelines.

``load("fashion_mnist")`` yields ``(images, labels)``: float32 ``[b, H, W, C]`` in [0, 1] and int32
``[b]``. A split is read once into memory as uint8; the order of an epoch is a pure function of
``(seed, epoch)``, so a trainer can rebuild epoch ``e`` exactly when it resumes.

Data live in ``$METAADV_DATA_DIR``, else ``~/tensorflow_datasets``. A dataset not prepared there is
downloaded by TFDS; Fashion-MNIST is prepared offline from the Debian package
``dataset-fashion-mnist`` when it is installed. Offline with neither, loading fails at once with
instructions instead of letting TFDS retry the download for minutes.
"""
from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import gzip
import hashlib
import os
import socket
import struct
import tempfile
import threading
import urllib.parse
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import tensorflow as tf

from metaadv_tf.registry import Registry, check_choice
from metaadv_tf.validation import check_positive_int

DATA_DIR_ENV = "METAADV_DATA_DIR"
DEBIAN_FASHION_MNIST_DIR = Path("/usr/share/datasets/fashion-mnist")
# Gzip MTIME of the upstream Fashion-MNIST files, by file prefix; Debian's copies drop it.
FASHION_MNIST_MTIMES = {"train": 1504176606, "t10k": 1504176627}
PROBE_TIMEOUT_SECONDS = 3.0
_READ_CHUNK = 8192  # examples per read batch while loading a split into memory


@dataclasses.dataclass(frozen=True)
class DatasetInfo:
    """What a model needs to know about a dataset; ``splits`` maps split name -> size."""

    name: str
    tfds_name: str
    image_shape: tuple[int, int, int]
    num_classes: int
    splits: dict[str, int]


DATASETS: Registry[DatasetInfo] = Registry("dataset")
DATASETS.register(
    "fashion_mnist",
    DatasetInfo("fashion_mnist", "fashion_mnist", (28, 28, 1), 10, {"train": 60000, "test": 10000}),
)
DATASETS.register(
    "mnist", DatasetInfo("mnist", "mnist", (28, 28, 1), 10, {"train": 60000, "test": 10000})
)
DATASETS.register(
    "cifar10", DatasetInfo("cifar10", "cifar10", (32, 32, 3), 10, {"train": 50000, "test": 10000})
)


def list_datasets() -> list[str]:
    """Names accepted by ``load``, ``load_arrays``, ``get_info`` and ``prepare``."""
    return DATASETS.names()


def get_info(name: str) -> DatasetInfo:
    """The ``DatasetInfo`` of ``name``; raises ValueError listing the choices if unknown."""
    return DATASETS.get(name)


def default_data_dir() -> str:
    """``$METAADV_DATA_DIR`` if set, else TFDS's default ``~/tensorflow_datasets``."""
    return os.environ.get(DATA_DIR_ENV) or os.path.expanduser("~/tensorflow_datasets")


def load(
    name: str,
    split: str = "train",
    *,
    batch_size: int = 128,
    shuffle: bool = True,
    seed: int = 0,
    epoch: int = 0,
    num_examples: int | None = None,
    drop_remainder: bool = False,
    data_dir: str | None = None,
    with_indices: bool = False,
) -> tf.data.Dataset:
    """One epoch of ``name``/``split`` as batches of (float32 images in [0, 1], int32 labels).

    ``num_examples`` keeps the first N examples of the split (before shuffling). With
    ``shuffle``, the order depends only on ``(seed, epoch)``: pass the epoch number to get a new
    order each epoch and the same order again on resume. ``with_indices`` adds a third element,
    the examples' int32 indices in the split.
    """
    info = get_info(name)
    size = _subset_size(info, split, num_examples)
    batch_size = check_positive_int("batch_size", batch_size)
    if batch_size > size:
        raise ValueError(
            f"batch_size={batch_size} is larger than the {size} examples selected from {name}"
            f" {split!r}. Use a smaller batch_size or more examples."
        )
    images, labels = _read_split(info, split, num_examples, data_dir)

    def gather(indices: tf.Tensor) -> tuple[tf.Tensor, ...]:
        batch = tf.cast(tf.gather(images, indices), tf.float32) / 255.0
        labelled = (batch, tf.cast(tf.gather(labels, indices), tf.int32))
        return (*labelled, tf.cast(indices, tf.int32)) if with_indices else labelled

    return (
        tf.data.Dataset.from_tensor_slices(_epoch_order(tf.shape(labels)[0], shuffle, seed, epoch))
        .batch(batch_size, drop_remainder=drop_remainder)
        .map(gather, num_parallel_calls=tf.data.AUTOTUNE)
        .prefetch(tf.data.AUTOTUNE)
    )


def _epoch_order(count: tf.Tensor, shuffle: bool, seed: int, epoch: int) -> tf.Tensor:
    """Example indices for one epoch: a permutation that depends only on (seed, epoch), or 0..N-1.

    Stateless, so the order does not depend on TensorFlow's global seed or on earlier calls.
    """
    indices = tf.range(count)
    if not shuffle:
        return indices
    return tf.random.experimental.stateless_shuffle(
        indices, seed=tf.constant([seed, epoch], tf.int64)
    )


def load_arrays(
    name: str, split: str = "test", num_examples: int | None = None, data_dir: str | None = None,
    *, offset: int = 0,
) -> tuple[np.ndarray, np.ndarray]:
    """``num_examples`` of a split from index ``offset`` on (TFDS's stored order, no shuffling).

    Returns float32 images [N, H, W, C] in [0, 1] and int32 labels [N].
    """
    info = get_info(name)
    _subset_size(info, split, num_examples, offset)
    images, labels = _read_split(info, split, num_examples, data_dir, offset)
    return images.numpy().astype(np.float32) / 255.0, labels.numpy().astype(np.int32)


def prepare(name: str, data_dir: str | None = None) -> str:
    """Makes sure ``name`` is prepared in ``data_dir`` (for offline use); returns ``data_dir``."""
    data_dir = data_dir or default_data_dir()
    _prepared_builder(get_info(name), data_dir)
    return data_dir


def _subset_size(info: DatasetInfo, split: str, num_examples: int | None, offset: int = 0) -> int:
    """Checks ``split``, ``num_examples`` and ``offset``; returns how many examples they select."""
    check_choice(f"{info.name} split", split, list(info.splits))
    offset = check_positive_int("offset", offset, allow_zero=True)
    available = info.splits[split] - offset
    if available < 1:
        raise ValueError(f"offset={offset} leaves no example of {info.name} {split!r}.")
    if num_examples is None:
        return available
    num_examples = check_positive_int("num_examples", num_examples)
    if num_examples > available:
        raise ValueError(
            f"num_examples={num_examples} is more than the {available} examples of"
            f" {info.name} {split!r}" + (f" from offset {offset}." if offset else ".")
        )
    return num_examples


def _read_split(
    info: DatasetInfo, split: str, num_examples: int | None, data_dir: str | None, offset: int = 0
) -> tuple[tf.Tensor, tf.Tensor]:
    """``num_examples`` (default all) of a split from index ``offset`` on, as in-memory uint8
    images and labels."""
    builder = _prepared_builder(info, data_dir or default_data_dir())
    end = "" if num_examples is None else offset + num_examples
    selection = split if (num_examples, offset) == (None, 0) else f"{split}[{offset or ''}:{end}]"
    examples = builder.as_dataset(split=selection, as_supervised=True, shuffle_files=False)
    chunks = list(examples.batch(_READ_CHUNK))
    return tf.concat([c[0] for c in chunks], 0), tf.concat([c[1] for c in chunks], 0)


def _prepared_builder(info: DatasetInfo, data_dir: str) -> Any:
    """The TFDS builder of ``info`` in ``data_dir``, prepared first if needed (see module doc)."""
    import tensorflow_datasets as tfds

    builder = tfds.builder(info.tfds_name, data_dir=data_dir)
    if builder.is_prepared():
        return builder
    # One process prepares while the others wait, then read what it wrote.
    with _file_lock(Path(data_dir, f".{info.tfds_name}.metaadv.lock")):
        builder = tfds.builder(info.tfds_name, data_dir=data_dir)
        if not builder.is_prepared():
            _download_and_prepare(builder, info, data_dir)
    return builder


@contextlib.contextmanager
def _file_lock(path: Path) -> Iterator[None]:
    """Holds an exclusive ``flock`` on ``path`` (created if missing) for the ``with`` block."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _download_and_prepare(builder: Any, info: DatasetInfo, data_dir: str) -> None:
    """Prepares from the Debian files (Fashion-MNIST), else downloads if the host is reachable."""
    if info.tfds_name == "fashion_mnist" and debian_fashion_mnist_available():
        _prepare_fashion_mnist_from_debian(builder)
        return
    host, port = _download_host(info)
    if not network_available(host, port):
        raise RuntimeError(_missing_data_message(info, data_dir, host))
    builder.download_and_prepare()


def debian_fashion_mnist_available() -> bool:
    """Whether the Debian package ``dataset-fashion-mnist`` has installed its four files."""
    return all((DEBIAN_FASHION_MNIST_DIR / name).is_file() for name in _fashion_mnist_files())


def _fashion_mnist_files() -> dict[str, int]:
    """The four upstream file names, each with its gzip MTIME."""
    return {
        f"{prefix}-{kind}-ubyte.gz": mtime
        for prefix, mtime in FASHION_MNIST_MTIMES.items()
        for kind in ("images-idx3", "labels-idx1")
    }


def _prepare_fashion_mnist_from_debian(builder: Any) -> None:
    """Runs the stock TFDS builder offline on the Debian files, checksum verification on."""
    import tensorflow_datasets as tfds

    with tempfile.TemporaryDirectory(prefix="metaadv_fashion_mnist_") as tmp:
        manual_dir = Path(tmp, "manual")
        write_fashion_mnist_manual_dir(manual_dir)
        builder.download_and_prepare(
            download_dir=str(Path(tmp, "downloads")),
            download_config=tfds.download.DownloadConfig(
                manual_dir=str(manual_dir), try_download_gcs=False
            ),
        )


def write_fashion_mnist_manual_dir(
    manual_dir: Path, source_dir: Path = DEBIAN_FASHION_MNIST_DIR
) -> dict[str, str]:
    """Writes the upstream Fashion-MNIST files, rebuilt from Debian's, into ``manual_dir``.

    Returns ``{file name: sha256}`` and raises RuntimeError if a file does not match the checksum
    TFDS has registered (e.g. a changed Debian package).
    """
    registered = registered_fashion_mnist_checksums()
    manual_dir.mkdir(parents=True, exist_ok=True)
    digests = {}
    for name, mtime in _fashion_mnist_files().items():
        # Upstream gzip recorded the uncompressed file name, e.g. "train-images-idx3-ubyte".
        original = (source_dir / name).read_bytes()
        data = restore_gzip_header(original, name.removesuffix(".gz"), mtime)
        digests[name] = hashlib.sha256(data).hexdigest()
        if digests[name] != registered[name]:
            raise RuntimeError(
                f"{source_dir / name} does not rebuild the file TFDS expects (sha256"
                f" {digests[name]}, expected {registered[name]})."
            )
        (manual_dir / name).write_bytes(data)
    return digests


def registered_fashion_mnist_checksums() -> dict[str, str]:
    """``{file name: sha256}`` from TFDS's checksums file for ``fashion_mnist``."""
    import tensorflow_datasets as tfds

    infos = tfds.builder_cls("fashion_mnist").url_infos
    return {info.filename: info.checksum for info in infos.values()}


def restore_gzip_header(data: bytes, original_name: str, mtime: int) -> bytes:
    """Puts FNAME and MTIME back into a gzip file's header; the compressed payload is unchanged.

    ``data`` must be a single gzip member with no optional header fields (as Debian ships it).
    """
    if len(data) < 10 or data[:3] != b"\x1f\x8b\x08" or data[3] != 0:
        raise ValueError("Expected a gzip file with no optional header fields (FLG = 0).")
    header = data[:3] + bytes([gzip.FNAME]) + struct.pack("<I", mtime) + data[8:10]
    return header + original_name.encode("latin-1") + b"\0" + data[10:]


def _download_host(info: DatasetInfo) -> tuple[str, int]:
    """Host and port TFDS downloads ``info`` from (its first registered URL)."""
    import tensorflow_datasets as tfds

    url = urllib.parse.urlsplit(next(iter(tfds.builder_cls(info.tfds_name).url_infos)))
    return url.hostname or "", url.port or (443 if url.scheme == "https" else 80)


def network_available(host: str, port: int = 443, timeout: float = PROBE_TIMEOUT_SECONDS) -> bool:
    """Whether a TCP connection to ``host:port`` opens within ``timeout`` seconds (DNS included)."""
    opened: list[bool] = []

    def connect() -> None:
        try:
            with socket.create_connection((host, port), timeout=timeout):
                opened.append(True)
        except OSError:
            opened.append(False)

    thread = threading.Thread(target=connect, daemon=True)
    thread.start()
    thread.join(timeout)
    return bool(opened and opened[0])


def _missing_data_message(info: DatasetInfo, data_dir: str, host: str) -> str:
    """How to get ``info`` when it is not prepared and its download host is unreachable."""
    script = f"python scripts/prepare_data.py --dataset {info.name} --data_dir {data_dir}"
    steps = [f"run once with internet access (TFDS downloads it), e.g. `{script}`"]
    if info.tfds_name == "fashion_mnist":
        steps.insert(
            0,
            "install the Debian package `apt-get install -y dataset-fashion-mnist` (no internet"
            f" needed afterwards), then load again or run `{script}`",
        )
    steps.append(f"or copy a prepared {data_dir}/{info.tfds_name} from another machine")
    return (
        f"Dataset {info.name!r} is not prepared in {data_dir} and its download host {host} is"
        " unreachable (offline?). To get it: " + "; ".join(steps) + f". Set ${DATA_DIR_ENV} to"
        " use another data directory."
    )
