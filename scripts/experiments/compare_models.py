"""Side-by-side comparison of zoo models from their cards, with the product's targets checked.

    python scripts/experiments/compare_models.py      # every zoo model, research artifacts too
    python scripts/experiments/compare_models.py --models=cnn_mat,cnn_pgd_at,cnn_avg,cnn_max,cnn_standard \
        --candidate=cnn_mat --baselines=cnn_pgd_at,cnn_avg,cnn_max --pgd_at=cnn_pgd_at \
        --output=results/comparison_cnn.md

Every number is read from a model card (so from `scripts/evaluate.py --model=NAME`, with
`--protocol=v2` for `--protocol=v2` here); the targets: worst case over the unseen attacks (v2:
the per-example union over the unseen threat models) >= 5 points above the best baseline, clean
accuracy at most 2 points below PGD-AT, training time no more than PGD-AT's. `--protocol=v2`
lists only the models whose cards carry v2 results, plus the `--records` of models outside the zoo:

    python scripts/evaluate.py --model=runs/zoo/resnet18_sat --protocol=v2 --num_examples=200 \
        --output=runs/resnet18_v2/resnet18_sat.json
    python scripts/experiments/compare_models.py --protocol=v2 --records=runs/resnet18_v2/resnet18_sat.json
"""
from __future__ import annotations

import json

from absl import app, flags

from metaadv_tf import zoo
from metaadv_tf.io_utils import atomic_write_text

FLAGS = flags.FLAGS
flags.DEFINE_list("models", None, "Zoo models to compare (default: all, research artifacts too).")
flags.DEFINE_string("candidate", None, "The MAT model whose targets are checked.")
flags.DEFINE_list("baselines", [], "Baselines the candidate must beat on unseen attacks.")
flags.DEFINE_string("pgd_at", None, "The PGD-AT model for the clean-accuracy and time targets.")
flags.DEFINE_string("output", None, "Also write the Markdown here.")
flags.DEFINE_enum("protocol", "v1", ["v1", "v2"], "Which evaluation protocol's card results to compare.")
flags.DEFINE_list("records", [], "--protocol=v2: also these JSON results of scripts/evaluate.py --protocol=v2"
                  " --output (models outside the zoo, such as training runs' workdirs).")
V2_COLUMNS = ("Linf", "L2", "L1", "spatial")
UNSEEN_LABELS = {"v1": "Worst case over unseen attacks", "v2": "Union over unseen threat models"}


def v2_table(records: list[dict]) -> str:
    """Protocol v2 per record (``card_record`` or ``evaluate.py --protocol=v2 --output``): clean
    accuracy, AutoAttack / spatial accuracy per threat model, per-example unions over the seen and
    unseen threat models and over all of them (%), and the training budget where known."""
    header = ["model", "method", "seen", "N", "clean", *V2_COLUMNS, "union seen", "union unseen",
              "union Lp", "union all", "train min", "images"]
    rows = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for record in records:
        settings, m = record["settings"], record["metrics"]
        values = [m["clean_accuracy"], *(m["robust_accuracy"].get(tm) for tm in V2_COLUMNS),
                  *(m["union"].get(group) for group in ("seen", "unseen", "Lp", "all"))]
        minutes = f"{record['train_seconds'] / 60:.1f}" if "train_seconds" in record else "n/a"
        cells = [record["model"], record.get("method", "n/a"), ",".join(settings["seen"]) or "none",
                 str(settings["num_examples"]), *map(_percent, values), minutes, str(record.get("images_seen", "n/a"))]
        rows.append("| " + " | ".join(cells) + " |")
    return "\n".join(rows)


def card_record(name: str) -> dict:
    """Zoo model ``name``'s v2 result and training budget, shaped as ``evaluate.py --output`` writes them."""
    card = zoo.get_card(name)
    return {"model": card.name, **zoo.training_budget(card), **card.evaluations["v2"]}


def read_record(path: str) -> dict:
    """A v2 record written by ``scripts/evaluate.py --protocol=v2 --output=PATH``."""
    with open(path, encoding="utf-8") as handle:
        record = json.load(handle)
    if record.get("settings", {}).get("protocol") != "v2" or "model" not in record:
        raise ValueError(f"{path} is not a v2 record of scripts/evaluate.py --protocol=v2 --output.")
    return record


def _percent(value: float | None) -> str:
    return "n/a" if value is None else f"{100 * value:.1f}"


def comparison_table(names: list[str]) -> str:
    """Clean, per-attack and per-group worst-case accuracy (%) and training budget per model."""
    cards = [zoo.get_card(name) for name in names]
    attacks = list(dict.fromkeys(a for card in cards for a in card.metrics["robust_accuracy"]))
    header = ["model", "method", "N", "clean", *attacks, "worst seen", "worst unseen", "worst all",
              "train min", "images"]
    rows = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for card in cards:
        m, groups = card.metrics, card.metrics["worst_case_by_group"]
        values = [m["clean_accuracy"], *(m["robust_accuracy"].get(a) for a in attacks),
                  groups.get("seen"), groups.get("unseen"), m["worst_case_accuracy"]]
        rows.append("| " + " | ".join([card.name, card.method, str(card.evaluation["num_examples"]),
                                        *map(_percent, values), f"{card.train_seconds / 60:.1f}",
                                        str(card.images_seen)]) + " |")
    return "\n".join(rows)


def results(name: str, protocol: str) -> tuple[dict, dict]:
    """(protocol settings, metrics) of a card under ``protocol``."""
    card = zoo.get_card(name)
    if protocol == "v1":
        return card.evaluation, card.metrics
    if protocol not in card.evaluations:
        raise ValueError(f"Zoo model {name!r} has no {protocol} results; run scripts/evaluate.py"
                         f" --model={name} --protocol={protocol} --update_card.")
    return card.evaluations[protocol]["settings"], card.evaluations[protocol]["metrics"]


def unseen_accuracy(name: str, protocol: str) -> float:
    """Worst case over the unseen attacks (v1) or union over the unseen threat models (v2)."""
    metrics = results(name, protocol)[1]
    return metrics["worst_case_by_group" if protocol == "v1" else "union"]["unseen"]


def target_lines(candidate: str, baselines: list[str], pgd_at: str, protocol: str = "v1") -> list[str]:
    """One line per target: measured values and met / NOT met."""
    get = zoo.get_card
    names = [candidate, *baselines, pgd_at]
    # v2 settings differ only in which threat models the model saw in training
    if len({str({k: v for k, v in results(name, protocol)[0].items() if k not in ("seen", "unseen")})
            for name in names}) != 1:
        raise ValueError("Targets compare models evaluated with one protocol; these cards differ.")
    unseen = lambda name: unseen_accuracy(name, protocol)  # noqa: E731
    clean = lambda name: results(name, protocol)[1]["clean_accuracy"]  # noqa: E731
    best = max(baselines, key=unseen)
    margin = 100 * (unseen(candidate) - unseen(best))
    clean_gap = 100 * (clean(candidate) - clean(pgd_at))
    time_ratio = get(candidate).train_seconds / get(pgd_at).train_seconds
    verdict = lambda ok: "met" if ok else "NOT met"  # noqa: E731
    return [
        f"- {UNSEEN_LABELS[protocol]}: {candidate} {100 * unseen(candidate):.1f} % vs best baseline"
        f" {best} {100 * unseen(best):.1f} % ({margin:+.1f} points; target >= +5): {verdict(margin >= 5)}.",
        f"- Clean accuracy vs {pgd_at}: {clean_gap:+.1f} points (target >= -2): {verdict(clean_gap >= -2)}.",
        f"- Training time vs {pgd_at}: {time_ratio:.2f}x (target <= 1): {verdict(time_ratio <= 1)}.",
    ]


def main(argv: list[str]) -> None:
    del argv
    if FLAGS.records and FLAGS.protocol != "v2":
        raise app.UsageError(f"--records are v2 results; add --protocol=v2. Received: --protocol={FLAGS.protocol}")
    if FLAGS.protocol == "v1":
        text = comparison_table(FLAGS.models or zoo.list_models(include_research=True))
    else:
        names = FLAGS.models or ([] if FLAGS.records else [n for n in zoo.list_models(include_research=True)
                                                             if "v2" in zoo.get_card(n).evaluations])
        text = v2_table([card_record(name) for name in names] + [read_record(path) for path in FLAGS.records])
    if FLAGS.candidate:
        lines = target_lines(FLAGS.candidate, FLAGS.baselines, FLAGS.pgd_at, FLAGS.protocol)
        text += "\n\n" + "\n".join(lines)
    print(text)
    if FLAGS.output:
        atomic_write_text(FLAGS.output, text + "\n")


if __name__ == "__main__":
    app.run(main)
