"""Prints the zoo as a Markdown table, straight from the model cards in zoo/.

    python scripts/zoo_table.py [--output=results/zoo.md]

Every number comes from a card, and every card's metrics from `scripts/evaluate.py --model=NAME`.
"""
from __future__ import annotations

from absl import app, flags

from metaadv_tf import zoo
from metaadv_tf.io_utils import atomic_write_text

FLAGS = flags.FLAGS
flags.DEFINE_string("output", None, "Also write the table here.")


def zoo_table() -> str:
    """One row per zoo entry: method, clean and worst-case accuracies, training budget."""
    rows = ["| model | method | threat model | clean | worst seen | worst unseen | worst all | N |"
            " train steps | images | train time |",
            "|---|---|---|---|---|---|---|---|---|---|---|"]
    for name in zoo.list_models():
        card = zoo.get_card(name)
        metrics, groups = card.metrics, card.metrics["worst_case_by_group"]
        percent = lambda value: "n/a" if value is None else f"{100 * value:.1f}"  # noqa: E731
        rows.append(
            f"| {name} | {card.method} | {card.threat_model} {card.eps:g} |"
            f" {percent(metrics['clean_accuracy'])} | {percent(groups.get('seen'))} |"
            f" {percent(groups.get('unseen'))} | {percent(metrics['worst_case_accuracy'])} |"
            f" {card.evaluation['num_examples']} | {card.train_steps} | {card.images_seen} |"
            f" {card.train_seconds / 60:.0f} min |"
        )
    return "\n".join(rows)


def main(argv: list[str]) -> None:
    del argv
    table = zoo_table()
    print(table)
    if FLAGS.output:
        atomic_write_text(FLAGS.output, table + "\n")


if __name__ == "__main__":
    app.run(main)
