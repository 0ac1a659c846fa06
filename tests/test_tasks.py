"""TaskDistribution: task labels, weights and sampling."""
from __future__ import annotations

import pytest
import tensorflow as tf

from metaadv_tf.attack_specs import parse_attacks
from metaadv_tf.meta.tasks import TaskDistribution


def test_one_attack_at_several_eps_gives_distinct_tasks():
    tasks = TaskDistribution(parse_attacks("fgsm,pgd_linf(eps=0.05,steps=3),pgd_linf(eps=0.15,steps=3)"))
    assert tasks.names == ["fgsm", "pgd_linf(eps=0.05)", "pgd_linf(eps=0.15)"]
    drawn = tasks.sample(tf.random.Generator.from_seed(0), 3).numpy()
    assert sorted(drawn.tolist()) == [0, 1, 2]  # without replacement


def test_one_attack_at_several_step_counts_is_labelled_by_the_settings_that_differ():
    tasks = TaskDistribution(parse_attacks("pgd_linf(steps=3),pgd_linf(steps=5),pgd_linf(eps=0.2)"))
    assert tasks.names == ["pgd_linf(eps=0.1, step_size=0.0833333, steps=3)",
                           "pgd_linf(eps=0.1, step_size=0.05, steps=5)", "pgd_linf(eps=0.2)"]


def test_the_same_task_twice_is_refused_by_name():
    with pytest.raises(ValueError, match=r"'pgd_linf\(eps=0.1\)' appears twice"):
        TaskDistribution(parse_attacks("pgd_linf(steps=3),pgd_linf(eps=0.1, steps=3)"))
