"""Hyperparameters of a training run, validated in one place (never inside a step function)."""
from __future__ import annotations

import dataclasses
import json
import os
from typing import Any

from metaadv_tf.models.precision import DTYPE_POLICIES
from metaadv_tf.registry import check_choice
from metaadv_tf.validation import check_positive, check_positive_int

METHODS = ("standard", "pgd_at", "fgsm_rs", "avg", "max", "sat", "msd", "mat", "fomaml", "reptile")
META_METHODS = ("mat", "fomaml", "reptile")
MULTI_ATTACK_METHODS = ("avg", "max", "sat", "msd", *META_METHODS)
STRATEGIES = ("default", "mirrored", "multi_worker")
OPTIMIZERS = ("adam", "adamw", "sgd")
LR_SCHEDULES = ("constant", "cosine", "piecewise")
CONFIG_FILE = "config.json"  # a run's definition, in its workdir
RESULT_FILE = "result.json"  # a finished run's TrainResult, in its workdir
FINAL_WEIGHTS = "final.weights.h5"  # a finished run's last weights, in its workdir
RESUMES_FILE = "resumes.json"  # the step each session after a run's first resumed from, in its workdir


@dataclasses.dataclass(frozen=True)
class MetaConfig:
    """Settings of the meta-learning methods (mat, fomaml, reptile).

    Each meta-step samples ``num_tasks`` distinct training attacks (weighted by ``task_weights``,
    which also weight ``sat``'s one task per step); each task gets
    ``support_size`` + ``query_size`` clean examples. ``pool_size`` > 0 turns on per-task pools
    of adversarial examples regenerated every ``pool_refresh`` steps instead of attacking every step.
    ``memory_steps`` > 0 (mat, fomaml) turns on the perturbation memory instead: the tasks' PGD-type
    attacks run ``memory_steps`` iterations per visit, continuing each image's last perturbation
    (`metaadv_tf.meta.memory`), shared by the tasks or, with ``memory_per_task``, each task's own.

    Extensions (each independent): ``task_encoding``, ``meta_batchnorm`` and ``meta_dropout``
    condition the model on the task (`metaadv_tf.models.task_layers`; a task's forward passes use
    the "unknown task" code with probability ``unknown_task_rate``); ``task_attention`` weights
    the task losses by learned α (`metaadv_tf.meta.attention`, entropy weight
    ``attention_entropy``). ``pre_adaptation_weight`` w adds w · (support loss of θ) to each
    task's meta-loss (mat and fomaml), so the unadapted θ, the model that gets deployed, is trained
    on the tasks' adversarial examples directly as well; ``consistency_weight`` c adds c · KL from
    the adapted model's query predictions to θ's (with ``worst_case_query``, on every task's version).
    ``cross_task_query`` (mat, fomaml; needs ``num_tasks`` >= 2) attacks each task's query batch with
    the next sampled task's attack, so adapting to one threat model is scored against another (MLDG);
    ``worst_case_query`` (mat, fomaml) attacks it with every task and scores each example by its worst
    loss, as ``max`` does; with it, ``variation_weight`` v adds v · the query examples' largest logit
    distance between two threat models (variation regularization,
    `metaadv_tf.meta.functional.logit_variation`).
    ``worst_case_anchor`` (needs ``pre_adaptation_weight`` > 0) attacks each support batch with every
    task against θ and scores θ's support loss by each example's worst, so the anchor term is MAX's
    objective; the inner steps still adapt on the task's own attack.
    ``learn_inner_rates`` (mat, fomaml) learns a learning rate per task and parameter tensor
    (Meta-SGD; Adam at ``inner_rates_learning_rate``), starting at ``inner_learning_rate``.
    """

    num_tasks: int = 2
    inner_steps: int = 1
    inner_learning_rate: float = 0.05
    support_size: int = 32
    query_size: int = 32
    task_weights: tuple[float, ...] | None = None
    pool_size: int = 0
    pool_refresh: int = 10
    memory_steps: int = 0
    memory_per_task: bool = False
    task_encoding: bool = False
    meta_batchnorm: bool = False
    meta_dropout: bool = False
    unknown_task_rate: float = 0.25
    task_attention: bool = False
    attention_learning_rate: float = 0.01
    attention_entropy: float = 0.1
    pre_adaptation_weight: float = 0.0
    consistency_weight: float = 0.0
    cross_task_query: bool = False
    worst_case_query: bool = False
    variation_weight: float = 0.0
    worst_case_anchor: bool = False
    learn_inner_rates: bool = False
    inner_rates_learning_rate: float = 0.001

    @property
    def conditioned(self) -> bool:
        """True when the model is task-conditioned (any of the three model extensions)."""
        return self.task_encoding or self.meta_batchnorm or self.meta_dropout

    def __post_init__(self) -> None:
        for name in ("num_tasks", "inner_steps", "support_size", "query_size", "pool_refresh"):
            check_positive_int(name, getattr(self, name))
        check_positive("inner_learning_rate", self.inner_learning_rate)
        check_positive("attention_learning_rate", self.attention_learning_rate)
        check_positive("attention_entropy", self.attention_entropy, allow_zero=True)
        check_positive("pre_adaptation_weight", self.pre_adaptation_weight, allow_zero=True)
        check_positive("consistency_weight", self.consistency_weight, allow_zero=True)
        check_positive("inner_rates_learning_rate", self.inner_rates_learning_rate)
        check_positive("variation_weight", self.variation_weight, allow_zero=True)
        if self.variation_weight and not self.worst_case_query:
            raise ValueError("variation_weight compares each query example's versions under every task's"
                             " attack; it needs worst_case_query. Received: worst_case_query=False")
        if not 0.0 <= self.unknown_task_rate < 1.0:
            raise ValueError(
                f"unknown_task_rate must be in [0, 1). Received: unknown_task_rate={self.unknown_task_rate}"
            )
        check_positive_int("memory_steps", self.memory_steps, allow_zero=True)
        if self.cross_task_query and self.num_tasks < 2:
            raise ValueError(
                f"cross_task_query attacks a task's query batch with another sampled task's attack;"
                f" it needs num_tasks >= 2. Received: num_tasks={self.num_tasks}"
            )
        if self.worst_case_anchor and not self.pre_adaptation_weight:
            raise ValueError(
                "worst_case_anchor scores the support loss of θ, which counts only with pre_adaptation_weight"
                f" > 0. Received: pre_adaptation_weight={self.pre_adaptation_weight}"
            )
        reuse = {"memory_steps": self.memory_steps, "pool_size": self.pool_size}
        if self.worst_case_anchor:
            _check_fresh_attacks("worst_case_anchor", "support", reuse)
        if self.worst_case_query:
            _check_fresh_attacks("worst_case_query", "query", {"cross_task_query": self.cross_task_query, **reuse})
        if self.memory_per_task and not self.memory_steps:
            raise ValueError("memory_per_task splits the perturbation memory by task; it needs"
                             f" memory_steps >= 1. Received: memory_steps={self.memory_steps}")
        if self.memory_steps and self.pool_size:
            raise ValueError(
                f"Use a perturbation memory or adversarial pools, not both. Received:"
                f" memory_steps={self.memory_steps}, pool_size={self.pool_size}"
            )
        if self.pool_size:
            check_positive_int("pool_size", self.pool_size)
            if self.cross_task_query:
                raise ValueError("cross_task_query needs attacks at every step; pools hold each task's"
                                 f" own examples. Received: pool_size={self.pool_size}")
            if self.pool_size < self.support_size + self.query_size:
                raise ValueError(
                    f"pool_size must hold at least one support and query batch"
                    f" ({self.support_size + self.query_size}). Received: pool_size={self.pool_size}"
                )


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """Everything that defines a training run; ``to_json``/``from_json`` round-trip it.

    Optimization: ``optimizer`` adam, adamw or sgd (momentum 0.9); ``weight_decay`` is decoupled
    (each step θ ← θ − lr·weight_decay·θ; sgd and adamw); ``lr_schedule`` constant, cosine (to 0
    at the last step) or piecewise (×0.1 at 50 % and 75 % of the steps), after ``warmup_steps``
    of linear warmup (`metaadv_tf.training.optimizers`).

    Validation: ``validation_examples`` N > 0 holds out the last N of the run's training images
    (the first ``train_examples``, or the whole split) and measures robust accuracy on them
    under ``val_attacks`` (default: ``train_attacks``) every ``eval_every`` steps and at the end,
    keeping the best checkpoint (see `metaadv_tf.training.loop`). ``eval_attacks`` on
    ``eval_examples`` test images are measured at the same steps, for TensorBoard only.

    ``attack_precision`` "mixed_bfloat16" runs the training attacks in bfloat16 compute (through a
    twin of the model over the same float32 weights, `metaadv_tf.models.precision_twin`); the loss,
    every weight update (MAML's inner steps included) and validation stay float32.
    """

    method: str = "mat"
    model: str = "cnn"
    model_args: dict[str, Any] = dataclasses.field(default_factory=dict)
    dataset: str = "fashion_mnist"
    train_examples: int | None = None
    train_attacks: str = "fgsm,pgd_linf(steps=3)"
    eps: float = 0.1
    pgd_steps: int = 7
    batch_size: int = 128
    steps: int | None = None
    epochs: float | None = 1.0
    optimizer: str = "adam"
    learning_rate: float = 1e-3
    weight_decay: float = 0.0
    lr_schedule: str = "constant"
    warmup_steps: int = 0
    seed: int = 0
    meta: MetaConfig = dataclasses.field(default_factory=MetaConfig)
    strategy: str = "default"
    jit_compile: bool = False
    attack_precision: str = "float32"
    checkpoint_every: int = 100
    log_every: int = 10
    eval_every: int = 0
    eval_examples: int = 200
    eval_attacks: str = "fgsm,pgd_linf"
    validation_examples: int = 0
    val_attacks: str | None = None

    def __post_init__(self) -> None:
        check_choice("method", self.method, list(METHODS))
        check_choice("strategy", self.strategy, list(STRATEGIES))
        check_choice("optimizer", self.optimizer, list(OPTIMIZERS))
        check_choice("lr_schedule", self.lr_schedule, list(LR_SCHEDULES))
        check_choice("attack_precision", self.attack_precision, list(DTYPE_POLICIES))
        check_positive("eps", self.eps)
        check_positive("learning_rate", self.learning_rate)
        check_positive("weight_decay", self.weight_decay, allow_zero=True)
        if self.weight_decay and self.optimizer == "adam":
            raise ValueError(
                f"optimizer='adam' has no weight decay; use optimizer='adamw' (decoupled weight decay)."
                f" Received: weight_decay={self.weight_decay}"
            )
        for name in ("warmup_steps", "validation_examples"):
            check_positive_int(name, getattr(self, name), allow_zero=True)
        for name in ("batch_size", "pgd_steps", "checkpoint_every", "log_every", "eval_examples"):
            check_positive_int(name, getattr(self, name))
        if (self.steps is None) == (self.epochs is None):
            raise ValueError(
                f"Give exactly one of steps and epochs. Received: steps={self.steps}, epochs={self.epochs}"
            )
        if self.steps is not None:
            check_positive_int("steps", self.steps)
        else:
            check_positive("epochs", self.epochs)
        if self.train_examples is not None:
            check_positive_int("train_examples", self.train_examples)
        loss_terms = ("task_attention", "pre_adaptation_weight", "consistency_weight", "learn_inner_rates",
                      "cross_task_query", "worst_case_query", "worst_case_anchor")
        extensions = [name for name in ("task_encoding", "meta_batchnorm", "meta_dropout", *loss_terms)
                      if getattr(self.meta, name)]
        if extensions and self.method not in META_METHODS:
            raise ValueError(
                f"{', '.join(extensions)} extend the meta methods ({', '.join(META_METHODS)})."
                f" Received: method={self.method!r}"
            )
        for name in loss_terms:
            if getattr(self.meta, name) and self.method == "reptile":
                raise ValueError(f"{name} changes the meta-loss, which reptile does not have.")
        if self.eval_every < 0:
            raise ValueError(f"eval_every must be >= 0 (0 = off). Received: eval_every={self.eval_every}")
        if self.validation_examples and self.validation_examples >= self.available_train_examples:
            raise ValueError(
                f"validation_examples must be smaller than the {self.available_train_examples} training"
                f" images of the run ({self.dataset}, train_examples={self.train_examples}), which it"
                f" holds out from. Received: validation_examples={self.validation_examples}"
            )
        if self.val_attacks is not None and not self.validation_examples:
            raise ValueError(
                f"val_attacks needs validation_examples > 0 (the images it attacks)."
                f" Received: val_attacks={self.val_attacks!r}, validation_examples=0"
            )

    @property
    def available_train_examples(self) -> int:
        """Training-split images the run reads: the first ``train_examples``, or all of them."""
        from metaadv_tf.data import get_info  # imports TensorFlow: not at flag-definition time

        size = get_info(self.dataset).splits["train"]
        return min(size, self.train_examples) if self.train_examples else size

    @property
    def images_per_step(self) -> int:
        """Clean training images one step consumes (meta methods: tasks x (support + query))."""
        if self.method in META_METHODS:
            return self.meta.num_tasks * (self.meta.support_size + self.meta.query_size)
        return self.batch_size

    def to_json(self) -> str:
        """The config as JSON text."""
        return json.dumps(dataclasses.asdict(self), indent=2, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> "TrainConfig":
        """Inverse of ``to_json``."""
        values = json.loads(text)
        meta = values.pop("meta")
        if meta.get("task_weights") is not None:
            meta["task_weights"] = tuple(meta["task_weights"])
        return cls(meta=MetaConfig(**meta), **values)


def _check_fresh_attacks(name: str, batch: str, others: dict[str, Any]) -> None:
    """Raises ValueError naming the settings of ``others`` that are on: option ``name`` attacks each
    ``batch`` batch with every task, fresh at every step, which those settings would change."""
    if on := [f"{key}={value}" for key, value in others.items() if value]:
        raise ValueError(f"{name} attacks each {batch} batch with every task, fresh at every step; it does not"
                         f" combine with {', '.join(on)}.")


def read_run_config(workdir: str) -> TrainConfig:
    """The `TrainConfig` of the training run in ``workdir`` (its ``config.json``); raises
    FileNotFoundError naming the workdir when it has none."""
    path = os.path.join(workdir, CONFIG_FILE)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{workdir!r} has no {CONFIG_FILE}; expected the workdir of a training run.")
    with open(path, encoding="utf-8") as handle:
        return TrainConfig.from_json(handle.read())
