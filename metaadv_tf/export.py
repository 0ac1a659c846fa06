"""SavedModel export with named serving signatures, for TensorFlow Serving, TF Lite or ONNX.

Two signatures, both returning ``logits`` [batch, classes] float32, ``probabilities`` (softmax)
and ``classes`` [batch] int64:

- ``serving_default``: ``images`` float32 [batch, H, W, C] in [0, 1];
- ``serving_uint8``: ``images`` uint8 [batch, H, W, C] in 0-255 (divided by 255 inside).

The input signature fixes the dtype; the image shape and the float range are checked inside the
graph (a loaded signature does not enforce the shape itself, and a rank-3 batch can abort the
process inside a oneDNN convolution), so a bad request fails with InvalidArgumentError.
"""
from __future__ import annotations

import os
import shutil
import tempfile

import keras
import tensorflow as tf

SIGNATURES = ("serving_default", "serving_uint8")


def export_saved_model(model: keras.Model, export_dir: str, *, overwrite: bool = False) -> str:
    """Writes ``model`` as a SavedModel to ``export_dir`` atomically; returns ``export_dir``.

    ``model`` maps float32 images in [0, 1] to logits. Example::

        export_saved_model(load_model("cnn_mat_anchored"), "exports/cnn_mat_anchored/1")
        served = tf.saved_model.load("exports/cnn_mat_anchored/1")
        served.signatures["serving_default"](images=images)["classes"]
    """
    export_dir = os.path.abspath(export_dir)
    if os.path.exists(export_dir) and not overwrite:
        raise FileExistsError(f"{export_dir} exists; choose a new export_dir or pass overwrite=True.")
    parent = os.path.dirname(export_dir)
    os.makedirs(parent, exist_ok=True)
    staging = tempfile.mkdtemp(dir=parent, prefix=".tmp-export-")
    try:
        _archive(model).write_out(os.path.join(staging, "model"), verbose=False)
        _replace_dir(os.path.join(staging, "model"), export_dir)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return export_dir


def _archive(model: keras.Model) -> keras.export.ExportArchive:
    """An ExportArchive tracking ``model`` with the two serving endpoints."""
    height, width, channels = model.input_shape[1:]
    shape = [None, height, width, channels]

    def outputs(images: tf.Tensor) -> dict[str, tf.Tensor]:
        logits = model(tf.ensure_shape(images, shape), training=False)
        return {
            "logits": logits,
            "probabilities": tf.nn.softmax(logits),
            "classes": tf.argmax(logits, axis=-1),
        }

    def serve_float32(images: tf.Tensor) -> dict[str, tf.Tensor]:
        checks = [
            tf.debugging.assert_greater_equal(images, 0.0, message="images must lie in [0, 1]"),
            tf.debugging.assert_less_equal(
                images, 1.0, message="images must lie in [0, 1] (send 0-255 images as uint8 to serving_uint8)"
            ),
        ]
        with tf.control_dependencies(checks):
            return outputs(tf.identity(images))

    def serve_uint8(images: tf.Tensor) -> dict[str, tf.Tensor]:
        return outputs(tf.cast(images, tf.float32) / 255.0)

    archive = keras.export.ExportArchive()
    archive.track(model)
    for name, function, dtype in zip(SIGNATURES, (serve_float32, serve_uint8), (tf.float32, tf.uint8)):
        archive.add_endpoint(name, function, input_signature=[tf.TensorSpec(shape, dtype, name="images")])
    return archive


def _replace_dir(source: str, target: str) -> None:
    """Moves directory ``source`` to ``target``; an existing ``target`` is swapped out, then removed."""
    if not os.path.exists(target):
        os.rename(source, target)
        return
    old = f"{source}.old"
    os.rename(target, old)
    try:
        os.rename(source, target)
    except OSError:
        os.rename(old, target)
        raise
    shutil.rmtree(old)
