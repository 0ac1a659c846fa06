"""The threat-model study (issue 16): its tasks and task sets, where its runs live, and the
adaptation of a trained run to the threat model it never saw.

``scripts/experiments/threat_models.py`` trains each (task set, method, seed) in
``WORKDIR/SET/METHOD_seedS`` and measures its best checkpoint with protocol v2 (``v2.json``).
``scripts/experiments/adaptation.py`` fine-tunes those checkpoints on a threat model they never saw
(``adapt_run``), keeping each fine-tuning's weights and results in the run's ``adaptation/``
folder, named by the fine-tuning, k and a digest of everything the weights depend on.
"""
from __future__ import annotations

import json
import os
import shutil
from typing import TYPE_CHECKING, Any, Callable, Mapping, Sequence

import numpy as np

from metaadv_tf.attack_specs import format_attack, parse_attack, parse_attacks
from metaadv_tf.evaluation_cache import evaluation_key
from metaadv_tf.experiments import load_run_model, mean_std
from metaadv_tf.finetune import finetune, inner_loop_settings
from metaadv_tf.io_utils import atomic_save, atomic_write_text, read_json
from metaadv_tf.protocols import THREAT_MODELS, get_protocol, run_protocol, seen_threat_models
from metaadv_tf.registry import check_choice
from metaadv_tf.training import CONFIG_FILE, META_METHODS, RESULT_FILE, MetaConfig, TrainConfig, read_run_config
from metaadv_tf.training.selection import BEST_WEIGHTS, VALIDATION_FILE

if TYPE_CHECKING:
    import keras

# one training task per threat model, at protocol v2's radii (the attacks' defaults). L1 is
# APGD-CE with 10 steps, as in "Mind the box" (Croce & Hein 2021) and E-AT: 5 SLIDE steps
# ("pgd_l1(steps=5)", the study's first L1 task) left L1-trained runs at 69-70 % under that attack
# and 38-50 % under 100-step APGD-L1 (results/REPORT.md), too weak for training or validation.
TASKS = {"Linf": "pgd_linf(steps=5)", "L2": "pgd_l2(steps=5)", "L1": "apgd_ce(norm=1, steps=10)",
         "spatial": "spatial(samples=5)"}
# MSD (metaadv_tf.msd) takes one step of each Lp task per iteration, one number of steps for all:
# its L1 step is SLIDE's, for the other tasks' 5 iterations
MSD_TASKS = {**TASKS, "L1": "pgd_l1(steps=5)"}
# the leave-one-out folds: no_spatial (added last) is the fold with room to generalize (Linf-trained
# models keep ~18 % under the spatial grid, spatial-trained ones ~58 %); the L2 fold has almost none
TASK_SETS = {"all": list(THREAT_MODELS), "no_L1": ["Linf", "L2", "spatial"],
             "no_L2": ["Linf", "L1", "spatial"], "no_spatial": ["Linf", "L2", "L1"]}
# MAT variants are labelled METHOD_PART_PART... (e.g. mat_mem_rates): a meta method with the
# MetaConfig changes of each part applied to the study's MAT recipe. "mem": perturbation memory with
# 1 attack step per visit (metaadv_tf.meta.memory); "memtask": the same with each task's own
# perturbation of an image; "rates": learned per-task inner learning rates (Meta-SGD);
# "consistency": + KL(adapted || deployed) on the query batch (with "worst", on every task's version);
# "attention": task attention;
# "metabn": Meta-BatchNorm (per-task statistics, "unknown" mode at test time); "innerN": N inner
# steps (fomaml_mem_inner1 is the cheapest: 2.8x PGD-7 AT's images/s on the CNN,
# results/efficiency.md); "cross": each task's query batch is attacked by the other sampled task's
# threat model (MLDG); "worst": it is attacked by every task and each example scored by its worst
# loss (MAX's objective, after adaptation); "variation" (with "worst"): + 0.5 x the query examples'
# largest logit distance between two threat models (Dai et al. 2022's variation regularization);
# "maxanchor" (with "worst"): θ's own support loss (the anchor) is MAX's too, each support example
# attacked by every task against θ and scored by its worst loss; the inner steps adapt on the task's
# own attack. The deployed θ is then trained on MAX's objective directly, as well as through θ'_i;
# "tasks4": 4 tasks per meta-step (all of the "all" set) of 16 support + 16 query images, the same
# 128 images per step, so the deployed θ's anchor term meets every threat model at every step;
# "tasks3": the same for a fold's 3 tasks, 21 + 21 images each (126 per step, as many per epoch).
# "lr01": inner learning rate 0.01 instead of 0.05, for ResNet-18 (issue 19), where the meta-gradient
# through 3 inner steps at 0.05 starts out huge (outer gradient norm ~1,800 at the first step of
# `threat_models.py --model=resnet18 --first_steps=N`) and MAT's loss climbs without a warm-up.
VARIANT_PARTS = {
    "mem": {"memory_steps": 1},
    "memtask": {"memory_steps": 1, "memory_per_task": True},
    "rates": {"learn_inner_rates": True},
    "consistency": {"consistency_weight": 1.0},
    "attention": {"task_attention": True},
    "metabn": {"meta_batchnorm": True},
    "inner1": {"inner_steps": 1},
    "inner5": {"inner_steps": 5},
    "cross": {"cross_task_query": True},
    "worst": {"worst_case_query": True},
    "variation": {"variation_weight": 0.5},
    "maxanchor": {"worst_case_anchor": True},
    "tasks4": {"num_tasks": 4, "support_size": 16, "query_size": 16},
    "tasks3": {"num_tasks": 3, "support_size": 21, "query_size": 21},
    "lr01": {"inner_learning_rate": 0.01},
}

# threat models beyond protocol v2's four, which no study run trains on: targets of adaptation for runs
# with nothing held out (the "all" task set, issue 19), as (training attack, measuring attack).
# spatial30: rotations up to ±30° and shifts up to ±3 px, Engstrom et al. 2019's MNIST range (v2: ±10°,
# ±2 px), measured on a grid of 2° and 1 px steps
NEW_THREAT_MODELS = {
    "spatial30": ("spatial(samples=5, max_angle=30.0, max_shift=3.0)",
                  "spatial(max_angle=30.0, max_shift=3.0, angles=31, shifts=7)"),
}

V2_RECORD = "v2.json"  # a run's protocol v2 record (threat_models.py)
V2_CACHE = "v2_cache.json"  # its attacks' per-example results
ADAPTATION_DIR = "adaptation"
TUNED_WEIGHTS = "tuned.weights.h5"
# "adversarial": the same fine-tuning for every method (E-AT's); "mat-inner": a meta run's own inner loop
FINETUNINGS = ("adversarial", "mat-inner")

Record = dict[str, Any]
_MODEL_NAMES = {"cnn": "Small CNN", "resnet18": "ResNet-18"}


def model_name(config_name: str) -> str:
    """The tables' name of a model config (``"cnn"`` -> ``"Small CNN"``); unknown configs keep theirs."""
    return _MODEL_NAMES.get(config_name, config_name)


def train_attacks(task_set: str, method: str | None = None) -> str:
    """The training attacks of ``method`` (a method, not a variant label) on ``task_set``: one task
    per threat model, ``MSD_TASKS`` for MSD."""
    tasks = MSD_TASKS if method == "msd" else TASKS
    return ",".join(tasks[tm] for tm in TASK_SETS[task_set])


def run_dir(workdir: str, task_set: str, method: str, seed: int) -> str:
    """The workdir of one run of the study."""
    return os.path.join(workdir, task_set, f"{method}_seed{seed}")


def recipe(label: str) -> tuple[str, MetaConfig]:
    """The method and meta settings of ``label``: a method, or a meta method followed by
    ``VARIANT_PARTS`` joined by "_" (e.g. ``fomaml_mem_inner5``). Meta methods get the study's MAT
    recipe (2 tasks x (32 support + 32 query), 3 inner steps, anchored meta-loss) with each part's
    changes. Raises ValueError for an unknown part."""
    method = label.split("_")[0]
    if method not in META_METHODS:
        return label, MetaConfig()
    settings = {"num_tasks": 2, "support_size": 32, "query_size": 32, "inner_steps": 3,
                "pre_adaptation_weight": 1.0}
    return method, MetaConfig(**{**settings, **variant_changes(label)})


def variant_changes(label: str) -> dict[str, Any]:
    """The MetaConfig settings variant ``label`` changes from the study's MAT recipe (its parts'
    ``VARIANT_PARTS`` entries; empty for a plain method)."""
    method, *parts = label.split("_")
    changes: dict[str, Any] = {}
    for part in parts if method in META_METHODS else []:
        changes.update(VARIANT_PARTS[check_choice(f"variant part of {label!r}", part, list(VARIANT_PARTS))])
    return changes


def variant_lines(records: Sequence[Record], run_flags: str = "") -> list[str]:
    """One Markdown line per MAT variant among ``records``: its changes to the MAT recipe and the
    threat_models.py command that trains and measures it on the task sets and seeds it has (plus
    ``run_flags``, the study's own flags such as ``--model``)."""
    lines = []
    for label in dict.fromkeys(r["method"] for r in records):
        if not (changes := variant_changes(label)):
            continue
        mine = [r for r in records if r["method"] == label]
        task_sets = ",".join(dict.fromkeys(r["task_set"] for r in mine))
        seeds = ",".join(str(s) for s in sorted({r["seed"] for r in mine}))
        settings = ", ".join(f"{name}={value}" for name, value in changes.items())
        lines.append(f"- `{label}` ({label.split('_')[0]}, {settings}): `python scripts/experiments/threat_models.py"
                     f" --task_sets={task_sets} --methods={label} --seeds={seeds}{run_flags}`")
    return lines


def validation_curve(directory: str) -> dict[float, float]:
    """A run's validation union accuracy by epoch (``validation.json``; empty before any)."""
    records = read_json(os.path.join(directory, VALIDATION_FILE))
    if records is None:
        return {}
    config = read_run_config(directory)
    steps_per_epoch = (config.available_train_examples - config.validation_examples) / config.images_per_step
    return {round(r["step"] / steps_per_epoch, 2): r["union"] for r in records}


def held_out(task_set: str) -> list[str]:
    """The threat models ``task_set`` does not train on, in ``THREAT_MODELS`` order."""
    return [tm for tm in THREAT_MODELS if tm not in TASK_SETS[check_choice("task set", task_set, list(TASK_SETS))]]


def held_out_over_folds(records: Sequence[Record]) -> dict[str, list[float]]:
    """Per method, per seed measured on every leave-one-out fold among ``records`` (study records:
    task_set, method, seed, metrics): the held-out threat model's accuracy averaged over the folds."""
    by_run = {(r["task_set"], r["method"], r["seed"]): r["metrics"]["robust_accuracy"][held_out(r["task_set"])[0]]
              for r in records if held_out(r["task_set"])}
    folds = sorted({task_set for task_set, _, _ in by_run})
    means: dict[str, list[float]] = {}
    for method, seed in sorted({(m, s) for _, m, s in by_run}):
        if all((fold, method, seed) in by_run for fold in folds):
            means.setdefault(method, []).append(float(np.mean([by_run[fold, method, seed] for fold in folds])))
    return means


def difference(a: Sequence[float], b: Sequence[float]) -> tuple[float, float]:
    """mean(a) − mean(b) and twice its standard error, 2·sqrt(s_a²/n_a + s_b²/n_b) (ddof 1; nan
    unless both have at least two values)."""
    if min(len(a), len(b)) < 2:
        return float(np.mean(a) - np.mean(b)), float("nan")
    return (float(np.mean(a) - np.mean(b)),
            2 * float(np.sqrt(np.var(a, ddof=1) / len(a) + np.var(b, ddof=1) / len(b))))


def held_out_target_lines(records: Sequence[Record], margin: float = 0.05) -> list[str]:
    """Issue 16's robustness target for each MAT method (a meta method or variant): its mean
    held-out accuracy over the folds at least ``margin`` above the best baseline's, by more than
    twice the difference's standard error."""
    means = held_out_over_folds(records)
    baselines = {m: v for m, v in means.items() if recipe(m)[0] not in META_METHODS}
    if not baselines:
        return []
    best = max(baselines, key=lambda m: np.mean(baselines[m]))
    lines = []
    for method, values in means.items():
        if recipe(method)[0] in META_METHODS:
            gap, two_se = difference(values, baselines[best])
            if gap < margin:
                verdict = "NOT met"
            elif np.isnan(two_se):
                verdict = "not testable yet (needs 2+ seeds of each)"
            else:
                verdict = "met" if gap > two_se else "NOT met (within 2 SE)"
            lines.append(f"- {method} ({_seeds(len(values))}) {100 * np.mean(values):.1f} vs best baseline {best}"
                         f" ({_seeds(len(baselines[best]))}) {100 * np.mean(baselines[best]):.1f}: difference"
                         f" {_gap(gap, two_se)}; target +{100 * margin:.0f}: {verdict}.")
    return lines


def _gap(gap: float, two_se: float) -> str:
    """"+2.4 ± 1.5 (2 SE)" in points, "± n/a" without a standard error."""
    spread = "n/a" if np.isnan(two_se) else f"{100 * two_se:.1f}"
    return f"{100 * gap:+.1f} ± {spread} (2 SE)"


def headroom_lines(records: Sequence[Record]) -> list[str]:
    """Per fold and method also trained on all four threat models: the held-out threat model's
    accuracy without it and with it in training (means over seeds), so the gap generalizing to
    it could close at most."""
    lines = []
    for fold in sorted({r["task_set"] for r in records if held_out(r["task_set"])}):
        target = held_out(fold)[0]
        for method in dict.fromkeys(r["method"] for r in records):
            unseen, seen = ([r["metrics"]["robust_accuracy"][target] for r in records
                             if (r["task_set"], r["method"]) == (task_set, method)] for task_set in (fold, "all"))
            if unseen and seen:
                lines.append(f"- {target}, {method}: {100 * np.mean(unseen):.1f} held out, {100 * np.mean(seen):.1f}"
                             f" trained on all four: headroom {100 * (np.mean(seen) - np.mean(unseen)):.1f}.")
    return lines


def _seeds(count: int) -> str:
    """"1 seed", "3 seeds"."""
    return f"{count} seed" if count == 1 else f"{count} seeds"


def is_finished(directory: str) -> bool:
    """Whether ``directory`` holds a finished run with a best validation checkpoint."""
    return all(os.path.isfile(os.path.join(directory, name)) for name in (CONFIG_FILE, RESULT_FILE, BEST_WEIGHTS))


def finetune_arguments(finetuning: str, config: TrainConfig, k: int, steps: int,
                       adversarial: Mapping[str, Any]) -> dict[str, Any] | None:
    """``finetune`` arguments of ``finetuning`` for a run of ``config``, on k images for ``steps``
    batches (at most k images each), seeded by the run's seed: "adversarial" takes ``adversarial``
    (optimizer, learning_rate, batch_size) in inference mode, "mat-inner" the run's own inner loop
    (``inner_loop_settings``; None for a method without one)."""
    check_choice("fine-tuning", finetuning, list(FINETUNINGS))
    if finetuning == "adversarial":
        arguments = {**adversarial, "training_mode": False, "steps_per_batch": 1}
    elif config.method in META_METHODS:
        arguments = inner_loop_settings(config.meta)
    else:
        return None
    return {**arguments, "batch_size": min(arguments["batch_size"], k), "steps": steps, "seed": config.seed}


def adaptation_target(config: TrainConfig, num_examples: int | None = None, new_threat_model: str | None = None,
                      target_only: bool = False) -> tuple[str, str, dict[str, Any]]:
    """What a run of ``config`` adapts to: (threat model T, T's training attack, the protocol v2
    settings that measure it on ``num_examples`` test images). T is the one threat model the run's
    tasks leave out, or ``new_threat_model`` (a ``NEW_THREAT_MODELS`` name), added to v2's attacks
    and unseen group. ``target_only`` keeps T's attack alone (no unions), for models where all of
    v2 per point is too slow. Raises ValueError when neither names exactly one threat model."""
    settings = get_protocol("v2").settings(seen_threat_models(parse_attacks(config.train_attacks)), num_examples)
    if new_threat_model is not None:
        train, measuring = NEW_THREAT_MODELS[check_choice("new threat model", new_threat_model,
                                                          list(NEW_THREAT_MODELS))]
        target, attack = new_threat_model, format_attack(parse_attack(train))
        settings["attacks"][target] = format_attack(parse_attack(measuring))
        settings["unseen"].append(target)
    elif len(settings["unseen"]) == 1:
        target, attack = settings["unseen"][0], TASKS[settings["unseen"][0]]
    else:
        raise ValueError(f"A run trained on {settings['seen']} leaves out {settings['unseen']}: adaptation needs"
                         f" exactly one threat model left out, or a new threat model ({list(NEW_THREAT_MODELS)}).")
    if target_only:
        settings.update(attacks={target: settings["attacks"][target]}, unions={}, seen=[], unseen=[target])
    return target, attack, settings


def adapt_run(directory: str, x: np.ndarray, y: np.ndarray, ks: Sequence[int], finetunings: Sequence[str],
              steps: int, adversarial: Mapping[str, Any], num_examples: int | None = None,
              new_threat_model: str | None = None, target_only: bool = False) -> list[Record]:
    """The finished run in ``directory`` adapted to the threat model T of ``adaptation_target``.

    One record per point: k = 0 (the best checkpoint; its ``v2.json`` when measured with the same
    settings), then per fine-tuning of ``finetunings`` that applies and k of ``ks``, a copy of
    the best checkpoint fine-tuned on the first k of (x, y) against T's training attack. Each is
    measured with protocol v2 (plus T's attack when T is new; T's alone with ``target_only``;
    ``num_examples`` test images); reruns resume.
    """
    config = read_run_config(directory)
    target, attack, settings = adaptation_target(config, num_examples, new_threat_model, target_only)
    model = load_run_model(config, os.path.join(directory, BEST_WEIGHTS))
    points = [("none", 0, None, _unadapted_metrics(directory, model, config.dataset, settings, target))]
    for finetuning in finetunings:
        for k in ks:
            arguments = finetune_arguments(finetuning, config, k, steps, adversarial)
            if arguments is not None:
                folder = _adaptation_folder(directory, model, finetuning, k, attack, arguments)
                tuned = _finetuned(model, config, attack, x[:k], y[:k], arguments, folder)
                points.append((finetuning, k, arguments, measure(tuned, config.dataset, settings, folder)))
    return [{"model": config.model, "target": target, "attack": attack, "finetuning": finetuning, "k": k,
             "finetune": arguments, "settings": settings, "metrics": metrics}
            for finetuning, k, arguments, metrics in points]


def measure(model: "keras.Model", dataset: str, settings: dict[str, Any], directory: str) -> dict[str, Any]:
    """``run_protocol`` metrics of ``model``, kept in ``directory``: its ``result.json`` when made
    from these weights and settings, else measured (resuming from the folder's attack cache)."""
    key = evaluation_key([w.numpy() for w in model.weights], settings, dataset)
    path = os.path.join(directory, RESULT_FILE)
    stored = _stored_metrics(path, "key", key)
    if stored is not None:
        return stored
    metrics = run_protocol(model, dataset, settings, progress=True,
                           cache_path=os.path.join(directory, V2_CACHE))
    atomic_write_text(path, json.dumps({"key": key, "settings": settings, "metrics": metrics}, indent=2) + "\n")
    return metrics


def _unadapted_metrics(directory: str, model: "keras.Model", dataset: str, settings: dict[str, Any],
                       target: str) -> dict:
    """The best checkpoint's metrics: from the run's ``v2.json`` if measured with ``settings``, else
    measured in ``adaptation/k0_TARGET``, starting from the run's own attack cache (only the attacks
    it lacks are run)."""
    stored = _stored_metrics(os.path.join(directory, V2_RECORD), "settings", settings)
    if stored is not None:
        return stored
    folder = os.path.join(directory, ADAPTATION_DIR, f"k0_{target}")
    cache, run_cache = os.path.join(folder, V2_CACHE), os.path.join(directory, V2_CACHE)
    if not os.path.isfile(cache) and os.path.isfile(run_cache):
        os.makedirs(folder, exist_ok=True)
        atomic_save(cache, lambda path: shutil.copyfile(run_cache, path))
    return measure(model, dataset, settings, folder)


def _stored_metrics(path: str, field: str, expected: Any) -> dict | None:
    """The ``metrics`` of the JSON record at ``path`` if it exists and its ``field`` is ``expected``."""
    record = read_json(path)
    return record["metrics"] if record is not None and record[field] == expected else None


def _adaptation_folder(directory: str, model: "keras.Model", finetuning: str, k: int, attack: str,
                       arguments: Mapping[str, Any]) -> str:
    """``adaptation/FINETUNING_kK_DIGEST``: the digest covers the starting weights, attack and arguments."""
    what = {"finetuning": finetuning, "k": k, "attack": attack, **arguments}
    digest = evaluation_key([w.numpy() for w in model.weights], what, dataset="")
    return os.path.join(directory, ADAPTATION_DIR, f"{finetuning}_k{k}_{digest[:10]}")


def _finetuned(model: "keras.Model", config: TrainConfig, attack: str, x: np.ndarray, y: np.ndarray,
               arguments: Mapping[str, Any], folder: str) -> "keras.Model":
    """The fine-tuned copy kept in ``folder`` (fine-tuned and saved there on the first call)."""
    import keras

    path = os.path.join(folder, TUNED_WEIGHTS)
    if os.path.isfile(path):
        return load_run_model(config, path)
    keras.utils.set_random_seed(arguments["seed"])
    tuned = finetune(model, [parse_attack(attack)], x, y, **arguments)
    atomic_save(path, tuned.save_weights)
    return tuned


# --- summaries -------------------------------------------------------------------------------

Curves = dict[tuple[str, str, str], dict[int, list[float]]]


def target_accuracy(record: Record) -> float:
    """The accuracy under the attack of the threat model adapted to."""
    return record["metrics"]["robust_accuracy"][record["target"]]


def union_accuracy(record: Record) -> float:
    """The per-example union over all four threat models."""
    return record["metrics"]["union"]["all"]


def union_curves(records: Sequence[Record]) -> Curves:
    """`curves` of the union of all four, over the records measured on all four (not on T alone)."""
    return curves([r for r in records if "all" in r["metrics"]["union"]], union_accuracy)


def curves(records: Sequence[Record], metric: Callable[[Record], float]) -> Curves:
    """``metric`` over the seeds by (task set, method, fine-tuning) and k, in record order; the
    k = 0 points (records of fine-tuning "none", with ``task_set`` and ``method``) start every curve."""
    grouped: Curves = {}
    for record in records:
        if record["k"]:
            key = (record["task_set"], record["method"], record["finetuning"])
            grouped.setdefault(key, {}).setdefault(record["k"], []).append(metric(record))
    for (task_set, method, _), curve in grouped.items():
        curve[0] = [metric(r) for r in records if (r["task_set"], r["method"], r["k"]) == (task_set, method, 0)]
    return {key: dict(sorted(curve.items())) for key, curve in grouped.items()}


def targets(records: Sequence[Record]) -> dict[str, str]:
    """The threat model T adapted to, by task set, in record order."""
    return {r["task_set"]: r["target"] for r in records}


def adaptation_rows(records: Sequence[Record]) -> list[list[str]]:
    """Table rows (task set, T, method, fine-tuning, k, seeds, accuracy on T, union of all; "-"
    where measured on T alone) with mean ± standard deviation over the seeds, in %."""
    on_target = curves(records, target_accuracy)
    union = union_curves(records)
    target_of = targets(records)
    return [[task_set, target_of[task_set], method, finetuning, str(k), str(len(values)), mean_std(values),
             mean_std(union.get((task_set, method, finetuning), {}).get(k, []))]
            for (task_set, method, finetuning), curve in on_target.items() for k, values in curve.items()]


def union_lines(records: Sequence[Record]) -> list[str]:
    """Per task set, MAT method (any fine-tuning) and k where the union of the four was measured:
    its union against the best baseline's at that k, the difference of the means and twice its
    standard error (over seeds). Fine-tuning on T can cost the other threat models; this says whose
    robustness survives adaptation."""
    union = union_curves(records)
    baselines = {key: c for key, c in union.items() if recipe(key[1])[0] not in META_METHODS}
    lines, judged = [], set()
    for (task_set, method, finetuning), curve in union.items():
        if recipe(method)[0] not in META_METHODS:
            continue
        for k, values in curve.items():
            if not values or k == 0 and (task_set, method) in judged:
                continue  # the trained model starts every fine-tuning's curve: judge it once
            judged.add((task_set, method))
            if not (best := _best_baseline(baselines, task_set, k)):
                continue
            gap, two_se = difference(values, best[1])
            verdict = "" if np.isnan(two_se) else "; beyond 2 SE" if abs(gap) > two_se else "; within 2 SE"
            how = "trained model" if k == 0 else finetuning
            lines.append(f"- {task_set}, k={k} ({how}): {method} ({_seeds(len(values))}) {100 * np.mean(values):.1f}"
                         f" vs best baseline {best[0]} ({_seeds(len(best[1]))}) {100 * np.mean(best[1]):.1f}:"
                         f" {_gap(gap, two_se)}{verdict}.")
    return lines


def _best_baseline(baselines: Curves, task_set: str, k: int) -> tuple[str, list[float]] | None:
    """The baseline of ``task_set`` with the highest mean at ``k`` and its values, if any has some."""
    rivals = [(m, c[k]) for (s, m, _), c in baselines.items() if s == task_set and c.get(k)]
    return max(rivals, key=lambda rival: np.mean(rival[1]), default=None)


def target_lines(records: Sequence[Record]) -> list[str]:
    """Issue 16's adaptation target, per task set, MAT method (a meta method or variant, any
    fine-tuning) and k: the MAT method reaches the best baseline's mean accuracy on T after
    fine-tuning on k images with at most k / 3 images (the smallest measured k where its mean is at
    least as high)."""
    on_target, lines = curves(records, target_accuracy), []
    for task_set, target in targets(records).items():
        baselines = {m: c for (s, m, _), c in on_target.items() if s == task_set and recipe(m)[0] not in META_METHODS}
        bests = {k: max((float(np.mean(c[k])), m) for m, c in baselines.items() if k in c)
                 for k in sorted({k for c in baselines.values() for k in c if k})}
        for mat_method in dict.fromkeys(m for s, m, _ in on_target if s == task_set and recipe(m)[0] in META_METHODS):
            mat = {f: c for (s, m, f), c in on_target.items() if (s, m) == (task_set, mat_method)}
            for k, (best, method) in bests.items():
                reached = min(((j, f) for f, c in mat.items() for j, v in c.items() if np.mean(v) >= best),
                              default=None)
                found = f"reaches it with k={reached[0]} ({reached[1]})" if reached else "does not reach it"
                verdict = "met" if reached and reached[0] <= k / 3 else "NOT met"
                lines.append(f"- {task_set}, k={k}: best baseline {method} {100 * best:.1f} % on {target};"
                             f" {mat_method} {found}: {verdict}.")
    return lines
