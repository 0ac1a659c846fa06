"""Task-conditioned layers of the MAT extensions: task encoding, Meta-BatchNorm, Meta-Dropout.

The current task lives in the model's state, not in its inputs: ``TaskCode`` holds a one-hot code
of length ``num_tasks + 1`` as a non-trainable variable whose value is the last slot, "unknown
task", unless a training step passes another through ``stateless_call``. So a task-conditioned
model still takes images alone (zoo, export, attacks), and on attacks never seen in training it
runs with the learned "unknown" code. Training (``metaadv_tf.meta.maml``) swaps in each task's
code, and with probability ``unknown_task_rate`` the unknown code, so the unknown slot is trained
as a generic robust setting (like a null token).
"""
from __future__ import annotations

import keras
import numpy as np
from keras import ops

from metaadv_tf.models.layers import BatchNorm

TASK_CODE_NAME = "task_code"


@keras.saving.register_keras_serializable(package="metaadv_tf")
class TaskCode(keras.layers.Layer):
    """Outputs the current task's one-hot code, tiled over the batch: [batch, num_tasks + 1]."""

    def __init__(self, num_tasks: int, **kwargs) -> None:
        super().__init__(**kwargs)
        if num_tasks < 1:
            raise ValueError(f"num_tasks must be >= 1 for task conditioning. Received: num_tasks={num_tasks}")
        self.num_tasks = int(num_tasks)

    def build(self, input_shape) -> None:
        unknown = np.zeros(self.num_tasks + 1, np.float32)
        unknown[-1] = 1.0
        self.code = self.add_weight(
            shape=(self.num_tasks + 1,), initializer=keras.initializers.Constant(unknown),
            trainable=False, name=TASK_CODE_NAME,
        )

    def call(self, images):
        code = ops.cast(self.code, images.dtype)
        return ops.tile(code[None, :], [ops.shape(images)[0], 1])

    def get_config(self) -> dict:
        return {**super().get_config(), "num_tasks": self.num_tasks}


@keras.saving.register_keras_serializable(package="metaadv_tf")
class TaskBias(keras.layers.Layer):
    """Task encoding: the code, projected to one bias per channel, added to a feature map.

    Adding W·e_i to every position equals concatenating the one-hot code as constant channels and
    applying a 1x1 convolution, at the cost of one [tasks + 1, channels] matrix. The projection
    starts at zero, so training begins from the unconditioned network.
    """

    def build(self, input_shapes) -> None:
        features, code = input_shapes
        self.projection = self.add_weight(
            shape=(int(code[-1]), int(features[-1])), initializer="zeros", name="projection"
        )

    def call(self, inputs):
        features, code = inputs
        return features + ops.matmul(code, self.projection)[:, None, None, :]


@keras.saving.register_keras_serializable(package="metaadv_tf")
class MetaBatchNorm(BatchNorm):
    """Meta-BatchNorm: one scale and offset per task (rows of a table; the last row is the
    shared "unknown task" pair), selected by the task code. Statistics are shared by all tasks
    and follow `BatchNorm`'s policy; only the affine parameters are per task."""

    def build(self, input_shapes) -> None:
        features, code = input_shapes
        rows, channels = int(code[-1]), int(features[-1])
        self.gamma = self.add_weight(shape=(rows, channels), initializer="ones", autocast=False, name="task_gamma")
        self.beta = self.add_weight(shape=(rows, channels), initializer="zeros", autocast=False, name="task_beta")
        self.build_statistics(channels)

    def call(self, inputs, training: bool = False):
        features, code = inputs
        code = ops.cast(code, self.variable_dtype)  # float32, as BatchNorm computes
        normalized = self.normalize(features, training)
        gamma = ops.matmul(code, self.gamma)[:, None, None, :]
        beta = ops.matmul(code, self.beta)[:, None, None, :]
        return ops.cast(normalized * gamma + beta, self.compute_dtype)


@keras.saving.register_keras_serializable(package="metaadv_tf")
class MetaDropout(keras.layers.Layer):
    """Meta-Dropout: multiplicative Gaussian noise with a learned scale per task and channel.

    In training, h -> h · (1 + σ_t ⊙ ε), ε ~ N(0, 1), σ_t = softplus(ρ_t) with ρ a [tasks + 1,
    channels] table (last row: unknown task), selected by the task code. The noise is
    reparameterized, so gradients reach ρ and the inner loop adapts each task's noise. Gaussian
    dropout with rate p has σ = sqrt(p / (1 - p)); ρ starts at ``initial_scale``'s inverse
    softplus. At inference the layer is the identity.
    """

    def __init__(self, initial_scale: float = 0.1, seed: int | None = None, **kwargs) -> None:
        super().__init__(**kwargs)
        if initial_scale <= 0:
            raise ValueError(f"initial_scale must be > 0. Received: initial_scale={initial_scale}")
        self.initial_scale = float(initial_scale)
        self.seed = seed
        self.seed_generator = keras.random.SeedGenerator(seed)

    def build(self, input_shapes) -> None:
        features, code = input_shapes
        rho = float(np.log(np.expm1(self.initial_scale)))
        self.rho = self.add_weight(
            shape=(int(code[-1]), int(features[-1])), initializer=keras.initializers.Constant(rho),
            name="task_noise",
        )

    def call(self, inputs, training: bool = False):
        features, code = inputs
        if not training:
            return features
        scale = ops.softplus(ops.matmul(code, self.rho))
        scale = ops.reshape(scale, [-1] + [1] * (len(features.shape) - 2) + [scale.shape[-1]])
        noise = keras.random.normal(ops.shape(features), seed=self.seed_generator, dtype=features.dtype)
        return features * (1.0 + scale * noise)

    def get_config(self) -> dict:
        return {**super().get_config(), "initial_scale": self.initial_scale, "seed": self.seed}


def task_code_slot(model: keras.Model) -> int | None:
    """Index of the task code among ``model.non_trainable_variables`` (None: not conditioned)."""
    slots = [i for i, v in enumerate(model.non_trainable_variables) if v.path.endswith(TASK_CODE_NAME)]
    return slots[0] if slots else None

