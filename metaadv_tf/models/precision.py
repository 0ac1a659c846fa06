"""Mixed precision: build a model's layers under a Keras dtype policy, and a bfloat16 twin of a
float32 model for the attacks of a training step."""
from __future__ import annotations

import contextlib
from typing import Iterator

import keras

from metaadv_tf.registry import check_choice

# float32, or bfloat16 compute over float32 variables (logits and BatchNorm statistics stay float32)
DTYPE_POLICIES = ("float32", "mixed_bfloat16")


@contextlib.contextmanager
def dtype_policy(name: str) -> Iterator[None]:
    """Layers created inside compute in policy ``name``'s dtype; the previous global policy comes back
    after, so models built later (evaluation, publishing) stay float32 unless asked otherwise."""
    check_choice("precision", name, list(DTYPE_POLICIES))
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy(name)
    try:
        yield
    finally:
        keras.config.set_dtype_policy(previous)


def precision_twin(model: keras.Model, precision: str) -> keras.Model:
    """``model`` itself for "float32"; otherwise the same architecture computing under ``precision``,
    to be run over ``model``'s parameter values (``stateless_call``), never with its own weights.

    A training step attacks through the twin: the attacks' forward and backward passes run in
    bfloat16 while every update of the weights (MAML's inner steps included) stays float32.
    """
    if precision == "float32":
        return model
    with dtype_policy(precision):  # checks precision
        twin = type(model).from_config(model.get_config())
    shapes = [tuple(v.shape) for v in model.weights]
    if [tuple(v.shape) for v in twin.weights] != shapes:
        raise ValueError(f"The {precision} twin of {model.name!r} does not have its weights' shapes: "
                         f"{type(model).__name__} must rebuild itself from get_config().")
    return twin
