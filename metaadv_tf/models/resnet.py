"""CIFAR-style ResNet-18 (BasicBlock, [2, 2, 2, 2]) for 28x28x1 and 32x32x3 inputs."""
from __future__ import annotations

import keras

from metaadv_tf.models.base import ClassifierModel, GraphBuilder


def basic_block(builder: GraphBuilder, x, filters: int, strides: int):
    """Two 3x3 convolutions with a (projected when the shape changes) identity shortcut."""
    shortcut = x
    y = keras.layers.ReLU()(builder.conv(x, filters, strides))
    y = builder.conv(y, filters, 1)
    if strides != 1 or x.shape[-1] != filters:
        shortcut = builder.conv(x, filters, strides, kernel_size=1)
    return keras.layers.ReLU()(keras.layers.Add()([y, shortcut]))


@keras.saving.register_keras_serializable(package="metaadv_tf")
class ResNet18(ClassifierModel):
    """ResNet-18 as in He et al. for CIFAR: a 3x3 stem, no max-pool, four stages of two blocks.

    ``width`` is the first stage's channel count (64 in the paper; tests use 4). Arguments: see
    ``ClassifierModel`` and, for task conditioning, ``GraphBuilder``. Example::

        model = ResNet18(input_shape=(32, 32, 3), num_classes=10)
    """

    DEFAULT_WIDTH = 64

    @staticmethod
    def features(builder: GraphBuilder, width: int):
        x = keras.layers.ReLU()(builder.encode_task(builder.conv(builder.stem(), width, 1)))
        for stage, multiplier in enumerate((1, 2, 4, 8)):
            for block in range(2):
                strides = 2 if stage > 0 and block == 0 else 1
                x = basic_block(builder, x, width * multiplier, strides)
        return keras.layers.GlobalAveragePooling2D()(x)
