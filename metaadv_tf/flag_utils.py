"""absl flags shared by the scripts, and their translation into library configs."""
from __future__ import annotations

import json
import sys
from typing import Callable, TypeVar

from absl import flags

from metaadv_tf.models.precision import DTYPE_POLICIES
from metaadv_tf.training.config import LR_SCHEDULES, METHODS, OPTIMIZERS, STRATEGIES, MetaConfig, TrainConfig

FLAGS = flags.FLAGS
T = TypeVar("T")


def define_train_flags() -> None:
    """Defines every TrainConfig/MetaConfig field as a flag (defaults from the dataclasses)."""
    d, m = TrainConfig(), MetaConfig()
    flags.DEFINE_string("method", d.method, f"Training method: one of {', '.join(METHODS)}.")
    flags.DEFINE_string("model", d.model, "Architecture: cnn or resnet18.")
    flags.DEFINE_string("model_args", "{}", 'JSON dict of architecture arguments, e.g. \'{"width": 16}\'.')
    flags.DEFINE_string("dataset", d.dataset, "Dataset: fashion_mnist, mnist or cifar10.")
    flags.DEFINE_integer("train_examples", None, "Use only the first N training examples.")
    flags.DEFINE_string("train_attacks", d.train_attacks,
                        "Training attacks (avg, max, sat, msd, mat, fomaml, reptile):"
                        " 'fgsm,pgd_linf(steps=3)'.")
    flags.DEFINE_float("eps", d.eps, "Linf eps of pgd_at and fgsm_rs.")
    flags.DEFINE_integer("pgd_steps", d.pgd_steps, "PGD steps of pgd_at.")
    flags.DEFINE_integer("batch_size", d.batch_size, "Batch size of the non-meta methods.")
    flags.DEFINE_integer("steps", None, "Training steps (or give --epochs).")
    flags.DEFINE_float("epochs", None, "Training epochs (default 1 when --steps is not given).")
    flags.DEFINE_string("optimizer", d.optimizer, f"{', '.join(OPTIMIZERS)} (sgd: momentum 0.9).")
    flags.DEFINE_float("learning_rate", d.learning_rate, "Outer learning rate (peak of the schedule).")
    flags.DEFINE_float("weight_decay", d.weight_decay, "Decoupled weight decay (sgd, adamw); 0 = off.")
    flags.DEFINE_string("lr_schedule", d.lr_schedule,
                        f"{', '.join(LR_SCHEDULES)} (piecewise: x0.1 at 50% and 75% of the steps).")
    flags.DEFINE_integer("warmup_steps", d.warmup_steps, "Steps of linear learning-rate warmup.")
    flags.DEFINE_integer("seed", d.seed, "Seed of weights, data order and task sampling.")
    flags.DEFINE_integer("num_tasks", m.num_tasks, "Tasks per meta-step.")
    flags.DEFINE_integer("inner_steps", m.inner_steps, "Inner SGD steps per task.")
    flags.DEFINE_float("inner_learning_rate", m.inner_learning_rate, "Inner SGD learning rate.")
    flags.DEFINE_integer("support_size", m.support_size, "Support examples per task.")
    flags.DEFINE_integer("query_size", m.query_size, "Query examples per task.")
    flags.DEFINE_list("task_weights", None,
                      "Sampling weight per training attack (meta methods, sat; default uniform).")
    flags.DEFINE_integer("pool_size", m.pool_size, "Adversarial examples pooled per task (0 = off).")
    flags.DEFINE_integer("pool_refresh", m.pool_refresh, "Regenerate the pools every R steps.")
    flags.DEFINE_integer("memory_steps", m.memory_steps,
                         "Perturbation memory (mat, fomaml): attack steps per visit continuing each"
                         " image's last perturbation; 0: attacks start afresh.")
    flags.DEFINE_bool("memory_per_task", m.memory_per_task,
                      "Keep one perturbation per image and task (T times the memory) instead of one"
                      " shared by the tasks.")
    flags.DEFINE_bool("task_encoding", m.task_encoding, "Condition the model on a task code.")
    flags.DEFINE_bool("meta_batchnorm", m.meta_batchnorm, "Per-task BatchNorm scale and offset.")
    flags.DEFINE_bool("meta_dropout", m.meta_dropout, "Per-task learned multiplicative noise.")
    flags.DEFINE_float("unknown_task_rate", m.unknown_task_rate,
                       "Probability a task trains the 'unknown task' code (conditioned models).")
    flags.DEFINE_bool("task_attention", m.task_attention, "Weight the task losses by learned α.")
    flags.DEFINE_float("attention_learning_rate", m.attention_learning_rate, "Attention's Adam rate.")
    flags.DEFINE_float("attention_entropy", m.attention_entropy, "Entropy weight λ of attention.")
    flags.DEFINE_float("pre_adaptation_weight", m.pre_adaptation_weight,
                       "Weight of θ's own support loss in each task's meta-loss (mat, fomaml).")
    flags.DEFINE_float("consistency_weight", m.consistency_weight,
                       "Weight of KL(adapted ‖ θ) on each task's query batch (mat, fomaml).")
    flags.DEFINE_bool("cross_task_query", m.cross_task_query,
                      "Attack each task's query batch with the next sampled task's attack (MLDG;"
                      " mat, fomaml; num_tasks >= 2).")
    flags.DEFINE_bool("worst_case_query", m.worst_case_query,
                      "Attack each task's query batch with every task and score each example by its worst"
                      " loss (mat, fomaml).")
    flags.DEFINE_float("variation_weight", m.variation_weight,
                       "With --worst_case_query: weight of the query examples' largest logit distance between"
                       " two tasks' attacks (variation regularization).")
    flags.DEFINE_bool("worst_case_anchor", m.worst_case_anchor,
                      "Attack each support batch with every task against θ and score θ's support loss by each"
                      " example's worst (needs --pre_adaptation_weight > 0; mat, fomaml).")
    flags.DEFINE_bool("learn_inner_rates", m.learn_inner_rates,
                      "Learn each task's inner learning rates (Meta-SGD; mat, fomaml).")
    flags.DEFINE_float("inner_rates_learning_rate", m.inner_rates_learning_rate,
                       "Adam rate of the learned inner learning rates.")
    flags.DEFINE_string("strategy", d.strategy, f"tf.distribute strategy: {', '.join(STRATEGIES)}.")
    flags.DEFINE_bool("jit_compile", d.jit_compile, "Compile the training step with XLA.")
    flags.DEFINE_enum("attack_precision", d.attack_precision, list(DTYPE_POLICIES),
                      "mixed_bfloat16: the training attacks compute in bfloat16 (about 1.6x faster on"
                      " ResNet-18 on CPUs with AVX-512 BF16); weight updates and validation stay float32.")
    flags.DEFINE_integer("checkpoint_every", d.checkpoint_every, "Save a checkpoint every K steps.")
    flags.DEFINE_integer("log_every", d.log_every, "Write training summaries every K steps.")
    flags.DEFINE_integer("eval_every", d.eval_every, "Evaluate every K steps (0 = off).")
    flags.DEFINE_integer("eval_examples", d.eval_examples, "Test examples for in-training evaluation.")
    flags.DEFINE_string("eval_attacks", d.eval_attacks, "Attacks of the in-training test evaluation.")
    flags.DEFINE_integer("validation_examples", d.validation_examples,
                         "Hold out the last N training images to validate on and keep the best"
                         " checkpoint (0 = off).")
    flags.DEFINE_string("val_attacks", None, "Attacks of the validation (default: --train_attacks).")


def train_config_from_flags() -> TrainConfig:
    """The TrainConfig the flags describe (raises ValueError on bad values)."""
    try:
        model_args = json.loads(FLAGS.model_args)
    except json.JSONDecodeError as error:
        raise ValueError(f"--model_args must be a JSON object. Received: {FLAGS.model_args!r} ({error})")
    if not isinstance(model_args, dict):
        raise ValueError(f"--model_args must be a JSON object. Received: {FLAGS.model_args!r}")
    epochs = FLAGS.epochs if FLAGS.epochs is not None or FLAGS.steps is not None else 1.0
    weights = tuple(float(w) for w in FLAGS.task_weights) if FLAGS.task_weights else None
    meta = MetaConfig(
        num_tasks=FLAGS.num_tasks, inner_steps=FLAGS.inner_steps,
        inner_learning_rate=FLAGS.inner_learning_rate, support_size=FLAGS.support_size,
        query_size=FLAGS.query_size, task_weights=weights, pool_size=FLAGS.pool_size,
        pool_refresh=FLAGS.pool_refresh, memory_steps=FLAGS.memory_steps,
        memory_per_task=FLAGS.memory_per_task, task_encoding=FLAGS.task_encoding,
        meta_batchnorm=FLAGS.meta_batchnorm, meta_dropout=FLAGS.meta_dropout,
        unknown_task_rate=FLAGS.unknown_task_rate, task_attention=FLAGS.task_attention,
        attention_learning_rate=FLAGS.attention_learning_rate,
        attention_entropy=FLAGS.attention_entropy,
        pre_adaptation_weight=FLAGS.pre_adaptation_weight, consistency_weight=FLAGS.consistency_weight,
        cross_task_query=FLAGS.cross_task_query, worst_case_query=FLAGS.worst_case_query,
        variation_weight=FLAGS.variation_weight, worst_case_anchor=FLAGS.worst_case_anchor,
        learn_inner_rates=FLAGS.learn_inner_rates,
        inner_rates_learning_rate=FLAGS.inner_rates_learning_rate,
    )
    return TrainConfig(
        method=FLAGS.method, model=FLAGS.model, model_args=model_args, dataset=FLAGS.dataset,
        train_examples=FLAGS.train_examples, train_attacks=FLAGS.train_attacks, eps=FLAGS.eps,
        pgd_steps=FLAGS.pgd_steps, batch_size=FLAGS.batch_size, steps=FLAGS.steps, epochs=epochs,
        optimizer=FLAGS.optimizer, learning_rate=FLAGS.learning_rate, weight_decay=FLAGS.weight_decay,
        lr_schedule=FLAGS.lr_schedule, warmup_steps=FLAGS.warmup_steps, seed=FLAGS.seed, meta=meta,
        strategy=FLAGS.strategy, jit_compile=FLAGS.jit_compile, attack_precision=FLAGS.attack_precision,
        checkpoint_every=FLAGS.checkpoint_every, log_every=FLAGS.log_every,
        eval_every=FLAGS.eval_every, eval_examples=FLAGS.eval_examples,
        eval_attacks=FLAGS.eval_attacks, validation_examples=FLAGS.validation_examples,
        val_attacks=FLAGS.val_attacks,
    )


def exit_on_error(run: Callable[[], T]) -> T:
    """Calls ``run``; a ValueError, OSError or RuntimeError becomes one line 'Error: ...' on
    stderr and exit code 1 (bad flags and files are the user's to fix, not a traceback)."""
    try:
        return run()
    except (ValueError, OSError, RuntimeError) as error:
        sys.exit(f"Error: {error}")
