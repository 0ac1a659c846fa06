"""Side-by-side comparison of zoo models from their cards, with the product's targets checked.

    python scripts/experiments/compare_models.py                       # every zoo model
    python scripts/experiments/compare_models.py --models=cnn_mat,cnn_pgd_at,cnn_avg,cnn_max,cnn_standard \
        --candidate=cnn_mat --baselines=cnn_pgd_at,cnn_avg,cnn_max --pgd_at=cnn_pgd_at \
        --output=results/comparison_cnn.md

Every number is read from a model card (so from `scripts/evaluate.py --model=NAME`); the
targets: worst case over the unseen attacks >= 5 points above the best baseline, clean accuracy
at most 2 points below PGD-AT, training time no more than PGD-AT's.
"""
from __future__ import annotations

from absl import app, flags

from metaadv_tf import zoo
from metaadv_tf.io_utils import atomic_write_text

FLAGS = flags.FLAGS
flags.DEFINE_list("models", None, "Zoo models to compare (default: all).")
flags.DEFINE_string("candidate", None, "The MAT model whose targets are checked.")
flags.DEFINE_list("baselines", [], "Baselines the candidate must beat on unseen attacks.")
flags.DEFINE_string("pgd_at", None, "The PGD-AT model for the clean-accuracy and time targets.")
flags.DEFINE_string("output", None, "Also write the Markdown here.")


def comparison_table(names: list[str]) -> str:
    """Clean, per-attack and per-group worst-case accuracy (%) and training budget per model."""
    cards = [zoo.get_card(name) for name in names]
    attacks = list(dict.fromkeys(a for card in cards for a in card.metrics["robust_accuracy"]))
    header = ["model", "method", "N", "clean", *attacks, "worst seen", "worst unseen", "worst all",
              "train min", "images"]
    rows = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    percent = lambda value: "n/a" if value is None else f"{100 * value:.1f}"  # noqa: E731
    for card in cards:
        m, groups = card.metrics, card.metrics["worst_case_by_group"]
        values = [m["clean_accuracy"], *(m["robust_accuracy"].get(a) for a in attacks),
                  groups.get("seen"), groups.get("unseen"), m["worst_case_accuracy"]]
        rows.append("| " + " | ".join([card.name, card.method, str(card.evaluation["num_examples"]),
                                        *map(percent, values), f"{card.train_seconds / 60:.1f}",
                                        str(card.images_seen)]) + " |")
    return "\n".join(rows)


def target_lines(candidate: str, baselines: list[str], pgd_at: str) -> list[str]:
    """One line per target: measured values and met / NOT met."""
    get = zoo.get_card
    protocols = {str(get(name).evaluation) for name in [candidate, *baselines, pgd_at]}
    if len(protocols) != 1:
        raise ValueError("Targets compare models evaluated with one protocol; these cards differ.")
    unseen = lambda name: get(name).metrics["worst_case_by_group"]["unseen"]  # noqa: E731
    best = max(baselines, key=unseen)
    margin = 100 * (unseen(candidate) - unseen(best))
    clean_gap = 100 * (get(candidate).metrics["clean_accuracy"] - get(pgd_at).metrics["clean_accuracy"])
    time_ratio = get(candidate).train_seconds / get(pgd_at).train_seconds
    verdict = lambda ok: "met" if ok else "NOT met"  # noqa: E731
    return [
        f"- Worst case over unseen attacks: {candidate} {100 * unseen(candidate):.1f} % vs best baseline"
        f" {best} {100 * unseen(best):.1f} % ({margin:+.1f} points; target >= +5): {verdict(margin >= 5)}.",
        f"- Clean accuracy vs {pgd_at}: {clean_gap:+.1f} points (target >= -2): {verdict(clean_gap >= -2)}.",
        f"- Training time vs {pgd_at}: {time_ratio:.2f}x (target <= 1): {verdict(time_ratio <= 1)}.",
    ]


def main(argv: list[str]) -> None:
    del argv
    text = comparison_table(FLAGS.models or zoo.list_models())
    if FLAGS.candidate:
        text += "\n\n" + "\n".join(target_lines(FLAGS.candidate, FLAGS.baselines, FLAGS.pgd_at))
    print(text)
    if FLAGS.output:
        atomic_write_text(FLAGS.output, text + "\n")


if __name__ == "__main__":
    app.run(main)
