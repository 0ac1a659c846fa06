"""What every zoo architecture shares: validated arguments, config round trips, the input stem."""
from __future__ import annotations

from typing import Any, Sequence

import keras

from metaadv_tf.models.layers import BatchNorm, Standardize
from metaadv_tf.validation import check_positive_int


class ClassifierModel(keras.Model):
    """A functional Keras model whose constructor arguments are its config (keras-hub style).

    Subclasses build their graph, call ``super().__init__(inputs=..., outputs=...)``, then
    ``store_config(**arguments)``; ``get_config``/``from_config`` then round-trip the model.
    """

    def store_config(self, **arguments: Any) -> None:
        """Records the constructor arguments returned by ``get_config``."""
        self._arguments = {
            key: list(value) if isinstance(value, tuple) else value for key, value in arguments.items()
        }

    def get_config(self) -> dict:
        return {"name": self.name, "trainable": self.trainable, **self._arguments}

    @classmethod
    def from_config(cls, config: dict, custom_objects=None):
        return cls(**config)

    @property
    def image_shape(self) -> tuple[int, int, int]:
        """(height, width, channels) of the images the model takes."""
        return tuple(self._arguments["input_shape"])


def image_input(
    input_shape: Sequence[int], mean: Sequence[float] | None, std: Sequence[float] | None
):
    """Checks the shape and returns (Input, standardized tensor); mean/std default to 0.5/0.5."""
    if len(input_shape) != 3 or any(int(d) < 1 for d in input_shape):
        raise ValueError(
            f"input_shape must be (height, width, channels) with positive sizes."
            f" Received: input_shape={tuple(input_shape)}"
        )
    channels = int(input_shape[-1])
    mean = [0.5] * channels if mean is None else mean
    std = [0.5] * channels if std is None else std
    inputs = keras.Input(shape=tuple(int(d) for d in input_shape), name="images")
    return inputs, Standardize(mean, std)(inputs)


def conv(x, filters: int, strides: int, batchnorm: bool):
    """A 3x3 'same' convolution, followed by BatchNorm when ``batchnorm``."""
    x = keras.layers.Conv2D(filters, 3, strides=strides, padding="same", use_bias=not batchnorm)(x)
    return BatchNorm()(x) if batchnorm else x


def head(x, num_classes: int, dropout: float):
    """Optional dropout, then a dense layer returning logits."""
    check_positive_int("num_classes", num_classes)
    if not 0.0 <= dropout < 1.0:
        raise ValueError(f"dropout must be in [0, 1). Received: dropout={dropout}")
    if dropout:
        x = keras.layers.Dropout(dropout)(x)
    return keras.layers.Dense(num_classes, name="logits")(x)
