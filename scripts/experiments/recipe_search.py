"""Search for a better MAT recipe: changes to the cnn_mat zoo recipe, measured with the zoo protocol.

    python scripts/experiments/recipe_search.py --output=results/recipe_search.md

Each recipe changes what the literature suggests trying when MAT falls short on unseen attacks
(stronger inner attacks, more tasks, longer inner loops, task attention, then combinations with
the best of these, then anchoring θ when long inner loops leave it weak, then pools) and keeps
the rest of `cnn_mat`'s recipe from its card: the small CNN, Fashion-MNIST, the same images seen
per step and in total, seed (``--seed`` repeats recipes with another one, to measure run-to-run
noise). Every recipe is evaluated with the zoo's standard protocol, so its row compares directly
with the zoo models listed under --reference (their rows come from their cards). A recipe's run
can be published as is: `python scripts/publish_model.py --workdir=runs/recipes/NAME --name=...`.
Runs resume when the script is rerun.
"""
from __future__ import annotations

import dataclasses
import json
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from absl import app, flags  # noqa: E402

from metaadv_tf import flag_utils, zoo  # noqa: E402
from metaadv_tf.experiments import group_table, train_and_evaluate, write_results  # noqa: E402
from metaadv_tf.training import TrainConfig  # noqa: E402

FLAGS = flags.FLAGS
flags.DEFINE_string("base", "cnn_mat", "Zoo model whose training recipe the search varies.")
flags.DEFINE_list("recipes", None, "Recipes to run (default: all).")
flags.DEFINE_list("reference", ["cnn_mat", "cnn_pgd_at", "cnn_avg", "cnn_max"], "Zoo rows shown beside.")
flags.DEFINE_integer("seed", None, "Seed of every recipe (default: the base recipe's); runs with another"
                     " seed live in WORKDIR/NAME_seedS and their rows say the seed.")
flags.DEFINE_integer("eval_examples", 1000, "Test examples (the zoo protocol's N).")
flags.DEFINE_string("workdir", "runs/recipes", "Where the runs live.")
flags.DEFINE_string("output", "results/recipe_search.md", "The table (.json beside it).")

# name -> (what changes, TrainConfig overrides, MetaConfig overrides); tasks stay Linf and of the
# seen families (fgsm, pgd_linf, bim), so the unseen attacks stay unseen.
RECIPES: dict[str, tuple[str, dict, dict]] = {
    "stronger_tasks": ("PGD-7 instead of PGD-3 as the second task",
                       {"train_attacks": "fgsm,pgd_linf(steps=7)"}, {}),
    "more_tasks": ("4 tasks of 16 + 16 images: PGD-3 at eps 0.05 / 0.1 / 0.15, and FGSM",
                   {"train_attacks": "fgsm,pgd_linf(eps=0.05,steps=3),pgd_linf(steps=3),"
                                     "pgd_linf(eps=0.15,steps=3)"},
                   {"num_tasks": 4, "support_size": 16, "query_size": 16}),
    "longer_inner": ("3 inner SGD steps instead of 1", {}, {"inner_steps": 3}),
    "task_attention": ("learned task weights in the meta-gradient", {}, {"task_attention": True}),
    "longest_inner": ("5 inner SGD steps instead of 1", {}, {"inner_steps": 5}),
    # combinations of the best single changes
    "stronger_longer": ("stronger_tasks with 3 inner SGD steps",
                        {"train_attacks": "fgsm,pgd_linf(steps=7)"}, {"inner_steps": 3}),
    "stronger_wider": ("stronger_tasks plus PGD-7 at eps 0.15 as a third task (2 of the 3 drawn per step)",
                       {"train_attacks": "fgsm,pgd_linf(steps=7),pgd_linf(eps=0.15,steps=7)"}, {}),
    # longer inner loops train θ only through θ'_i and can leave θ itself weak: anchor θ with its own
    # adversarial support loss (pre_adaptation_weight), or take shorter or smaller inner steps
    "inner2": ("2 inner SGD steps instead of 1", {}, {"inner_steps": 2}),
    "anchored_inner3": ("longer_inner plus θ's own support loss in the meta-loss (pre_adaptation_weight 1)",
                        {}, {"inner_steps": 3, "pre_adaptation_weight": 1.0}),
    "anchored_stronger_longer": ("stronger_longer plus θ's own support loss (pre_adaptation_weight 1)",
                                 {"train_attacks": "fgsm,pgd_linf(steps=7)"},
                                 {"inner_steps": 3, "pre_adaptation_weight": 1.0}),
    "anchored_fomaml": ("first-order MAML (FOMAML) plus θ's own support loss (pre_adaptation_weight 1)",
                        {"method": "fomaml"}, {"pre_adaptation_weight": 1.0}),
    "anchored_w2": ("anchored_inner3 with twice the weight on θ's own support loss (pre_adaptation_weight 2)",
                    {}, {"inner_steps": 3, "pre_adaptation_weight": 2.0}),
    "anchored_pool": ("anchored_inner3 drawing its task batches from pools of 1280 adversarial examples per"
                      " task, regenerated every 10 steps (the same clean images read)",
                      {}, {"inner_steps": 3, "pre_adaptation_weight": 1.0, "pool_size": 1280, "pool_refresh": 10}),
    # the baselines through the same script, to repeat them with other seeds (--seed)
    "baseline_max": ("the MAX baseline (Tramèr & Boneh) on the base recipe's tasks", {"method": "max"}, {}),
    "baseline_pgd_at": ("the PGD-7 AT baseline (Madry) on the base recipe's data", {"method": "pgd_at"}, {}),
}


def recipe_config(base: TrainConfig, name: str) -> TrainConfig:
    """``base`` with recipe ``name``'s changes."""
    _, train_changes, meta_changes = RECIPES[name]
    meta = dataclasses.replace(base.meta, **meta_changes)
    return dataclasses.replace(base, meta=meta, **train_changes)


def run_label(name: str, seed: int | None) -> str:
    """A recipe's row label and workdir name: ``name``, or ``name_seedS`` for another seed."""
    return name if seed is None else f"{name}_seed{seed}"


def reference_row(name: str, protocol: dict) -> dict:
    """A zoo model's card as a row of the table; its evaluation must be ``protocol``."""
    card = zoo.get_card(name)
    if card.evaluation != protocol:
        raise ValueError(f"Zoo model {name!r} was evaluated with another protocol than the search's"
                         f" (N={card.evaluation['num_examples']} vs {protocol['num_examples']}, or other"
                         " attacks); pick --reference models evaluated with the same protocol.")
    return {"recipe": f"{name} (zoo)", "train_seconds": card.train_seconds, "images_seen": card.images_seen,
            "report": card.metrics}


def main(argv: list[str]) -> None:
    del argv
    flag_utils.exit_on_error(run)


def run() -> None:
    """Runs the recipes and writes the table."""
    base_card = zoo.get_card(FLAGS.base)
    base = dataclasses.replace(TrainConfig.from_json(json.dumps(base_card.train_config)), checkpoint_every=100)
    if FLAGS.seed is not None:
        base = dataclasses.replace(base, seed=FLAGS.seed)
    protocol = zoo.evaluation_protocol(num_examples=FLAGS.eval_examples)
    rows = [reference_row(name, protocol) for name in FLAGS.reference]
    names = FLAGS.recipes or list(RECIPES)
    for name in names:
        config = recipe_config(base, name)
        label = run_label(name, FLAGS.seed)
        record = train_and_evaluate(config, os.path.join(FLAGS.workdir, label), protocol)
        rows.append({"recipe": label, "change": RECIPES[name][0], "config": json.loads(config.to_json()), **record})
    changes = "\n".join(f"- `{name}`: {RECIPES[name][0]}." for name in names)
    seen, unseen = (", ".join(zoo.STANDARD_GROUPS[group]) for group in ("seen", "unseen"))
    write_results(FLAGS.output, "MAT recipe search", (
        f"Small CNN, Fashion-MNIST; every recipe is `{FLAGS.base}`'s training recipe"
        f" ({base_card.train_steps} steps of {base.images_per_step} images, seed {base.seed}) with the"
        f" changes listed below; zoo protocol on the first {FLAGS.eval_examples} test images (seen = {seen};"
        f" unseen = {unseen}). Rows marked (zoo) come from model cards.\n\n{changes}"
    ), group_table(rows, "recipe"), rows)


if __name__ == "__main__":
    app.run(main)
