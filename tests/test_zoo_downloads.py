"""Zoo weights from anywhere: downloaded from a zoo served on 127.0.0.1, cached, checked.

Each test gets a zoo directory holding only ``NAME``'s card (so the checkout's ``zoo/`` is not
searched), an empty cache, and a server over a copy of the checkout's weights file.
"""
from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Callable

import numpy as np
import pytest

from metaadv_tf import downloads, zoo
from helpers import http_server  # noqa: I100  (tests/ is on sys.path)

NAME = "cnn_mat_anchored"


@pytest.fixture
def card(tmp_path, monkeypatch) -> zoo.ModelCard:
    """``NAME``'s card alone in ``$METAADV_ZOO_DIR``, and an empty cache in ``$METAADV_CACHE``."""
    cards = tmp_path / "cards"
    cards.mkdir()
    shutil.copy(Path(zoo.PACKAGE_CARDS_DIR) / f"{NAME}.json", cards)
    monkeypatch.setenv(zoo.ZOO_DIR_ENV, str(cards))
    monkeypatch.setenv(zoo.CACHE_ENV, str(tmp_path / "cache"))
    return zoo.get_card(NAME)


def served_zoo(tmp_path: Path, card: zoo.ModelCard, damage: Callable[[Path], None] | None = None) -> Path:
    """A directory to serve, holding ``card``'s weights file (damaged by ``damage``)."""
    directory = tmp_path / "served"
    directory.mkdir(exist_ok=True)
    path = Path(shutil.copy(Path(zoo.CHECKOUT_ZOO_DIR) / card.weights, directory))
    if damage:
        damage(path)
    return directory


def cached_file(card: zoo.ModelCard) -> Path:
    return Path(downloads.cached_path(card.weights, card.sha256, zoo.cache_dir()))


def cache_files() -> list[str]:
    return sorted(str(Path(root, name)) for root, _, names in os.walk(zoo.cache_dir()) for name in names)


def flip_a_bit(path: Path) -> None:
    content = bytearray(path.read_bytes())
    content[len(content) // 2] ^= 0x01
    path.write_bytes(bytes(content))


def truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def assert_reference_weights(model, card: zoo.ModelCard) -> None:
    reference = card.build()
    reference.load_weights(Path(zoo.CHECKOUT_ZOO_DIR) / card.weights)
    for expected, actual in zip(reference.get_weights(), model.get_weights()):
        np.testing.assert_array_equal(expected, actual)


def test_downloads_once_then_loads_from_the_cache_with_the_server_down(card, tmp_path, monkeypatch):
    with http_server(served_zoo(tmp_path, card)) as url:
        monkeypatch.setenv(zoo.ZOO_URL_ENV, url)
        assert_reference_weights(zoo.load_model(NAME), card)
    assert cache_files() == [str(cached_file(card))]  # nothing else: no staging leftovers
    assert downloads.sha256_file(str(cached_file(card))) == card.sha256
    model = zoo.load_model(NAME)  # the server is down now
    assert_reference_weights(model, card)
    assert zoo.verify_golden(model, card) <= card.golden["atol"]


@pytest.mark.parametrize("damage", [flip_a_bit, truncate], ids=["tampered", "truncated"])
def test_damaged_download_is_refused_and_not_cached(card, tmp_path, monkeypatch, damage):
    with http_server(served_zoo(tmp_path, card, damage)) as url:
        monkeypatch.setenv(zoo.ZOO_URL_ENV, url)
        with pytest.raises(ValueError) as raised:
            zoo.load_model(NAME)
    message = str(raised.value)
    assert message.startswith(f"Download of {url}{card.weights} (to {cached_file(card)}) is corrupted,")
    assert f"expected {card.sha256}. Nothing was cached" in message
    assert cache_files() == []


def test_tampered_cached_file_is_refused_removed_and_downloaded_again(card, tmp_path, monkeypatch):
    cached = cached_file(card)
    cached.parent.mkdir(parents=True)
    shutil.copy(Path(zoo.CHECKOUT_ZOO_DIR) / card.weights, cached)
    flip_a_bit(cached)
    with pytest.raises(ValueError, match=rf"^Cached file {cached} is corrupted, truncated or tampered with"
                                         r" .* It was removed from the cache and not used"):
        zoo.load_model(NAME)
    assert not cached.exists()
    with http_server(served_zoo(tmp_path, card)) as url:
        monkeypatch.setenv(zoo.ZOO_URL_ENV, url)
        assert_reference_weights(zoo.load_model(NAME), card)
    assert downloads.sha256_file(str(cached)) == card.sha256


def test_weights_found_nowhere_name_every_place_looked(card, tmp_path):
    with pytest.raises(FileNotFoundError) as raised:
        zoo.load_model(NAME)  # conftest points $METAADV_ZOO_URL at a port nothing listens on
    message = str(raised.value)
    assert f"{tmp_path / 'cards' / card.weights} does not exist" in message
    assert f"the cache has no {cached_file(card)}" in message
    assert f"Could not download {zoo.zoo_url()}{card.weights}: 127.0.0.1:9 is unreachable" in message
    assert "Set $METAADV_ZOO_URL" in message and cache_files() == []


def test_server_without_the_file_is_named(card, tmp_path, monkeypatch):
    (tmp_path / "empty").mkdir()
    with http_server(tmp_path / "empty") as url:
        monkeypatch.setenv(zoo.ZOO_URL_ENV, url)
        with pytest.raises(FileNotFoundError, match=rf"Could not download {url}{card.weights}: .*404"):
            zoo.load_model(NAME)
    assert cache_files() == []
