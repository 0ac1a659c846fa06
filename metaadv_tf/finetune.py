"""Few-shot adversarial fine-tuning: adapt a trained model to new attacks from a few examples.

Example::

    tuned = finetune(load_model("resnet18_mat"), parse_attacks("mim,pgd_l2"), x, y, steps=50)

``inner_loop_settings(config.meta)`` gives the arguments that fine-tune as a MAT run's inner loop
adapts (one attacked support batch, a few plain SGD steps on it).
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any, Sequence

import keras
import numpy as np
import tensorflow as tf

from metaadv_tf.attacks import Attack
from metaadv_tf.evaluation import check_labels
from metaadv_tf.registry import check_choice
from metaadv_tf.validation import check_images, check_positive, check_positive_int

if TYPE_CHECKING:
    from metaadv_tf.training import MetaConfig

OPTIMIZERS = {"adam": keras.optimizers.Adam, "sgd": keras.optimizers.SGD}


def finetune(
    model: keras.Model,
    attacks: Sequence[Attack],
    x: np.ndarray,
    y: np.ndarray,
    *,
    steps: int,
    learning_rate: float = 1e-4,
    batch_size: int = 32,
    optimizer: str = "adam",
    seed: int = 0,
    training_mode: bool = False,
    steps_per_batch: int = 1,
) -> keras.Model:
    """A copy of ``model`` adversarially trained on images ``x`` (float32 in [0, 1]), labels ``y``.

    Each step draws min(``batch_size``, len(x)) examples without replacement, attacks them with
    every attack against the current weights, and takes ``steps_per_batch`` steps of ``optimizer``
    ("adam" or "sgd", the optimizer of MAT's inner loop) on the cross-entropy averaged over the
    attacks, all on these adversarial examples (as MAT's inner loop adapts on one support batch).
    By default BatchNorm and Dropout stay in inference mode. With ``training_mode`` the attacks and
    the loss run the layers in training mode (BatchNorm on batch statistics), as MAT's inner loop
    does. Either way the moving statistics learned on the full training set are kept, so a few
    examples cannot overwrite them. ``model`` itself is not changed.
    """
    if not attacks:
        raise ValueError("finetune needs at least one attack. Received: attacks=[]")
    x = check_images(x, model.input_shape[1:])
    y = check_labels(y, len(x), num_classes=model.output_shape[-1])
    steps = check_positive_int("steps", steps)
    steps_per_batch = check_positive_int("steps_per_batch", steps_per_batch)
    size = min(check_positive_int("batch_size", batch_size), len(x))
    tuned = type(model).from_config(model.get_config())  # the same class, e.g. ResNet18
    tuned.set_weights(model.get_weights())
    learning_rate = check_positive("learning_rate", learning_rate)
    update = OPTIMIZERS[check_choice("optimizer", optimizer, list(OPTIMIZERS))](learning_rate)
    update.build(tuned.trainable_variables)
    step = _train_step(tuned, update, attacks, training_mode, steps_per_batch)
    rng = np.random.default_rng(seed)
    for _ in range(steps):
        batch = rng.choice(len(x), size, replace=False)
        step(tf.constant(x[batch]), tf.constant(y[batch]))
    for variable, value in zip(tuned.non_trainable_variables, model.non_trainable_variables):
        variable.assign(value)  # training-mode steps move the BatchNorm statistics; keep the learned ones
    return tuned


def inner_loop_settings(meta: "MetaConfig") -> dict[str, Any]:
    """``finetune`` arguments that adapt as the inner loop of a meta run with ``meta`` does: each
    batch of ``support_size`` examples attacked once in training mode, then ``inner_steps`` plain
    SGD steps at ``inner_learning_rate`` on it (`metaadv_tf.meta.functional.adapt`)."""
    return {"optimizer": "sgd", "learning_rate": meta.inner_learning_rate, "batch_size": meta.support_size,
            "training_mode": True, "steps_per_batch": meta.inner_steps}


def _train_step(
    model: keras.Model, optimizer: keras.optimizers.Optimizer, attacks: Sequence[Attack], training_mode: bool,
    steps_per_batch: int,
):
    """One compiled adversarial training step on a batch: the attacks, then ``steps_per_batch``
    optimizer steps on their examples (every attack runs in tf.function)."""
    loss_fn = keras.losses.SparseCategoricalCrossentropy(from_logits=True)

    def forward(images: tf.Tensor) -> tf.Tensor:
        return model(images, training=training_mode)

    @tf.function
    def step(images: tf.Tensor, labels: tf.Tensor) -> tf.Tensor:
        adversarial = [attack(forward, images, labels) for attack in attacks]
        for _ in range(steps_per_batch):
            with tf.GradientTape() as tape:
                loss = tf.add_n([loss_fn(labels, forward(batch)) for batch in adversarial]) / len(adversarial)
            gradients = tape.gradient(loss, model.trainable_variables)
            optimizer.apply_gradients(zip(gradients, model.trainable_variables))
        return loss

    return step
