"""A small, fast CNN for 28x28 and 32x32 images (strided convolutions, no max-pooling)."""
from __future__ import annotations

import keras

from metaadv_tf.models.base import ClassifierModel, GraphBuilder


@keras.saving.register_keras_serializable(package="metaadv_tf")
class SmallCNN(ClassifierModel):
    """conv(w) - conv(2w, stride 2) - conv(2w, stride 2) - dense(4w) - dropout - logits; w = 32.

    Strided convolutions replace max-pooling because ``MaxPoolGradGrad`` has no XLA CPU kernel,
    which second-order MAML under ``jit_compile`` would need. Arguments: see ``ClassifierModel``
    and, for task conditioning, ``GraphBuilder``. Example::

        model = SmallCNN(input_shape=(28, 28, 1), num_classes=10)
        logits = model(images)  # images float32 in [0, 1]
    """

    DEFAULT_WIDTH = 32

    @staticmethod
    def features(builder: GraphBuilder, width: int):
        x = builder.stem()
        for index, (filters, strides) in enumerate(((width, 1), (2 * width, 2), (2 * width, 2))):
            x = builder.conv(x, filters, strides)
            if index == 0:
                x = builder.encode_task(x)
            x = keras.layers.ReLU()(x)
        x = keras.layers.Flatten()(x)
        return keras.layers.Dense(4 * width, activation="relu")(x)
