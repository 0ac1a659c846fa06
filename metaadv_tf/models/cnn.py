"""A small, fast CNN for 28x28 and 32x32 images (strided convolutions, no max-pooling)."""
from __future__ import annotations

from typing import Sequence

import keras

from metaadv_tf.models.base import ClassifierModel, GraphBuilder


@keras.saving.register_keras_serializable(package="metaadv_tf")
class SmallCNN(ClassifierModel):
    """conv(w) - conv(2w, stride 2) - conv(2w, stride 2) - dense(4w) - dropout - logits.

    Strided convolutions replace max-pooling because ``MaxPoolGradGrad`` has no XLA CPU kernel,
    which second-order MAML under ``jit_compile`` would need. The task-conditioning arguments
    are described in ``GraphBuilder``. Example::

        model = SmallCNN(input_shape=(28, 28, 1), num_classes=10)
        logits = model(images)  # images float32 in [0, 1]
    """

    def __init__(
        self,
        input_shape: Sequence[int] = (28, 28, 1),
        num_classes: int = 10,
        width: int = 32,
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
        x = builder.stem()
        for index, (filters, strides) in enumerate(((width, 1), (2 * width, 2), (2 * width, 2))):
            x = builder.conv(x, filters, strides)
            if index == 0:
                x = builder.encode_task(x)
            x = keras.layers.ReLU()(x)
        x = keras.layers.Flatten()(x)
        x = keras.layers.Dense(4 * width, activation="relu")(x)
        outputs = builder.head(x, num_classes, dropout)
        super().__init__(inputs=builder.inputs, outputs=outputs, **kwargs)
        self.store_config(
            input_shape=input_shape, num_classes=num_classes, width=width, batchnorm=batchnorm,
            dropout=dropout, mean=mean, std=std, num_tasks=num_tasks, task_encoding=task_encoding,
            meta_batchnorm=meta_batchnorm, meta_dropout=meta_dropout,
        )
