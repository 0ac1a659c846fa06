"""The training loop: one compiled step per method, checkpoints, summaries, resume, faults.

A run lives in a workdir: ``config.json`` (the run's definition), ``checkpoints/`` (a
`tf.train.CheckpointManager`: model, optimizer, step, data position, task sampler, wall time, and
the method's own state: pools, perturbation memory, task attention, learned inner rates),
``tensorboard/``, ``resumes.json`` once it resumed, and, when done, ``final.weights.h5`` and ``result.json``. With
``validation_examples`` it also holds ``validation.json`` and ``best.weights.h5``
(`metaadv_tf.training.selection`); the in-training evaluation (held-out training images, and
``eval_attacks`` on test images) runs every ``eval_every`` steps and at the end. Rerunning with the same
workdir resumes from the latest checkpoint listed in ``checkpoints/checkpoint``, after reading all of
it back (a finished run returns its ``result.json`` and changes nothing): a damaged state file or
latest checkpoint raises `CheckpointError` naming the file, and nothing is loaded. Leftovers of a
save that was killed are never listed there, so they are ignored (the next save of that step
overwrites them). A resumed run continues as an uninterrupted one would,
except for the attacks' random numbers (e.g. PGD's random starts): stateful TensorFlow random ops,
seeded by ``seed`` but with positions that are not checkpointed, so after a resume they follow a
different, equally distributed stream; ``resumes.json`` lists the steps resumed from, so a result says
whether it is an uninterrupted run of its seed. A non-finite loss stops the run before anything is saved, so
the last good checkpoint stays the latest. SIGINT/SIGTERM save a checkpoint and stop.

BatchNorm statistics policy: the moving statistics follow every training-mode loss forward pass
(inner support passes, outer query passes, attack-augmented batches); attack-generation passes do
not move them. Under a distribution strategy they are averaged across replicas after each step.

Distribution strategies split each batch between the replicas and average their gradients; for the
meta methods each replica gets a part of every task's support and query examples, and the inner
loop's gradients are averaged too (`metaadv_tf.meta.functional.adapt`), so a run without BatchNorm
computes what one device computes on the same batches. BatchNorm normalizes with each replica's own
batch statistics, so with it the replicas' steps differ slightly from one device's.
"""
from __future__ import annotations

import dataclasses
import functools
import glob
import json
import math
import os
import re
import signal
import sys
import time
from typing import Iterator

import keras
import tensorflow as tf

from metaadv_tf import data
from metaadv_tf.attack_specs import parse_attacks
from metaadv_tf.io_utils import atomic_save, atomic_write_text, read_json
from metaadv_tf.meta.functional import current_values, model_fn
from metaadv_tf.meta.memory import ContinuedAttacks, PerturbationMemory
from metaadv_tf.meta.pools import AdversarialPool
from metaadv_tf.models import build_model
from metaadv_tf.training.config import (CONFIG_FILE, FINAL_WEIGHTS, META_METHODS, RESULT_FILE, RESUMES_FILE,
                                        TrainConfig, read_run_config)
from metaadv_tf.training.methods import MamlMethod, MetaMethod, Method, build_method
from metaadv_tf.training.optimizers import make_optimizer
from metaadv_tf.training.selection import ValidationLog
from metaadv_tf.training.strategies import is_chief, make_strategy, reduce_state

# Settings that may change between a run and its resumption (the rest define the run).
RESUMABLE_CHANGES = ("steps", "epochs", "checkpoint_every", "log_every", "eval_every", "eval_examples",
                     "eval_attacks")
CHECKPOINTS_KEPT = 3  # the CheckpointManager's max_to_keep


class TrainingDivergedError(RuntimeError):
    """The loss or the gradient became NaN or Inf."""


class CheckpointError(RuntimeError):
    """The workdir's checkpoint state file or latest checkpoint is damaged; nothing was loaded."""


@dataclasses.dataclass(frozen=True)
class TrainResult:
    """How a run ended: steps done, images seen, wall time, last loss, and why it stopped.

    ``start_step`` is the step this session started from: the latest checkpoint's when it resumed.
    ``best_step`` and ``best_validation_accuracy`` (union over the validation attacks) describe
    ``best.weights.h5`` when the run validates (``validation_examples``), else they are None.
    ``resumed_from`` lists the step every later session resumed from (empty for a run that ran through;
    None in results written before it was recorded).
    """

    steps: int
    start_step: int
    images_seen: int
    train_seconds: float
    last_loss: float
    stopped_by_signal: int | None
    weights_path: str | None
    best_step: int | None = None
    best_validation_accuracy: float | None = None
    resumed_from: list[int] | None = None


class Trainer:
    """Builds the model, optimizer and method of ``config`` and trains them in ``workdir``."""

    def __init__(self, config: TrainConfig, workdir: str) -> None:
        self.config = config
        self.workdir = workdir
        keras.utils.set_random_seed(config.seed)
        self.strategy = make_strategy(config.strategy)
        self.chief = is_chief(self.strategy)
        _check_workdir_config(workdir, config, write=self.chief)
        self.info = data.get_info(config.dataset)
        self.train_size = config.available_train_examples - config.validation_examples
        with self.strategy.scope():
            self.model = build_model(
                config.model, input_shape=self.info.image_shape, num_classes=self.info.num_classes,
                **model_arguments(config),
            )
            self.optimizer = make_optimizer(config, self.total_steps)
            self.optimizer.build(self.model.trainable_variables)
            self.method: Method = build_method(self.model, config, self.strategy.num_replicas_in_sync)
        self.pool = self._make_pool()
        self.memory = self._make_memory()
        self.step = tf.Variable(0, dtype=tf.int64, trainable=False)
        self.batches_consumed = tf.Variable(0, dtype=tf.int64, trainable=False)
        self.train_seconds = tf.Variable(0.0, dtype=tf.float64, trainable=False)
        self.sampler = tf.random.Generator.from_seed(config.seed)
        _check_checkpoint_state(self._checkpoint_dir())
        self.checkpoint = tf.train.Checkpoint(
            model=self.model, optimizer=self.optimizer, step=self.step,
            batches_consumed=self.batches_consumed, train_seconds=self.train_seconds, sampler=self.sampler,
            **({"pool": self.pool} if self.pool else {}),
            **({"memory": self.memory} if self.memory else {}), **self.method.modules,
        )
        self.manager = tf.train.CheckpointManager(self.checkpoint, self._checkpoint_dir(),
                                                  max_to_keep=CHECKPOINTS_KEPT)
        self.validation = ValidationLog(workdir) if self.chief and config.validation_examples else None
        self.val_attacks = (parse_attacks(config.val_attacks or config.train_attacks)
                            if config.validation_examples else [])
        # clean images read per data batch: a step's batch, or a pool refresh's images
        self.data_batch_size = config.meta.pool_size if self.pool else config.images_per_step
        if self.train_size < self.data_batch_size:
            raise ValueError(
                f"A data batch needs {self.data_batch_size} training images but {config.dataset}"
                f" has {self.train_size} (train_examples={config.train_examples},"
                f" validation_examples={config.validation_examples}):"
                " lower the batch size or use more examples."
            )
        compile_ = lambda fn: tf.function(fn, jit_compile=config.jit_compile)  # noqa: E731
        self.train_step = compile_(self._distributed_step)
        self._pool_step = compile_(self._distributed_pool_step)
        self._refresh_pool = compile_(self._refresh_pool_eagerly)
        self._signal: int | None = None
        self._unsaved_since = time.time()  # start of the wall time not yet in train_seconds

    @property
    def total_steps(self) -> int:
        """Steps the run takes in all (``steps``, or ``epochs`` of the training set)."""
        if self.config.steps is not None:
            return self.config.steps
        return max(1, math.ceil(self.config.epochs * self.steps_per_epoch))

    @property
    def steps_per_epoch(self) -> int:
        """Steps whose loss sees as many images as the training set has."""
        return max(1, self.train_size // self.config.images_per_step)

    def restore(self) -> str | None:
        """Restores the latest checkpoint, if any, once all of it reads back intact; returns its path.

        Raises CheckpointError (naming the damaged file, nothing loaded) when it does not.
        """
        latest = self.manager.latest_checkpoint
        if latest:
            problem = checkpoint_problem(latest)
            if problem:
                raise CheckpointError(self._damaged_message(latest, problem))
            self.checkpoint.restore(latest).assert_existing_objects_matched()
        return latest

    def _damaged_message(self, latest: str, problem: str) -> str:
        """What is wrong with the latest checkpoint, and how to resume from an intact earlier one."""
        state = os.path.join(self.manager.directory, "checkpoint")
        intact = [os.path.basename(path) for path in reversed(self.manager.checkpoints)
                  if path != latest and checkpoint_problem(path) is None]
        remedy = (f"or set model_checkpoint_path in {state} to an intact earlier checkpoint"
                  f" ({', '.join(intact)}) to resume from it" if intact
                  else "or train again in a new workdir (no earlier checkpoint is intact)")
        return f"Checkpoint {latest} is damaged and was not loaded: {problem}. Restore the file, {remedy}."

    def train(self, progress: bool = True) -> TrainResult:
        """Runs (or resumes) the training to ``total_steps``; see the module docstring.

        ``progress`` shows a progress bar, and says so on stderr when the run resumed.
        """
        from tqdm import tqdm

        self.restore()
        start_step = int(self.step.numpy())
        finished = self._finished_result()
        if finished is not None:
            return finished
        if start_step and self.chief:
            self._record_resume(start_step)
            if progress:
                print(f"Resumed from step {start_step} of {self.total_steps} in {self.workdir}", file=sys.stderr,
                      flush=True)
        writer = (tf.summary.create_file_writer(os.path.join(self.workdir, "tensorboard")) if self.chief
                  else tf.summary.create_noop_writer())
        bar = tqdm(total=self.total_steps, initial=start_step, disable=not progress, unit="step",
                   dynamic_ncols=True)
        previous_handlers = self._install_signal_handlers()
        loss = float("nan")
        try:
            self._unsaved_since = time.time()
            if self.validation:
                self.validation.resume(start_step, self.model)
                if self._evaluation_due(start_step) and not self.validation.has(start_step):
                    self._evaluate(writer, start_step)  # the session before stopped in between
            interval_start, interval_steps = time.time(), 0
            batches = self.batches()
            while int(self.step.numpy()) < self.total_steps and self._signal is None:
                metrics = self.next_step(batches)
                loss = self._check_finite(metrics)
                step, interval_steps = int(self.step.numpy()), interval_steps + 1
                bar.update(1)
                bar.set_postfix(loss=f"{loss:.4f}")
                if step % self.config.log_every == 0:
                    rate = interval_steps * self.config.images_per_step / (time.time() - interval_start)
                    self._write_summaries(writer, step, metrics, rate)
                    interval_start, interval_steps = time.time(), 0
                if self._evaluation_due(step):
                    if self.config.validation_examples:
                        self._save()  # a validated step has a checkpoint (see training.selection)
                    self._evaluate(writer, step)
                if step % self.config.checkpoint_every == 0:
                    self._save()
            self._save()
        finally:
            bar.close()
            writer.close()
            self._restore_signal_handlers(previous_handlers)
        return self._finish(loss, start_step)

    # --- the compiled step -------------------------------------------------------------------

    def next_step(self, batches: Iterator) -> dict:
        """Runs and counts one step: on the next data batch, or (pools) on pooled examples."""
        if self.pool is None:
            metrics = self.train_step(*next(batches))
            self.batches_consumed.assign_add(1)
        else:
            if int(self.step.numpy()) % self.config.meta.pool_refresh == 0:
                self._refresh_pool(*next(batches))
                self.batches_consumed.assign_add(1)
            metrics = self._pool_step()
        self.step.assign_add(1)
        return metrics

    def _distributed_step(self, x, y, indices=None, sample=None):
        """One training step on a (distributed) batch, with the images' indices when a perturbation
        memory needs them: the step compiled as ``train_step``."""
        if sample is None:
            sample = self.method.sample_tasks(self.sampler)
        if indices is not None:
            sample = {**sample, "indices": indices}
        state, loss, grad_norm, task_losses, task_weights = self.strategy.run(
            self._replica_step, args=(x, y, sample))
        for variable, value in zip(self.model.non_trainable_variables, state):
            variable.assign(reduce_state(self.strategy, value))
        mean = tf.distribute.ReduceOp.MEAN
        return {
            "loss": self.strategy.reduce(mean, loss, axis=None),
            "grad_norm": self.strategy.reduce(mean, grad_norm, axis=None),
            "task_losses": self.strategy.reduce(mean, task_losses, axis=None),
            "task_weights": self.strategy.reduce(mean, task_weights, axis=None),
            "task_ids": sample["tasks"],
        }

    def _distributed_pool_step(self):
        sample = self.method.sample_tasks(self.sampler)
        per_task = self.config.meta.support_size + self.config.meta.query_size
        x, y = self.pool.sample(self.sampler, sample["tasks"], per_task)
        return self._distributed_step(x, y, sample=sample)

    def _refresh_pool_eagerly(self, x, y):
        self.pool.refresh(model_fn(self.method.attack_model, *current_values(self.model)), x, y)

    def _make_pool(self) -> AdversarialPool | None:
        if not self.config.meta.pool_size:
            return None
        if self.config.method not in META_METHODS or self.config.strategy != "default":
            raise ValueError(
                f"Adversarial pools (pool_size={self.config.meta.pool_size}) work with the methods"
                f" {', '.join(META_METHODS)} on the default strategy. Received: method="
                f"{self.config.method!r}, strategy={self.config.strategy!r}"
            )
        self.method.adversarial = False
        return AdversarialPool(self.method.tasks, self.config.meta.pool_size, self.info.image_shape)

    def _make_memory(self) -> PerturbationMemory | None:
        steps = self.config.meta.memory_steps
        if not steps:
            return None
        if not isinstance(self.method, MamlMethod) or self.config.strategy != "default":
            raise ValueError(
                f"A perturbation memory (memory_steps={steps}) works with the methods mat and"
                f" fomaml on the default strategy. Received: method={self.config.method!r},"
                f" strategy={self.config.strategy!r}"
            )
        per_task = self.config.meta.memory_per_task
        memory = PerturbationMemory(self.train_size, self.info.image_shape,
                                    slots=len(self.method.tasks) if per_task else 1)
        self.method.memory = ContinuedAttacks(memory, steps, per_task)
        return memory

    def _replica_step(self, x, y, sample):
        params = [tf.identity(v.value) for v in self.model.trainable_variables]
        state = [tf.identity(v.value) for v in self.model.non_trainable_variables]
        result = self.method.step(params, state, x, y, sample)
        replicas = float(self.strategy.num_replicas_in_sync)
        grads = [g / replicas for g in result.grads]  # the optimizer sums them across replicas
        self.optimizer.apply_gradients(zip(grads, self.model.trainable_variables))
        return (result.state, result.loss, tf.linalg.global_norm(result.grads), result.task_losses,
                result.task_weights)

    # --- data --------------------------------------------------------------------------------

    def batches(self) -> Iterator[tuple[tf.Tensor, tf.Tensor]]:
        """Batches from the current data position on, epoch after epoch (same order on resume),
        of the first ``train_size`` images: never the held-out validation images after them."""
        per_epoch = self.train_size // self.data_batch_size
        while True:
            epoch, offset = divmod(int(self.batches_consumed.numpy()), per_epoch)
            dataset = data.load(
                self.config.dataset, "train", batch_size=self.data_batch_size, shuffle=True,
                seed=self.config.seed, epoch=epoch, num_examples=self.train_size,
                drop_remainder=True, with_indices=self.memory is not None,
            ).skip(offset)
            order = self._replica_order()
            if order is not None:
                dataset = dataset.map(lambda x, y: (tf.gather(x, order), tf.gather(y, order)))
            yield from self.strategy.experimental_distribute_dataset(dataset)

    def _replica_order(self) -> list[int] | None:
        """For a meta method on R > 1 replicas, the order of a batch's images that gives replica r
        the r-th R-th of every task's support and of its query examples (a distributed batch is cut
        into R consecutive parts), so that together the replicas hold the one-device task batch;
        None otherwise. (The inner loop averages its gradients over the replicas: see `adapt`.)"""
        replicas = self.strategy.num_replicas_in_sync
        if replicas == 1 or not isinstance(self.method, MetaMethod):
            return None
        meta = self.config.meta
        support, query = meta.support_size // replicas, meta.query_size // replicas
        per_task = meta.support_size + meta.query_size
        return [task * per_task + index
                for replica in range(replicas) for task in range(meta.num_tasks)
                for index in [*range(replica * support, (replica + 1) * support),
                              *range(meta.support_size + replica * query,
                                     meta.support_size + (replica + 1) * query)]]

    # --- checks, summaries, checkpoints ------------------------------------------------------

    def _check_finite(self, metrics: dict) -> float:
        loss, grad_norm = float(metrics["loss"]), float(metrics["grad_norm"])
        if not (math.isfinite(loss) and math.isfinite(grad_norm)):
            raise TrainingDivergedError(
                f"Training diverged at step {int(self.step.numpy())}: loss={loss},"
                f" gradient norm={grad_norm}. Nothing was saved after the last good checkpoint"
                f" ({self.manager.latest_checkpoint}), which stays the latest. Lower the learning"
                f" rate (learning_rate={self.config.learning_rate}) and train in a new workdir:"
                " a workdir's learning rate is fixed (it is part of its checkpoints)."
            )
        return loss

    def _write_summaries(self, writer, step: int, metrics: dict, images_per_second: float) -> None:
        names = getattr(self.method, "tasks", None)
        with writer.as_default(step=step):
            tf.summary.scalar("train/loss", metrics["loss"])
            tf.summary.scalar("train/grad_norm", metrics["grad_norm"])
            tf.summary.scalar("train/images_per_second", images_per_second)
            tf.summary.scalar("train/learning_rate", self.optimizer.learning_rate)
            if names is not None:
                for task_id, task_loss, weight in zip(metrics["task_ids"].numpy(),
                                                      metrics["task_losses"].numpy(),
                                                      metrics["task_weights"].numpy()):
                    tf.summary.scalar(f"task_loss/{names.names[task_id]}", task_loss)
                    tf.summary.scalar(f"task_weight/{names.names[task_id]}", weight)

    def _evaluation_due(self, step: int) -> bool:
        """Whether the in-training evaluation runs at ``step``: every ``eval_every`` steps and at
        the end, when it is on (``eval_every`` or ``validation_examples``)."""
        if not (self.config.eval_every or self.config.validation_examples) or step == 0:
            return False
        return step == self.total_steps or bool(self.config.eval_every and step % self.config.eval_every == 0)

    @functools.cached_property
    def _eval_sets(self) -> dict[str, tuple]:
        """{summary prefix: (images, labels, attacks)} of the in-training evaluation, read once per
        run: ``eval``, test images (when ``eval_every``), and on the chief ``validation``, the
        held-out last ``validation_examples`` of the run's training images."""
        sets = {}
        if self.config.eval_every:
            x, y = data.load_arrays(self.config.dataset, "test", self.config.eval_examples)
            sets["eval"] = (x, y, parse_attacks(self.config.eval_attacks))
        if self.validation:
            x, y = data.load_arrays(self.config.dataset, "train", self.config.validation_examples,
                                    offset=self.train_size)
            sets["validation"] = (x, y, self.val_attacks)
        return sets

    def _evaluate(self, writer, step: int) -> None:
        """Evaluates every set of ``_eval_sets`` into TensorBoard; records the validation."""
        from metaadv_tf.evaluation import evaluate

        for prefix, (x, y, attacks) in self._eval_sets.items():
            report = evaluate(self.model, x, y, attacks)
            with writer.as_default(step=step):
                tf.summary.scalar(f"{prefix}/clean_accuracy", report.clean_accuracy)
                tf.summary.scalar(f"{prefix}/worst_case_accuracy", report.worst_case_accuracy)
                for name, accuracy in report.robust_accuracy.items():
                    tf.summary.scalar(f"{prefix}/robust_accuracy/{name}", accuracy)
            if prefix == "validation":
                self.validation.add(step, report, self.model)

    def _save(self) -> None:
        """Adds the wall time since the last save and saves a checkpoint unless this step has one."""
        now = time.time()
        self.train_seconds.assign_add(now - self._unsaved_since)
        self._unsaved_since = now
        step, latest = int(self.step.numpy()), self.manager.latest_checkpoint
        if latest is None or int(latest.rsplit("-", 1)[-1]) != step:
            self.manager.save(checkpoint_number=step)

    def _checkpoint_dir(self) -> str:
        """The chief's checkpoints are the run's; other workers save (a collective) to their own."""
        if self.chief:
            return os.path.join(self.workdir, "checkpoints")
        task_id = self.strategy.cluster_resolver.task_id
        return os.path.join(self.workdir, f".worker-{task_id}", "checkpoints")

    def _finished_result(self) -> TrainResult | None:
        """The stored ``result.json`` when the restored run has reached ``total_steps``, else None."""
        if int(self.step.numpy()) < self.total_steps:
            return None
        stored = read_json(os.path.join(self.workdir, RESULT_FILE))
        return None if stored is None else TrainResult(**stored)

    def _resumes(self) -> list[int]:
        """The steps this run resumed from so far, oldest first (``resumes.json``)."""
        return read_json(os.path.join(self.workdir, RESUMES_FILE)) or []

    def _record_resume(self, step: int) -> None:
        """Adds ``step`` to ``resumes.json``: this session resumed from it."""
        atomic_write_text(os.path.join(self.workdir, RESUMES_FILE), json.dumps([*self._resumes(), step]))

    def _finish(self, loss: float, start_step: int) -> TrainResult:
        step = int(self.step.numpy())
        weights_path = None
        if step >= self.total_steps and self.chief:
            weights_path = os.path.join(self.workdir, FINAL_WEIGHTS)
            atomic_save(weights_path, self.model.save_weights)
        best = self.validation.best if self.validation else None
        result = TrainResult(
            steps=step, start_step=start_step, images_seen=step * self.config.images_per_step,
            train_seconds=float(self.train_seconds.numpy()), last_loss=loss,
            stopped_by_signal=self._signal, weights_path=weights_path,
            best_step=best["step"] if best else None,
            best_validation_accuracy=best["union"] if best else None,
            resumed_from=self._resumes(),
        )
        if self.chief:
            atomic_write_text(os.path.join(self.workdir, RESULT_FILE),
                              json.dumps(dataclasses.asdict(result), indent=2))
        return result

    def _install_signal_handlers(self) -> dict:
        def handler(signum, frame):
            del frame
            self._signal = signum

        previous = {}
        for signum in (signal.SIGINT, signal.SIGTERM):
            try:
                previous[signum] = signal.signal(signum, handler)
            except ValueError:  # not the main thread: leave signals alone
                pass
        return previous

    @staticmethod
    def _restore_signal_handlers(previous: dict) -> None:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def train(config: TrainConfig, workdir: str, progress: bool = True) -> TrainResult:
    """Trains (or resumes) ``config`` in ``workdir``. Example::

        result = train(TrainConfig(method="mat", steps=100), "runs/cnn_mat")
    """
    return Trainer(config, workdir).train(progress=progress)


def model_arguments(config: TrainConfig) -> dict:
    """The architecture arguments a run builds its model with: ``model_args`` plus those of the
    task-conditioning extensions when they are on (input shape and classes come from the data)."""
    meta = config.meta
    if not meta.conditioned:
        return dict(config.model_args)
    from metaadv_tf.attack_specs import split_specs

    return {**config.model_args, "num_tasks": len(split_specs(config.train_attacks)),
            "task_encoding": meta.task_encoding, "meta_batchnorm": meta.meta_batchnorm,
            "meta_dropout": meta.meta_dropout}


def listed_checkpoint_step(workdir: str) -> int:
    """The step of the latest checkpoint listed in ``workdir``'s state file (0: none).

    Safe while the run is replacing the file: it is read in one ``open`` (TensorFlow's reader
    takes the size from the path and the bytes from the file it opened, so it can see a state
    file that was replaced in between cut short).
    """
    try:
        with open(os.path.join(workdir, "checkpoints", "checkpoint"), encoding="utf-8") as handle:
            text = handle.read()
    except FileNotFoundError:
        return 0
    found = re.search(r'^model_checkpoint_path: ".*-(\d+)"$', text, re.MULTILINE)
    return int(found[1]) if found else 0


def checkpoint_problem(prefix: str) -> str | None:
    """What is wrong with checkpoint ``prefix``, naming the file, or None when it is complete: its
    index and data files exist and every tensor reads back with its stored size and checksum."""
    index = f"{prefix}.index"
    if not os.path.isfile(index):
        return f"its index file {index} is missing"
    try:
        reader = tf.train.load_checkpoint(prefix)
    except tf.errors.OpError as error:
        return f"its index file {index} is unreadable ({error.message})"
    data = sorted(glob.glob(f"{glob.escape(prefix)}.data-*"))
    try:
        for name in reader.get_variable_to_shape_map():
            reader.get_tensor(name)
    except (tf.errors.OpError, IndexError) as error:  # IndexError: a truncated data file
        reason = error.message if isinstance(error, tf.errors.OpError) else str(error)
        if not data:
            return f"its data file {prefix}.data-* is missing ({reason})"
        files = ", ".join(f"{path} ({os.path.getsize(path)} bytes)" for path in data)
        return f"its data file {files} is truncated or corrupted ({reason})"
    return None


def _check_checkpoint_state(directory: str) -> None:
    """Raises CheckpointError if ``directory``'s ``checkpoint`` state file exists but names no
    checkpoint (TensorFlow would ignore it, and the run would silently start again at step 0)."""
    path = os.path.join(directory, "checkpoint")
    if not os.path.exists(path):
        return
    logger, level = tf.get_logger(), tf.get_logger().level
    logger.setLevel("ERROR")  # TensorFlow warns "Checkpoint ignored"; here it is an error instead
    try:
        state = tf.train.get_checkpoint_state(directory)
    except ValueError:  # parsed, but without model_checkpoint_path
        state = None
    finally:
        logger.setLevel(level)
    if state is None:
        raise CheckpointError(
            f"The checkpoint state file {path} is damaged: no latest checkpoint can be read from it."
            ' Nothing was loaded; restore it, or write model_checkpoint_path: "ckpt-N" into it (N: the'
            " newest intact checkpoint beside it) to resume from that checkpoint."
        )


def _check_workdir_config(workdir: str, config: TrainConfig, write: bool) -> None:
    """Checks a workdir's ``config.json`` describes the same run; ``write`` (re)writes it."""
    path = os.path.join(workdir, CONFIG_FILE)
    if os.path.exists(path):
        saved = read_run_config(workdir)
        changed = [
            f"{field.name}: {getattr(saved, field.name)!r} -> {getattr(config, field.name)!r}"
            for field in dataclasses.fields(TrainConfig)
            if field.name not in RESUMABLE_CHANGES and getattr(saved, field.name) != getattr(config, field.name)
        ]
        if changed:
            raise ValueError(
                f"Workdir {workdir!r} holds a run with a different configuration ({'; '.join(changed)})."
                " Use a new workdir, or the same settings to resume."
            )
    if write:
        atomic_write_text(path, config.to_json())

