"""Every method trains in the one loop; runs resume, stop on NaN and refuse conflicting settings."""
import json
import os

import numpy as np
import pytest

from metaadv_tf.training import METHODS, MetaConfig, TrainConfig, Trainer, TrainingDivergedError, read_run_config


def tiny_config(method: str = "mat", **overrides) -> TrainConfig:
    """A configuration that trains in seconds: a narrow CNN on 256 Fashion-MNIST images."""
    settings = dict(
        method=method, model="cnn", model_args={"width": 4}, train_examples=256, steps=3, epochs=None,
        batch_size=16, train_attacks="fgsm,pgd_linf(steps=2)", checkpoint_every=2, log_every=1,
        meta=MetaConfig(num_tasks=2, support_size=4, query_size=4),
    )
    settings.update(overrides)
    return TrainConfig(**settings)


def weights_of(trainer: Trainer) -> list[np.ndarray]:
    return [np.array(v.value) for v in trainer.model.weights]


@pytest.mark.parametrize("method", METHODS)
def test_every_method_trains_and_checkpoints(method, tmp_path):
    # msd takes steepest-descent steps over Lp attacks with a shared step count (no fgsm)
    attacks = {"msd": "pgd_linf(steps=2),pgd_l2(steps=2)"}.get(method, "fgsm,pgd_linf(steps=2)")
    trainer = Trainer(tiny_config(method, train_attacks=attacks), str(tmp_path))
    before = weights_of(trainer)
    result = trainer.train(progress=False)
    assert result.steps == 3 and np.isfinite(result.last_loss)
    assert result.images_seen == 3 * trainer.config.images_per_step
    assert any(not np.array_equal(b, a) for b, a in zip(before, weights_of(trainer)))
    assert trainer.train_step.experimental_get_tracing_count() == 1  # compiled once, no retracing
    assert os.path.exists(tmp_path / "final.weights.h5")
    assert sorted(os.listdir(tmp_path / "checkpoints")) == [
        "checkpoint", "ckpt-2.data-00000-of-00001", "ckpt-2.index", "ckpt-3.data-00000-of-00001",
        "ckpt-3.index",
    ]
    assert os.listdir(tmp_path / "tensorboard")


def test_resumed_run_equals_uninterrupted_run(tmp_path):
    """standard training is deterministic, so a resumed run must match an uninterrupted one."""
    whole = Trainer(tiny_config("standard", steps=4), str(tmp_path / "whole"))
    whole.train(progress=False)
    Trainer(tiny_config("standard", steps=2), str(tmp_path / "split")).train(progress=False)
    resumed = Trainer(tiny_config("standard", steps=4), str(tmp_path / "split"))
    assert resumed.restore() is not None and int(resumed.step.numpy()) == 2
    assert int(resumed.optimizer.iterations.numpy()) == 2
    assert resumed.train(progress=False).resumed_from == [2]
    assert int(resumed.step.numpy()) == 4 and int(resumed.optimizer.iterations.numpy()) == 4
    for a, b in zip(weights_of(whole), weights_of(resumed)):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def test_rerun_of_a_finished_run_returns_its_result_unchanged(tmp_path):
    """Rerunning a finished run keeps its record: last loss, wall time and start step included."""
    first = Trainer(tiny_config("standard", steps=2), str(tmp_path)).train(progress=False)
    written = (tmp_path / "result.json").read_text()
    again = Trainer(tiny_config("standard", steps=2), str(tmp_path)).train(progress=False)
    assert again == first and np.isfinite(again.last_loss) and again.start_step == 0
    assert first.resumed_from == []
    assert (tmp_path / "result.json").read_text() == written


def test_resumed_run_says_so(tmp_path, capsys):
    Trainer(tiny_config("standard", steps=2), str(tmp_path)).train()
    assert "Resumed" not in capsys.readouterr().err
    Trainer(tiny_config("standard", steps=3), str(tmp_path)).train()
    assert f"Resumed from step 2 of 3 in {tmp_path}\n" in capsys.readouterr().err


# Attacks without a random start. PGD's random start (``pgd_linf``'s default) draws from TensorFlow's
# global random stream, whose position checkpoints do not hold: a resumed run restarts it from
# ``seed``, so its random starts differ from an uninterrupted run's (see metaadv_tf.training.loop).
# Every other random number (task sampling, dropout's seed state) is checkpointed.
DETERMINISTIC_ATTACKS = "fgsm,bim(steps=2)"


def checkpointed_values(trainer: Trainer) -> dict[str, np.ndarray]:
    """Every value a checkpoint holds but the wall time: step counter, data position, task sampler
    state, model variables and optimizer variables (iteration, Adam's moments, ...). Variables are
    named by position and kind (``model/3/moving_mean``, ``optimizer/2/momentum``): Keras numbers
    the layers and optimizers of each new trainer anew."""
    values = {"step": trainer.step.numpy(), "batches_consumed": trainer.batches_consumed.numpy(),
              "sampler": trainer.sampler.state.numpy()}
    for prefix, variables in (("model", trainer.model.weights), ("optimizer", trainer.optimizer.variables)):
        for index, variable in enumerate(variables):
            kind = variable.path.rsplit("/", 1)[-1]
            kind = kind.rsplit("_", 1)[-1] if prefix == "optimizer" else kind
            values[f"{prefix}/{index}/{kind}"] = np.array(variable.value)
    return values


def test_meta_run_resumes_step_counter_sampler_and_optimizer_state(tmp_path):
    """A checkpoint restores every value it saved exactly, and a mat run resumed midway ends
    bit-identical to an uninterrupted run (its attacks draw no random numbers: see above)."""
    def config(steps: int) -> TrainConfig:
        return tiny_config("mat", steps=steps, train_attacks=DETERMINISTIC_ATTACKS)

    first = Trainer(config(2), str(tmp_path / "split"))
    first.train(progress=False)
    saved = checkpointed_values(first)  # the run's last save, ckpt-2, wrote these
    fresh = checkpointed_values(Trainer(config(4), str(tmp_path / "fresh")))
    resumed = Trainer(config(4), str(tmp_path / "split"))
    assert resumed.restore().endswith("ckpt-2")
    restored = checkpointed_values(resumed)
    assert restored.keys() == saved.keys()
    for name, value in saved.items():
        np.testing.assert_array_equal(restored[name], value, err_msg=name)
    # ... and none of the values compared is what a fresh run starts from
    moments = [name for name in saved if name.endswith(("/momentum", "/velocity"))]
    assert len(moments) == 2 * len(first.model.trainable_variables)  # Adam's first and second moments
    for name in ["step", "batches_consumed", "sampler", "optimizer/0/iteration", *moments]:
        assert not np.array_equal(saved[name], fresh[name]), name
    assert int(restored["step"]) == 2 and int(restored["optimizer/0/iteration"]) == 2

    resumed.train(progress=False)
    whole = Trainer(config(4), str(tmp_path / "whole"))
    whole.train(progress=False)
    ended, expected = checkpointed_values(resumed), checkpointed_values(whole)
    assert ended.keys() == expected.keys() and int(ended["step"]) == 4
    for name, value in expected.items():
        np.testing.assert_array_equal(ended[name], value, err_msg=name)


def test_adversarial_pools_train_and_refresh(tmp_path):
    config = tiny_config("mat", steps=4, meta=MetaConfig(support_size=4, query_size=4, pool_size=16,
                                                         pool_refresh=2))
    trainer = Trainer(config, str(tmp_path))
    result = trainer.train(progress=False)
    assert result.steps == 4
    assert int(trainer.batches_consumed.numpy()) == 2  # refreshed at steps 0 and 2
    pooled = trainer.pool.images.numpy()
    assert pooled.shape == (2, 16, 28, 28, 1) and not np.allclose(pooled[0], pooled[1])


def test_nan_loss_stops_and_keeps_last_good_checkpoint(tmp_path):
    config = tiny_config("standard", steps=30, learning_rate=1e12, optimizer="sgd", checkpoint_every=1)
    trainer = Trainer(config, str(tmp_path))
    with pytest.raises(TrainingDivergedError, match="diverged at step"):
        trainer.train(progress=False)
    latest = trainer.manager.latest_checkpoint
    assert latest is not None and int(latest.rsplit("-", 1)[1]) < 30
    check = Trainer(config, str(tmp_path))
    check.restore()
    assert all(np.isfinite(w).all() for w in weights_of(check))


def test_workdir_with_a_different_run_is_refused(tmp_path):
    Trainer(tiny_config("mat"), str(tmp_path))
    with pytest.raises(ValueError, match=r"different configuration \(method: 'mat' -> 'avg'\)"):
        Trainer(tiny_config("avg"), str(tmp_path))
    Trainer(tiny_config("mat", steps=10), str(tmp_path))  # more steps: a resumption, allowed


def test_config_round_trips_through_json():
    config = tiny_config("reptile", meta=MetaConfig(task_weights=(1.0, 3.0)))
    assert TrainConfig.from_json(config.to_json()) == config
    assert json.loads(config.to_json())["meta"]["task_weights"] == [1.0, 3.0]


def test_read_run_config_reads_a_workdir_and_names_one_without_a_run(tmp_path):
    config = tiny_config("mat", meta=MetaConfig(task_weights=(1.0, 3.0)))
    Trainer(config, str(tmp_path / "run"))
    assert read_run_config(str(tmp_path / "run")) == config
    with pytest.raises(FileNotFoundError, match=r"'.*empty' has no config.json; expected the workdir of a training run"):
        read_run_config(str(tmp_path / "empty"))


@pytest.mark.parametrize(
    "overrides, message",
    [
        (dict(method="maml"), r"Unknown method 'maml'.*Expected one of: standard, pgd_at"),
        (dict(strategy="tpu"), r"Unknown strategy 'tpu'.*default, mirrored, multi_worker"),
        (dict(steps=5, epochs=1.0), r"Give exactly one of steps and epochs"),
        (dict(steps=0), r"steps must be an integer >= 1. Received: steps=0"),
        (dict(eps=-0.1), r"eps must be a finite number > 0. Received: eps=-0.1"),
        (dict(batch_size=0), r"batch_size must be an integer >= 1"),
    ],
)
def test_bad_configs_are_rejected(overrides, message):
    with pytest.raises(ValueError, match=message):
        tiny_config(**overrides)


@pytest.mark.parametrize(
    "overrides, message",
    [
        (dict(meta=MetaConfig(num_tasks=3)), r"num_tasks=3 is larger than the number of training attacks \(2"),
        (dict(train_attacks="fgsm,nope"), r"Unknown attack 'nope'"),
        (dict(method="standard", batch_size=512), r"needs 512 training images but fashion_mnist has 256"),
        (dict(method="avg", meta=MetaConfig(pool_size=16, support_size=4, query_size=4)),
         r"pools .* work with the methods mat, fomaml, reptile"),
    ],
)
def test_bad_runs_are_rejected_before_training(overrides, message, tmp_path):
    with pytest.raises(ValueError, match=message):
        Trainer(tiny_config(**overrides), str(tmp_path))


def test_task_attention_and_learned_inner_rates_resume_from_the_checkpoint(tmp_path):
    config = tiny_config("mat", steps=2, meta=MetaConfig(support_size=4, query_size=4, task_attention=True,
                                                         learn_inner_rates=True, inner_rates_learning_rate=0.1))
    trainer = Trainer(config, str(tmp_path))
    trainer.train(progress=False)
    rates = trainer.method.rates.log_rates.numpy()
    assert not np.allclose(rates, np.log(0.05))  # trained
    resumed = Trainer(config, str(tmp_path))
    resumed.restore()
    np.testing.assert_array_equal(resumed.method.rates.log_rates.numpy(), rates)
    for saved, restored in zip(trainer.method.attention.parameters, resumed.method.attention.parameters):
        np.testing.assert_array_equal(restored.numpy(), saved.numpy())
    assert int(resumed.method.rates.optimizer.iterations.numpy()) == 2


@pytest.mark.parametrize("query", [{"memory_steps": 1, "cross_task_query": True}, {"worst_case_query": True},
                                   {"worst_case_query": True, "variation_weight": 0.5},
                                   {"worst_case_query": True, "num_tasks": 3},
                                   {"worst_case_query": True, "worst_case_anchor": True, "pre_adaptation_weight": 1.0}],
                         ids=["cross_task_with_memory", "worst_case", "worst_case_with_variation",
                              "worst_case_every_task", "worst_case_anchor"])
def test_query_variants_train_across_threat_models(tmp_path, query):
    """The study's cross-task (MLDG, with the memory), worst-case query and worst-case anchor
    variants trace and train: threat models differ per task; every task may be sampled at each step."""
    config = tiny_config("mat", steps=2, train_attacks="pgd_linf(steps=2),pgd_l1(steps=2),spatial(samples=2)",
                         meta=MetaConfig(support_size=4, query_size=4, **query))
    result = Trainer(config, str(tmp_path)).train(progress=False)
    assert result.steps == 2 and np.isfinite(result.last_loss)
