"""Shared fixtures, and ``--runslow``: tests marked ``slow`` (see pytest.ini) are skipped without it."""
from __future__ import annotations

from typing import Iterator

import keras
import numpy as np
import pytest

TRAIN_EXAMPLES = 4000
UNREACHABLE_URL = "http://127.0.0.1:9/"  # the discard port: nothing listens, connections are refused
TEST_EXAMPLES = 200


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--runslow", action="store_true", default=False, help="run slow tests")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if config.getoption("--runslow"):
        return
    skip = pytest.mark.skip(reason="slow: run with --runslow")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="session", autouse=True)
def hermetic_weights_cache(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Zoo weights missing locally never come from ~/.keras or the internet during the tests:
    an empty cache and an unreachable download URL (scripts run by the tests inherit both)."""
    from metaadv_tf import zoo

    with pytest.MonkeyPatch.context() as patch:
        patch.setenv(zoo.CACHE_ENV, str(tmp_path_factory.mktemp("weights_cache")))
        patch.setenv(zoo.ZOO_URL_ENV, UNREACHABLE_URL)
        yield


@pytest.fixture(scope="session")
def trained_cnn() -> tuple[keras.Model, np.ndarray, np.ndarray]:
    """(SmallCNN trained 1 epoch on 4000 Fashion-MNIST images, 200 test images, their labels).

    About 80 % clean accuracy: enough for attacks to have something to lower. Takes ~5 s.
    """
    from metaadv_tf.data import load_arrays
    from metaadv_tf.models import build_model

    keras.utils.set_random_seed(0)
    x_train, y_train = load_arrays("fashion_mnist", "train", TRAIN_EXAMPLES)
    x_test, y_test = load_arrays("fashion_mnist", "test", TEST_EXAMPLES)
    model = build_model("cnn", input_shape=(28, 28, 1), num_classes=10)
    model.compile(
        optimizer=keras.optimizers.Adam(1e-3),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    )
    model.fit(x_train, y_train, batch_size=64, epochs=1, verbose=0)
    return model, x_test, y_test


@pytest.fixture
def float64():
    """Builds Keras layers in float64 (for finite-difference checks), then restores float32."""
    keras.config.set_floatx("float64")
    keras.config.set_dtype_policy("float64")  # the policy is cached: floatx alone is not enough
    yield
    keras.config.set_floatx("float32")
    keras.config.set_dtype_policy("float32")
