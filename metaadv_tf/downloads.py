"""Files downloaded once into a local cache and checked against their sha256.

``fetch(name, sha256, base_url, cache_dir)`` returns the cached copy of ``base_url + name``,
downloading it first (with ``keras.utils.get_file``) when the cache does not hold it. Example::

    path = fetch("cnn_mat.weights.h5", card.sha256, "https://example.org/zoo/", "/home/me/.keras/metaadv_tf")

The cache is keyed by content: a file lives at ``<cache_dir>/<sha256[:16]>/<name>``, so a file
republished under the same name never meets its old copy. A download lands there only once it is
complete and hashes to ``sha256`` (it is staged beside the cache, then renamed): a truncated or
tampered download raises ValueError and leaves nothing behind. A cached file that no longer hashes
to ``sha256`` (modified or corrupted on disk) is removed and refused the same way, so the next
call downloads it afresh.
"""
from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
import urllib.parse

SHA256_PREFIX_LENGTH = 16  # hex digits of the sha256 naming a file's cache folder


def sha256_file(path: str) -> str:
    """The hex sha256 of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def cached_path(name: str, sha256: str, cache_dir: str) -> str:
    """Where ``fetch`` keeps file ``name`` with content ``sha256``."""
    return os.path.join(os.path.abspath(cache_dir), sha256[:SHA256_PREFIX_LENGTH], name)


def fetch(name: str, sha256: str, base_url: str, cache_dir: str) -> str:
    """The path of a checked copy of ``base_url + name`` in ``cache_dir``; downloads it if needed.

    Raises ValueError when the cached copy or the download does not hash to ``sha256`` (the file is
    removed), ConnectionError when the server is unreachable, and OSError when it does not serve
    the file.
    """
    path = cached_path(name, sha256, cache_dir)
    if os.path.isfile(path):
        _check_sha256(path, sha256, f"Cached file {path}", "It was removed from the cache and not used; load"
                      " again to download it afresh.")
        return path
    url = urllib.parse.urljoin(base_url if base_url.endswith("/") else base_url + "/", name)
    _check_reachable(url)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    staging = tempfile.mkdtemp(dir=os.path.dirname(path), prefix=".download-")
    try:
        downloaded = _download(url, name, staging)
        _check_sha256(downloaded, sha256, f"Download of {url} (to {path})",
                      "Nothing was cached: the server holds a truncated or different file.")
        os.replace(downloaded, path)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return path


def _download(url: str, name: str, directory: str) -> str:
    """Downloads ``url`` into ``directory`` with ``keras.utils.get_file``; returns the file's path."""
    import keras

    try:
        # no file_hash: _check_sha256 checks it, with a message that names the file and the remedy
        return keras.utils.get_file(fname=name, origin=url, cache_dir=directory, cache_subdir="")
    except Exception as error:  # noqa: BLE001 (Keras raises a bare Exception for HTTP and URL errors)
        raise OSError(f"Could not download {url}: {error}") from None


def _check_sha256(path: str, sha256: str, what: str, remedy: str) -> None:
    """Removes ``path`` and raises ValueError unless its sha256 is ``sha256``."""
    actual = sha256_file(path)
    if actual != sha256:
        size = os.path.getsize(path)
        os.remove(path)
        raise ValueError(
            f"{what} is corrupted, truncated or tampered with ({size} bytes): its sha256 is {actual},"
            f" expected {sha256}. {remedy}"
        )


def _check_reachable(url: str) -> None:
    """Raises ConnectionError at once when ``url``'s host does not accept connections (offline,
    wrong address, server down), instead of waiting for a download that cannot start."""
    from metaadv_tf.data import network_available

    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("http", "https"):
        raise ValueError(f"Download URLs must be http or https. Received: {url!r}")
    port = parts.port or (443 if parts.scheme == "https" else 80)
    if not network_available(parts.hostname or "", port):
        raise ConnectionError(f"Could not download {url}: {parts.hostname}:{port} is unreachable")
