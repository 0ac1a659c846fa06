"""CIFAR-style ResNet-18 (BasicBlock, [2, 2, 2, 2]) for 28x28x1 and 32x32x3 inputs."""
from __future__ import annotations

from typing import Sequence

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

    ``width`` is the first stage's channel count (64 in the paper; tests use 4). The
    task-conditioning arguments are described in ``GraphBuilder``. Example::

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
        num_tasks: int = 0,
        task_encoding: bool = False,
        meta_batchnorm: bool = False,
        meta_dropout: bool = False,
        **kwargs,
    ) -> None:
        builder = GraphBuilder(input_shape, mean, std, batchnorm, num_tasks, task_encoding,
                               meta_batchnorm, meta_dropout)
        x = builder.encode_task(builder.conv(builder.stem(), width, 1))
        x = keras.layers.ReLU()(x)
        for stage, multiplier in enumerate((1, 2, 4, 8)):
            for block in range(2):
                strides = 2 if stage > 0 and block == 0 else 1
                x = basic_block(builder, x, width * multiplier, strides)
        x = keras.layers.GlobalAveragePooling2D()(x)
        outputs = builder.head(x, num_classes, dropout)
        super().__init__(inputs=builder.inputs, outputs=outputs, **kwargs)
        self.store_config(
            input_shape=input_shape, num_classes=num_classes, width=width, batchnorm=batchnorm,
            dropout=dropout, mean=mean, std=std, num_tasks=num_tasks, task_encoding=task_encoding,
            meta_batchnorm=meta_batchnorm, meta_dropout=meta_dropout,
        )
