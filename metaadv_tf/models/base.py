"""What every zoo architecture shares: validated arguments, config round trips, and a graph
builder that adds the optional task conditioning (`metaadv_tf.models.task_layers`)."""
from __future__ import annotations

from typing import Any, Sequence

import keras

from metaadv_tf.models.layers import BatchNorm, Standardize
from metaadv_tf.models.task_layers import MetaBatchNorm, MetaDropout, TaskBias, TaskCode
from metaadv_tf.validation import check_positive_int


class ClassifierModel(keras.Model):
    """A functional Keras model whose constructor arguments are its config (keras-hub style).

    The constructor builds the graph: a ``GraphBuilder`` stem (normalization inside the model,
    optional task conditioning), the subclass's ``features``, then the logits head. Every argument
    is returned by ``get_config``, so ``from_config``, ``.keras`` files and the zoo round-trip it.
    ``width=None`` takes the architecture's ``DEFAULT_WIDTH``.
    """

    DEFAULT_WIDTH = 32

    def __init__(
        self,
        input_shape: Sequence[int] = (28, 28, 1),
        num_classes: int = 10,
        width: int | None = None,
        batchnorm: bool = True,
        dropout: float = 0.0,
        mean: Sequence[float] | None = None,
        std: Sequence[float] | None = None,
        num_tasks: int = 0,
        task_encoding: bool = False,
        meta_batchnorm: bool = False,
        meta_dropout: bool = False,
        **kwargs: Any,
    ) -> None:
        width = self.DEFAULT_WIDTH if width is None else check_positive_int("width", width)
        builder = GraphBuilder(input_shape, mean, std, batchnorm, num_tasks, task_encoding,
                               meta_batchnorm, meta_dropout)
        outputs = builder.head(self.features(builder, width), num_classes, dropout)
        super().__init__(inputs=builder.inputs, outputs=outputs, **kwargs)
        self._arguments = dict(
            input_shape=[int(d) for d in input_shape], num_classes=num_classes, width=width,
            batchnorm=batchnorm, dropout=dropout, mean=mean, std=std, num_tasks=num_tasks,
            task_encoding=task_encoding, meta_batchnorm=meta_batchnorm, meta_dropout=meta_dropout,
        )

    @staticmethod
    def features(builder: "GraphBuilder", width: int):
        """The architecture's body: from ``builder.stem()`` to the flat features of the head."""
        raise NotImplementedError

    def get_config(self) -> dict:
        return {"name": self.name, "trainable": self.trainable, **self._arguments}

    @classmethod
    def from_config(cls, config: dict, custom_objects=None):
        return cls(**config)

    @property
    def image_shape(self) -> tuple[int, int, int]:
        """(height, width, channels) of the images the model takes."""
        return tuple(self._arguments["input_shape"])


class GraphBuilder:
    """Builds an architecture's layers: input stem, convolutions, normalization, head.

    With ``num_tasks`` > 0 the graph is task-conditioned: ``task_encoding`` adds a projected task
    code after the first convolution, ``meta_batchnorm`` makes every BatchNorm a MetaBatchNorm,
    ``meta_dropout`` puts MetaDropout before the classifier.
    """

    def __init__(
        self,
        input_shape: Sequence[int],
        mean: Sequence[float] | None,
        std: Sequence[float] | None,
        batchnorm: bool,
        num_tasks: int = 0,
        task_encoding: bool = False,
        meta_batchnorm: bool = False,
        meta_dropout: bool = False,
    ) -> None:
        if len(input_shape) != 3 or any(int(d) < 1 for d in input_shape):
            raise ValueError(
                f"input_shape must be (height, width, channels) with positive sizes."
                f" Received: input_shape={tuple(input_shape)}"
            )
        conditioned = task_encoding or meta_batchnorm or meta_dropout
        if conditioned and num_tasks < 1:
            raise ValueError(
                "task_encoding, meta_batchnorm and meta_dropout need the number of training tasks."
                f" Received: num_tasks={num_tasks}"
            )
        if meta_batchnorm and not batchnorm:
            raise ValueError("meta_batchnorm=True needs batchnorm=True.")
        channels = int(input_shape[-1])
        self.mean = [0.5] * channels if mean is None else mean
        self.std = [0.5] * channels if std is None else std
        self.batchnorm = batchnorm
        self.task_encoding, self.meta_batchnorm, self.meta_dropout = (
            task_encoding, meta_batchnorm, meta_dropout)
        self.inputs = keras.Input(shape=tuple(int(d) for d in input_shape), name="images")
        self.code = TaskCode(num_tasks)(self.inputs) if conditioned else None

    def stem(self):
        """The standardized images: (x - mean) / std, mean and std defaulting to 0.5."""
        return Standardize(self.mean, self.std)(self.inputs)

    def conv(self, x, filters: int, strides: int, kernel_size: int = 3):
        """A 'same' convolution, then (Meta-)BatchNorm when the model has BatchNorm."""
        x = keras.layers.Conv2D(filters, kernel_size, strides=strides, padding="same",
                                use_bias=not self.batchnorm)(x)
        return self.norm(x) if self.batchnorm else x

    def norm(self, x):
        """BatchNorm, or MetaBatchNorm with per-task scale and offset."""
        return MetaBatchNorm()([x, self.code]) if self.meta_batchnorm else BatchNorm()(x)

    def encode_task(self, x):
        """Adds the projected task code to a feature map (task encoding), else returns x."""
        return TaskBias()([x, self.code]) if self.task_encoding else x

    def head(self, x, num_classes: int, dropout: float):
        """Optional dropout and Meta-Dropout, then a dense layer returning logits."""
        check_positive_int("num_classes", num_classes)
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1). Received: dropout={dropout}")
        if dropout:
            x = keras.layers.Dropout(dropout)(x)
        if self.meta_dropout:
            x = MetaDropout()([x, self.code])
        policy = keras.config.dtype_policy()
        mixed = policy.compute_dtype != policy.variable_dtype  # then logits in the variables' dtype
        return keras.layers.Dense(num_classes, name="logits", dtype=policy.variable_dtype if mixed else None)(x)
