"""CIFAR-style ResNet-18 (BasicBlock, [2, 2, 2, 2]) for 28x28x1 and 32x32x3 inputs."""
from __future__ import annotations

from typing import Sequence

import keras

from metaadv_tf.models.base import ClassifierModel, conv, head, image_input
from metaadv_tf.models.layers import BatchNorm


def basic_block(x, filters: int, strides: int, batchnorm: bool):
    """Two 3x3 convolutions with a (projected when the shape changes) identity shortcut."""
    shortcut = x
    y = keras.layers.ReLU()(conv(x, filters, strides, batchnorm))
    y = conv(y, filters, 1, batchnorm)
    if strides != 1 or x.shape[-1] != filters:
        shortcut = keras.layers.Conv2D(filters, 1, strides=strides, use_bias=not batchnorm)(x)
        if batchnorm:
            shortcut = BatchNorm()(shortcut)
    return keras.layers.ReLU()(keras.layers.Add()([y, shortcut]))


@keras.saving.register_keras_serializable(package="metaadv_tf")
class ResNet18(ClassifierModel):
    """ResNet-18 as in He et al. for CIFAR: a 3x3 stem, no max-pool, four stages of two blocks.

    ``width`` is the first stage's channel count (64 in the paper; tests use 4). Example::

        model = ResNet18(input_shape=(32, 32, 3), num_classes=10)
    """

    def __init__(
        self,
        input_shape: Sequence[int] = (28, 28, 1),
        num_classes: int = 10,
        width: int = 64,
        batchnorm: bool = True,
        dropout: float = 0.0,
        mean: Sequence[float] | None = None,
        std: Sequence[float] | None = None,
        **kwargs,
    ) -> None:
        inputs, x = image_input(input_shape, mean, std)
        x = keras.layers.ReLU()(conv(x, width, 1, batchnorm))
        for stage, multiplier in enumerate((1, 2, 4, 8)):
            for block in range(2):
                strides = 2 if stage > 0 and block == 0 else 1
                x = basic_block(x, width * multiplier, strides, batchnorm)
        x = keras.layers.GlobalAveragePooling2D()(x)
        outputs = head(x, num_classes, dropout)
        super().__init__(inputs=inputs, outputs=outputs, **kwargs)
        self.store_config(
            input_shape=input_shape, num_classes=num_classes, width=width, batchnorm=batchnorm,
            dropout=dropout, mean=mean, std=std,
        )
