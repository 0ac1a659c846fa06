"""SavedModel export: both signatures match Keras, bad inputs are refused, saved_model_cli runs it."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import keras
import numpy as np
import pytest
import tensorflow as tf

from metaadv_tf.export import export_saved_model
from metaadv_tf.models import SmallCNN

ROOT = Path(__file__).resolve().parents[1]
BAD_INPUT_ERRORS = (tf.errors.InvalidArgumentError, TypeError, ValueError)


@pytest.fixture(scope="module")
def model() -> keras.Model:
    keras.utils.set_random_seed(0)
    return SmallCNN(input_shape=(28, 28, 1), num_classes=10, width=4)


@pytest.fixture(scope="module")
def export_dir(model, tmp_path_factory) -> Path:
    return Path(export_saved_model(model, str(tmp_path_factory.mktemp("export") / "1")))


@pytest.fixture(scope="module")
def served(export_dir):
    return tf.saved_model.load(str(export_dir))


@pytest.fixture(scope="module")
def images() -> np.ndarray:
    return np.random.default_rng(0).integers(0, 256, size=(5, 28, 28, 1), dtype=np.uint8)


def assert_outputs_match(outputs: dict, logits: np.ndarray) -> None:
    np.testing.assert_allclose(outputs["logits"].numpy(), logits, atol=1e-5)
    np.testing.assert_allclose(outputs["probabilities"].numpy(), tf.nn.softmax(logits).numpy(), atol=1e-6)
    np.testing.assert_array_equal(outputs["classes"].numpy(), np.argmax(logits, axis=-1))


def test_both_signatures_match_keras(served, model, images):
    assert set(served.signatures) == {"serving_default", "serving_uint8"}
    floats = images.astype(np.float32) / 255.0
    logits = model(floats, training=False).numpy()
    assert_outputs_match(served.signatures["serving_default"](images=tf.constant(floats)), logits)
    assert_outputs_match(served.signatures["serving_uint8"](images=tf.constant(images)), logits)


def test_signatures_name_inputs_and_outputs(served):
    for name, dtype in (("serving_default", tf.float32), ("serving_uint8", tf.uint8)):
        signature = served.signatures[name]
        spec = signature.structured_input_signature[1]["images"]
        assert spec.dtype == dtype and spec.shape.as_list() == [None, 28, 28, 1]
        assert set(signature.structured_outputs) == {"logits", "probabilities", "classes"}


@pytest.mark.parametrize(
    "signature, batch, message",
    [
        ("serving_default", np.zeros((2, 28, 28, 1), np.uint8), "float"),
        ("serving_uint8", np.zeros((2, 28, 28, 1), np.float32), "uint8"),
        ("serving_default", np.zeros((2, 27, 28, 1), np.float32), "shape"),
        ("serving_default", np.zeros((2, 28, 28, 3), np.float32), "shape"),
        ("serving_uint8", np.zeros((28, 28, 1), np.uint8), "shape"),  # rank 3 once crashed oneDNN
        ("serving_default", np.full((2, 28, 28, 1), 1.5, np.float32), r"images must lie in \[0, 1\]"),
    ],
    ids=["uint8_to_float", "float_to_uint8", "height", "channels", "rank", "range"],
)
def test_bad_inputs_are_refused(served, signature, batch, message):
    with pytest.raises(BAD_INPUT_ERRORS, match=message):
        served.signatures[signature](images=tf.constant(batch))


def test_saved_model_cli_runs_the_export(export_dir, model, images, tmp_path):
    floats = images.astype(np.float32) / 255.0
    np.save(tmp_path / "images.npy", floats)
    cli = Path(sys.executable).parent / "saved_model_cli"
    result = subprocess.run(
        [str(cli), "run", "--dir", str(export_dir), "--tag_set", "serve", "--signature_def",
         "serving_default", "--inputs", f"images={tmp_path / 'images.npy'}",
         "--outdir", str(tmp_path / "out")],
        capture_output=True, text=True, timeout=300, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"},
    )
    assert result.returncode == 0, result.stderr
    logits = np.load(tmp_path / "out" / "logits.npy")
    np.testing.assert_allclose(logits, model(floats, training=False).numpy(), atol=1e-5)


def test_export_is_atomic_and_refuses_to_overwrite(model, export_dir, tmp_path):
    with pytest.raises(FileExistsError, match="exists"):
        export_saved_model(model, str(export_dir))
    target = tmp_path / "1"
    target.mkdir()
    (target / "stale.txt").write_text("old export")
    export_saved_model(model, str(target), overwrite=True)
    assert sorted(os.listdir(target)) == ["assets", "fingerprint.pb", "saved_model.pb", "variables"]
    assert os.listdir(tmp_path) == ["1"]  # no staging directory left behind


def test_export_script_on_a_keras_file(model, tmp_path):
    path = tmp_path / "cnn.keras"
    model.save(path)
    result = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "export.py"), f"--model={path}",
         f"--export_dir={tmp_path / 'served' / '1'}"],
        capture_output=True, text=True, timeout=300, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"},
    )
    assert result.returncode == 0, result.stderr
    assert "signatures: serving_default, serving_uint8" in result.stdout
    assert (tmp_path / "served" / "1" / "saved_model.pb").exists()
