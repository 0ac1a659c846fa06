"""Layers shared by the architectures: input normalization and a twice-differentiable BatchNorm."""
from __future__ import annotations

from typing import Sequence

import keras
from keras import ops


@keras.saving.register_keras_serializable(package="metaadv_tf")
class Standardize(keras.layers.Layer):
    """Maps [0, 1] pixels to (x - mean) / std inside the model, so attacks work in pixel space."""

    def __init__(self, mean: Sequence[float], std: Sequence[float], **kwargs) -> None:
        super().__init__(**kwargs)
        if len(mean) != len(std) or any(s <= 0 for s in std):
            raise ValueError(
                f"mean and std need one value per channel and std > 0. Received: mean={mean}, std={std}"
            )
        self.mean = [float(m) for m in mean]
        self.std = [float(s) for s in std]

    def call(self, images):
        mean = ops.convert_to_tensor(self.mean, dtype=images.dtype)
        std = ops.convert_to_tensor(self.std, dtype=images.dtype)
        return (images - mean) / std

    def get_config(self) -> dict:
        return {**super().get_config(), "mean": self.mean, "std": self.std}


@keras.saving.register_keras_serializable(package="metaadv_tf")
class BatchNorm(keras.layers.Layer):
    """BatchNormalization over all axes but the last, with exact second derivatives.

    Keras' BatchNormalization computes the variance with ``tf.nn.moments``, which stops the gradient
    through the mean inside the variance: its first derivatives are right, its second are not, so
    second-order MAML through it is wrong by a few percent. Here the variance is
    ``mean(square(x - mean(x)))`` with nothing stopped.

    Under mixed precision the layer computes in float32 (its variables are never cast to the
    compute dtype) and returns the compute dtype.

    Statistics policy (the one place it is written down): in training mode the layer normalizes
    with the batch's own statistics, in the inner loop and the outer loop alike (transductive
    batch statistics, as in MAML), and moves its moving statistics toward them; in inference mode it
    uses the moving statistics. Under ``stateless_call`` the moved statistics come back as new
    non-trainable values; `metaadv_tf.training` decides which forward pass's statistics are kept.
    """

    def __init__(self, momentum: float = 0.9, epsilon: float = 1e-5, **kwargs) -> None:
        super().__init__(**kwargs)
        if not 0.0 <= momentum < 1.0:
            raise ValueError(f"momentum must be in [0, 1). Received: momentum={momentum}")
        if epsilon <= 0:
            raise ValueError(f"epsilon must be > 0. Received: epsilon={epsilon}")
        self.momentum = float(momentum)
        self.epsilon = float(epsilon)

    def build(self, input_shape) -> None:
        channels = int(input_shape[-1])
        self.gamma = self.add_weight(shape=(channels,), initializer="ones", autocast=False, name="gamma")
        self.beta = self.add_weight(shape=(channels,), initializer="zeros", autocast=False, name="beta")
        self.build_statistics(channels)

    def build_statistics(self, channels: int) -> None:
        """Creates the moving mean and variance (after the affine parameters: weight order)."""
        self.moving_mean = self.add_weight(
            shape=(channels,), initializer="zeros", trainable=False, autocast=False, name="moving_mean"
        )
        self.moving_variance = self.add_weight(
            shape=(channels,), initializer="ones", trainable=False, autocast=False, name="moving_variance"
        )

    def call(self, inputs, training: bool = False):
        return ops.cast(self.normalize(inputs, training) * self.gamma + self.beta, self.compute_dtype)

    def normalize(self, inputs, training: bool):
        """(x - mean) / sqrt(variance + epsilon) in float32, with the statistics the policy above picks."""
        inputs = ops.cast(inputs, self.variable_dtype)
        if training:
            axes = list(range(len(inputs.shape) - 1))
            mean = ops.mean(inputs, axis=axes)
            variance = ops.mean(ops.square(inputs - mean), axis=axes)
            keep = self.momentum
            self.moving_mean.assign(keep * self.moving_mean + (1.0 - keep) * ops.stop_gradient(mean))
            self.moving_variance.assign(
                keep * self.moving_variance + (1.0 - keep) * ops.stop_gradient(variance)
            )
        else:
            mean = ops.cast(self.moving_mean, inputs.dtype)
            variance = ops.cast(self.moving_variance, inputs.dtype)
        return (inputs - mean) * ops.rsqrt(variance + self.epsilon)

    def get_config(self) -> dict:
        return {**super().get_config(), "momentum": self.momentum, "epsilon": self.epsilon}
