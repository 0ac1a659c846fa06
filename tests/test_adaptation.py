"""Quick adaptation to a held-out threat model: the summaries, and scripts/experiments/adaptation.py
end to end on a tiny run of the threat-model study."""
from __future__ import annotations

import json

import numpy as np
import pytest

from metaadv_tf import threat_study as study
from metaadv_tf.protocols import THREAT_MODELS
from metaadv_tf.training import MetaConfig, TrainConfig
from helpers import run_script, run_tiny_study  # noqa: I100  (tests/ is on sys.path)

# held-out (L1) accuracy by (method, seed, fine-tuning, k)
ACCURACY = {("sat", 0, "none", 0): 0.10, ("sat", 0, "adversarial", 100): 0.20, ("sat", 0, "adversarial", 1000): 0.30,
            ("sat", 1, "none", 0): 0.12, ("sat", 1, "adversarial", 100): 0.30, ("sat", 1, "adversarial", 1000): 0.34,
            ("mat", 0, "none", 0): 0.15, ("mat", 0, "adversarial", 100): 0.26, ("mat", 0, "adversarial", 1000): 0.40,
            ("mat", 0, "mat-inner", 100): 0.22, ("mat", 0, "mat-inner", 1000): 0.35}


def synthetic_records() -> list[dict]:
    return [{"task_set": "no_L1", "target": "L1", "method": method, "seed": seed, "finetuning": finetuning,
             "k": k, "metrics": {"robust_accuracy": {"L1": accuracy}, "union": {"all": accuracy / 2}}}
            for (method, seed, finetuning, k), accuracy in ACCURACY.items()]


def test_curves_start_every_fine_tuning_at_the_trained_model():
    curves = study.curves(synthetic_records(), study.target_accuracy)
    assert list(curves) == [("no_L1", "sat", "adversarial"), ("no_L1", "mat", "adversarial"),
                            ("no_L1", "mat", "mat-inner")]
    assert curves["no_L1", "sat", "adversarial"] == {0: [0.10, 0.12], 100: [0.20, 0.30], 1000: [0.30, 0.34]}
    assert curves["no_L1", "mat", "mat-inner"] == {0: [0.15], 100: [0.22], 1000: [0.35]}


def test_rows_give_mean_and_std_over_seeds_of_held_out_accuracy_and_union():
    rows = study.adaptation_rows(synthetic_records())
    assert len(rows) == 9
    assert rows[1] == ["no_L1", "L1", "sat", "adversarial", "100", "2", "25.0 ± 7.1", "12.5 ± 3.5"]
    assert rows[-1] == ["no_L1", "L1", "mat", "mat-inner", "1000", "1", "35.0 ± 0.0", "17.5 ± 0.0"]


def test_target_needs_mat_at_a_third_of_the_images_or_fewer():
    # best baseline: sat, 25 % at k = 100 (MAT first reaches it at k = 100: not met),
    # 32 % at k = 1000 (MAT reaches it at k = 1000 only with adversarial fine-tuning: not met)
    assert study.target_lines(synthetic_records()) == [
        "- no_L1, k=100: best baseline sat 25.0 % on L1; mat reaches it with k=100 (adversarial): NOT met.",
        "- no_L1, k=1000: best baseline sat 32.0 % on L1; mat reaches it with k=1000 (adversarial): NOT met.",
    ]
    ACCURACY_MET = {**ACCURACY, ("mat", 0, "mat-inner", 100): 0.33}
    records = [{**r, "metrics": {"robust_accuracy": {"L1": ACCURACY_MET[r["method"], r["seed"], r["finetuning"],
                                                                         r["k"]]}}} for r in synthetic_records()]
    assert study.target_lines(records)[1] == (
        "- no_L1, k=1000: best baseline sat 32.0 % on L1; mat reaches it with k=100 (mat-inner): met.")


def test_target_lines_judge_every_mat_variant_and_never_a_baseline():
    variant = [{**r, "method": "mat_worst_maxanchor"} for r in synthetic_records() if r["method"] == "mat"]
    baseline = [{**r, "method": "max", "metrics": {"robust_accuracy": {"L1": 0.0}, "union": {"all": 0.0}}}
                for r in synthetic_records() if r["method"] == "sat"]
    lines = study.target_lines(synthetic_records() + variant + baseline)
    assert len(lines) == 4  # mat and the variant, at k = 100 and 1000; max is a baseline
    assert lines[2] == ("- no_L1, k=100: best baseline sat 25.0 % on L1; mat_worst_maxanchor reaches it with"
                        " k=100 (adversarial): NOT met.")


def test_union_lines_set_each_mat_curve_against_the_best_baseline_at_each_k():
    union = {("sat", "none", 0): [0.40, 0.42], ("sat", "adversarial", 1000): [0.38, 0.40],
             ("max", "adversarial", 1000): [0.30, 0.30], ("mat", "none", 0): [0.41, 0.43],
             ("mat", "adversarial", 1000): [0.46, 0.48], ("mat", "mat-inner", 1000): [0.40, 0.44]}
    records = [{"task_set": "no_L1", "target": "L1", "method": method, "seed": seed, "finetuning": finetuning,
                "k": k, "metrics": {"robust_accuracy": {"L1": 0.5}, "union": {"all": value}}}
               for (method, finetuning, k), values in union.items() for seed, value in enumerate(values)]
    target_only = {**records[0], "method": "avg", "metrics": {"robust_accuracy": {"L1": 0.9}, "union": {}}}
    assert study.union_lines(records + [target_only]) == [
        "- no_L1, k=0 (trained model): mat (2 seeds) 42.0 vs best baseline sat (2 seeds) 41.0: +1.0 ± 2.8 (2 SE);"
        " within 2 SE.",
        "- no_L1, k=1000 (adversarial): mat (2 seeds) 47.0 vs best baseline sat (2 seeds) 39.0: +8.0 ± 2.8 (2 SE);"
        " beyond 2 SE.",
        "- no_L1, k=1000 (mat-inner): mat (2 seeds) 42.0 vs best baseline sat (2 seeds) 39.0: +3.0 ± 4.5 (2 SE);"
        " within 2 SE.",
    ]
    one_seed = [r for r in records if r["seed"] == 0]
    assert study.union_lines(one_seed)[0] == ("- no_L1, k=0 (trained model): mat (1 seed) 41.0 vs best baseline sat"
                                              " (1 seed) 40.0: +1.0 ± n/a (2 SE).")


def test_adaptation_targets_the_held_out_threat_model_or_a_new_one():
    config = TrainConfig(train_attacks=study.train_attacks("no_L1"))
    target, attack, settings = study.adaptation_target(config, num_examples=8)
    assert (target, attack, settings["unseen"], settings["num_examples"]) == ("L1", study.TASKS["L1"], ["L1"], 8)
    target, attack, settings = study.adaptation_target(config, new_threat_model="spatial30")
    assert (target, settings["unseen"]) == ("spatial30", ["L1", "spatial30"])
    assert "max_angle=30.0" in attack and "samples=5" in attack
    assert "angles=31" in settings["attacks"]["spatial30"] and "max_shift=3.0" in settings["attacks"]["spatial30"]
    assert settings["unions"]["all"] == list(THREAT_MODELS)  # the union stays v2's four
    everything = TrainConfig(train_attacks=study.train_attacks("all"))
    with pytest.raises(ValueError, match=r"leaves out \[\]: adaptation needs exactly one threat model"):
        study.adaptation_target(everything)
    assert study.adaptation_target(everything, new_threat_model="spatial30")[2]["unseen"] == ["spatial30"]
    with pytest.raises(ValueError, match="Unknown new threat model 'rotation'"):
        study.adaptation_target(everything, new_threat_model="rotation")
    _, _, alone = study.adaptation_target(everything, new_threat_model="spatial30", target_only=True)
    assert (list(alone["attacks"]), alone["unions"], alone["seen"], alone["unseen"]) == (
        ["spatial30"], {}, [], ["spatial30"])


def test_rows_of_points_measured_on_the_target_alone_have_no_union():
    records = [{**r, "metrics": {"robust_accuracy": r["metrics"]["robust_accuracy"], "union": {}}}
               if r["method"] == "sat" else r for r in synthetic_records()]
    rows = study.adaptation_rows(records)
    assert rows[1] == ["no_L1", "L1", "sat", "adversarial", "100", "2", "25.0 ± 7.1", "-"]
    assert rows[-1][-1] == "17.5 ± 0.0"


def test_model_names_of_the_tables():
    assert [study.model_name(c) for c in ("cnn", "resnet18", "mlp")] == ["Small CNN", "ResNet-18", "mlp"]


def test_held_out_threat_models_of_the_task_sets():
    assert [study.held_out(s) for s in study.TASK_SETS] == [[], ["L1"], ["L2"], ["spatial"]]
    with pytest.raises(ValueError, match="Unknown task set 'no_L3'"):
        study.held_out("no_L3")


@pytest.mark.slow
def test_adaptation_fine_tunes_each_finished_run_on_its_held_out_threat_model(tmp_path):
    runs = tmp_path / "runs"
    trained = run_tiny_study(runs, tmp_path / "study.md", "--task_sets=no_L1", "--methods=mat", "--seeds=1")
    assert trained.returncode == 0, trained.stderr[-2000:]
    output = tmp_path / "adaptation.md"
    arguments = ["adaptation.py", "--task_sets=no_L1", "--methods=mat,sat", "--seeds=1", "--ks=16",
                 "--finetune_steps=2", "--learning_rate=0.01", "--eval_examples=8", f"--workdir={runs}",
                 f"--output={output}"]
    result = run_script(*arguments, folder="scripts/experiments")
    assert result.returncode == 0, result.stderr[-2000:]
    assert f"Skipping {runs / 'no_L1' / 'sat_seed1'}" in result.stdout  # no such run
    records = json.loads((tmp_path / "adaptation.json").read_text())
    assert [(r["method"], r["finetuning"], r["k"]) for r in records] == [
        ("mat", "none", 0), ("mat", "adversarial", 16), ("mat", "mat-inner", 16)]
    assert all(r["target"] == "L1" and r["attack"] == study.TASKS["L1"] and r["settings"]["num_examples"] == 8
               and set(r["metrics"]["robust_accuracy"]) == set(THREAT_MODELS) for r in records)
    trained_record = json.loads((runs / "no_L1" / "mat_seed1" / "v2.json").read_text())
    assert records[0]["metrics"] == trained_record["metrics"]  # k = 0: the study's own measurement,
    assert not list((runs / "no_L1" / "mat_seed1" / "adaptation").glob("k0*"))  # not measured again
    assert records[1]["finetune"] == {"optimizer": "adam", "learning_rate": 0.01, "batch_size": 16,
                                      "training_mode": False, "steps_per_batch": 1, "steps": 2, "seed": 1}
    # the study's MAT recipe: 32 support images, 3 inner steps at the inner learning rate 0.05
    assert records[2]["finetune"] == {"optimizer": "sgd", "learning_rate": 0.05, "batch_size": 16,
                                      "training_mode": True, "steps_per_batch": 3, "steps": 2, "seed": 1}
    clean = [r["metrics"]["clean_accuracy"] for r in records]
    assert clean[1] != clean[0] and clean[2] != clean[0]  # the fine-tuned copies are measured
    assert "| no_L1 | L1 | mat | mat-inner | 16 | 1 |" in output.read_text()
    assert (tmp_path / "adaptation.png").read_bytes()[:4] == b"\x89PNG"
    weights = sorted((runs / "no_L1" / "mat_seed1" / "adaptation").glob("*/tuned.weights.h5"))
    assert len(weights) == 2
    saved = [path.stat().st_mtime_ns for path in weights]
    again = run_script(*arguments, folder="scripts/experiments")  # resumes: nothing is fine-tuned again
    assert again.returncode == 0, again.stderr[-2000:]
    assert [path.stat().st_mtime_ns for path in weights] == saved
    assert json.loads((tmp_path / "adaptation.json").read_text()) == records
    # a threat model beyond v2's: k = 0 runs only its attack, reusing the run's cache for v2's four
    new = run_script(*arguments[:-1], "--new_threat_model=spatial30", "--finetunings=adversarial",
                     f"--output={tmp_path / 'spatial30.md'}", folder="scripts/experiments")
    assert new.returncode == 0, new.stderr[-2000:]
    records = json.loads((tmp_path / "spatial30.json").read_text())
    assert [(r["target"], r["finetuning"], r["k"]) for r in records] == [("spatial30", "none", 0),
                                                                         ("spatial30", "adversarial", 16)]
    assert records[1]["attack"] == "spatial(angles=21, max_angle=30.0, max_shift=3.0, samples=5, seed=0, shifts=5)"
    assert set(records[0]["metrics"]["robust_accuracy"]) == {*THREAT_MODELS, "spatial30"}
    run_cache = json.loads((runs / "no_L1" / "mat_seed1" / "v2_cache.json").read_text())["results"]
    k0_cache = json.loads((runs / "no_L1" / "mat_seed1" / "adaptation" / "k0_spatial30" / "v2_cache.json")
                          .read_text())["results"]
    assert {label: k0_cache[label] for label in run_cache} == run_cache and "spatial30" in k0_cache
    assert "| no_L1 | spatial30 | mat | adversarial | 16 | 1 |" in (tmp_path / "spatial30.md").read_text()
    alone = run_script(*arguments[:-1], "--new_threat_model=spatial30", "--finetunings=adversarial", "--measure=target",
                       f"--output={tmp_path / 'alone.md'}", folder="scripts/experiments")
    assert alone.returncode == 0, alone.stderr[-2000:]
    records_alone = json.loads((tmp_path / "alone.json").read_text())
    assert [set(r["metrics"]["robust_accuracy"]) for r in records_alone] == [{"spatial30"}] * 2
    # the same images and weights: the same flags as when measured beside v2's four
    assert [r["metrics"]["robust_accuracy"]["spatial30"] for r in records_alone] == [
        r["metrics"]["robust_accuracy"]["spatial30"] for r in records]
    assert "Small CNN on Fashion-MNIST" in (tmp_path / "alone.md").read_text()


def test_study_recipes_of_methods_and_mat_variants():
    assert study.recipe("sat") == ("sat", MetaConfig())
    method, meta = study.recipe("mat")
    assert method == "mat" and (meta.inner_steps, meta.pre_adaptation_weight, meta.memory_steps) == (3, 1.0, 0)
    method, meta = study.recipe("fomaml_mem")
    assert method == "fomaml" and meta.memory_steps == 1 and meta.inner_steps == 3
    assert study.recipe("mat_mem_rates")[1].learn_inner_rates
    assert study.recipe("fomaml_mem_inner5")[1].inner_steps == 5
    assert study.recipe("mat_mem_cross")[1].cross_task_query
    assert study.recipe("mat_worst")[1].worst_case_query
    assert study.recipe("mat_worst_variation")[1].variation_weight == 0.5
    assert study.recipe("mat_memtask")[1].memory_per_task
    meta = study.recipe("mat_worst_maxanchor")[1]  # MAX's objective for θ's own support loss too
    assert meta.worst_case_anchor and meta.worst_case_query and meta.pre_adaptation_weight == 1.0
    meta = study.recipe("mat_worst_tasks4")[1]  # every task of "all" per step, the same 128 images
    assert (meta.num_tasks, meta.support_size, meta.query_size, meta.worst_case_query) == (4, 16, 16, True)
    assert meta.num_tasks == len(study.TASK_SETS["all"])
    meta = study.recipe("mat_worst_tasks3")[1]  # every task of a fold per step, 126 images
    assert (meta.num_tasks, meta.support_size + meta.query_size) == (len(study.TASK_SETS["no_L1"]), 42)
    assert study.recipe("mat_worst_maxanchor_tasks4_lr01")[1].inner_learning_rate == 0.01  # ResNet-18's
    assert study.recipe("mat_worst")[1].inner_learning_rate == MetaConfig().inner_learning_rate == 0.05
    assert study.recipe("pgd_at") == ("pgd_at", MetaConfig())
    method, meta = study.recipe("fomaml_mem_cross_inner1")  # parts combine
    assert method == "fomaml" and (meta.memory_steps, meta.cross_task_query, meta.inner_steps) == (1, True, 1)
    with pytest.raises(ValueError, match=r"Unknown variant part of 'mat_fast'.*'fast'.*mem, memtask"):
        study.recipe("mat_fast")


def test_study_tasks_train_l1_with_apgd_and_msd_with_steps_it_can_take():
    from metaadv_tf.attack_specs import parse_attacks
    from metaadv_tf.msd import MultiSteepestDescent

    assert study.train_attacks("no_L2") == "pgd_linf(steps=5),apgd_ce(norm=1, steps=10),spatial(samples=5)"
    assert study.train_attacks("no_L2", "max") == study.train_attacks("no_L2")
    assert study.train_attacks("no_spatial") == "pgd_linf(steps=5),pgd_l2(steps=5),apgd_ce(norm=1, steps=10)"
    msd = study.train_attacks("all", "msd")
    assert msd == "pgd_linf(steps=5),pgd_l2(steps=5),pgd_l1(steps=5),spatial(samples=5)"
    assert MultiSteepestDescent(tuple(a for a in parse_attacks(msd) if a.norm is not None)).steps == 5
    assert study.train_attacks("no_L1", "msd") == study.train_attacks("no_L1")  # no L1: the same tasks


def test_variant_lines_give_each_variants_changes_and_its_command():
    records = [{"method": m, "task_set": t, "seed": s} for m, t, s in
               [("sat", "no_L1", 0), ("mat_worst", "no_L1", 0), ("mat_worst", "no_L2", 0), ("mat_worst", "no_L1", 1),
                ("fomaml_inner5", "no_L1", 0), ("mat", "no_L1", 0)]]
    assert study.variant_changes("mat") == {} and study.variant_changes("pgd_at") == {}
    assert study.variant_lines(records) == [
        "- `mat_worst` (mat, worst_case_query=True): `python scripts/experiments/threat_models.py"
        " --task_sets=no_L1,no_L2 --methods=mat_worst --seeds=0,1`",
        "- `fomaml_inner5` (fomaml, inner_steps=5): `python scripts/experiments/threat_models.py"
        " --task_sets=no_L1 --methods=fomaml_inner5 --seeds=0`",
    ]
    assert study.variant_lines(records[:2], " --model=resnet18")[0].endswith("--seeds=0 --model=resnet18`")


def test_validation_curve_is_union_accuracy_by_epoch(tmp_path):
    config = TrainConfig(method="sat", train_examples=612, validation_examples=100, batch_size=128, steps=None,
                         epochs=1.0)
    (tmp_path / "config.json").write_text(config.to_json())
    assert study.validation_curve(str(tmp_path)) == {}
    (tmp_path / "validation.json").write_text(json.dumps([{"step": 2, "union": 0.25}, {"step": 4, "union": 0.5}]))
    assert study.validation_curve(str(tmp_path)) == {0.5: 0.25, 1.0: 0.5}  # 512 images: 4 steps per epoch


def _study_record(task_set: str, method: str, seed: int, held: float) -> dict:
    return {"task_set": task_set, "method": method, "seed": seed,
            "metrics": {"robust_accuracy": {tm: held for tm in study.held_out(task_set)}}}


def test_held_out_target_averages_the_folds_per_seed_and_tests_the_gap_at_two_standard_errors():
    records = [_study_record("all", "sat", 0, 0.9)]  # no fold: not part of the target
    for seed, (mat, sat) in enumerate([(0.50, 0.40), (0.52, 0.41), (0.54, 0.42)]):
        records += [_study_record("no_L1", "mat", seed, mat), _study_record("no_L2", "mat", seed, mat + 0.1),
                    _study_record("no_L1", "sat", seed, sat), _study_record("no_L2", "sat", seed, sat)]
    records.append(_study_record("no_L1", "max", 0, 0.99))  # no_L2 missing: left out
    means = study.held_out_over_folds(records)
    np.testing.assert_allclose(means["mat"], [0.55, 0.57, 0.59])
    assert set(means) == {"mat", "sat"}
    gap, two_se = study.difference(means["mat"], means["sat"])
    np.testing.assert_allclose([gap, two_se], [0.16, 2 * np.sqrt(0.02 ** 2 / 3 + 0.01 ** 2 / 3)])
    [line] = study.held_out_target_lines(records)
    assert line.startswith("- mat (3 seeds) 57.0 vs best baseline sat (3 seeds) 41.0: difference +16.0")
    assert line.endswith(": met.")
    assert study.held_out_target_lines(records, margin=0.2)[0].endswith(": NOT met.")
    one_seed = [r for r in records if r["seed"] == 0]
    assert "not testable yet" in study.held_out_target_lines(one_seed)[0]


def test_headroom_compares_the_held_out_accuracy_with_the_same_method_trained_on_all_four():
    records = [_study_record("no_L1", "sat", seed, acc) for seed, acc in enumerate([0.38, 0.40])]
    records += [{"task_set": "all", "method": "sat", "seed": 0, "metrics": {"robust_accuracy": {"L1": 0.47, "L2": 0.6}}},
                _study_record("no_L1", "mat", 0, 0.41), _study_record("no_L2", "sat", 0, 0.5)]
    assert study.headroom_lines(records) == ["- L1, sat: 39.0 held out, 47.0 trained on all four: headroom 8.0.",
                                             "- L2, sat: 50.0 held out, 60.0 trained on all four: headroom 10.0."]


def test_target_lines_name_one_seed_in_the_singular():
    records = [_study_record(fold, method, 0, acc) for fold in ("no_L1", "no_L2")
               for method, acc in (("mat", 0.5), ("sat", 0.4))]
    assert study.held_out_target_lines(records)[0].startswith("- mat (1 seed) 50.0 vs best baseline sat (1 seed) 40.0")
