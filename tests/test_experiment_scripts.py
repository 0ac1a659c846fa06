"""One-step end-to-end runs of the experiment and benchmark scripts on tiny configurations."""
from __future__ import annotations

import dataclasses
import json
import re
from pathlib import Path

import pytest

from metaadv_tf import publish, zoo
from metaadv_tf.training import read_run_config
from helpers import run_script, run_tiny_study, train_tiny_run  # noqa: I100  (tests/ is on sys.path)

EXPERIMENTS = "scripts/experiments"


@pytest.fixture(scope="module")
def tiny_zoo(tmp_path_factory):
    """A zoo directory with two tiny published models."""
    root = tmp_path_factory.mktemp("experiments")
    for name in ("tiny_a", "tiny_b"):
        train_tiny_run(root / name)
        publish.publish(str(root / name), name, attacks="fgsm,mim(steps=2)", num_examples=20,
                    directory=str(root / "zoo"))
    return root / "zoo"


def test_ablation_script(tmp_path):
    output = tmp_path / "ablation.md"
    result = run_script("ablation.py", "--steps=1", "--eval_examples=10", "--variants=basic,all",
                        "--unseen_attacks=mim(steps=2)", f"--workdir={tmp_path}", f"--output={output}",
                        folder=EXPERIMENTS)
    assert result.returncode == 0, result.stderr[-2000:]
    rows = json.loads((tmp_path / "ablation.json").read_text())
    assert [row["variant"] for row in rows] == ["basic", "all"]
    assert "| basic |" in output.read_text() and "worst unseen" in output.read_text()


def test_leave_one_out_script(tmp_path):
    output = tmp_path / "loo.md"
    result = run_script("leave_one_out.py", "--families=fgsm,mim(steps=2)", "--steps=1", "--eval_examples=10",
                        f"--workdir={tmp_path}", f"--output={output}", folder=EXPERIMENTS)
    assert result.returncode == 0, result.stderr[-2000:]
    records = json.loads((tmp_path / "loo.json").read_text())
    assert {(r["held_out"], r["method"]) for r in records} == {
        ("fgsm", "mat"), ("fgsm", "avg"), ("mim(steps=2)", "mat"), ("mim(steps=2)", "avg")}
    assert "| mim(steps=2) |" in output.read_text()


def test_few_shot_script_and_comparison(tiny_zoo, tmp_path):
    output = tmp_path / "few.md"
    result = run_script("few_shot.py", "--models=tiny_a,tiny_b", "--attack=mim(steps=2)", "--shots=4,8",
                        "--target_k=8", "--steps=1", "--eval_examples=10", f"--output={output}", zoo_dir=tiny_zoo,
                        folder=EXPERIMENTS)
    assert result.returncode == 0, result.stderr[-2000:]
    curves = json.loads((tmp_path / "few.json").read_text())
    assert set(curves) == {"tiny_a", "tiny_b"} and list(curves["tiny_a"]) == ["0", "4", "8"]
    assert (tmp_path / "few.png").read_bytes()[:4] == b"\x89PNG"
    assert "Gain at k=8: tiny_a" in output.read_text()
    result = run_script("compare_models.py", "--candidate=tiny_a", "--baselines=tiny_b",
                        "--pgd_at=tiny_b", zoo_dir=tiny_zoo, folder=EXPERIMENTS)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "| tiny_a | standard | 20 |" in result.stdout and "target >= +5" in result.stdout


def test_throughput_benchmark_prints_every_method_relative_to_pgd_at(tmp_path):
    output = tmp_path / "throughput.md"
    result = run_script("throughput.py", "--models=cnn", "--methods=pgd_at,mat,mat+pool+inner2",
                        "--steps=1", f"--output={output}", folder="benchmarks")
    assert result.returncode == 0, result.stderr[-2000:]
    table = output.read_text()
    assert "| cnn | pgd_at |" in table and "| 1.00 |" in table and "| cnn | mat+pool+inner2 |" in table
    bad = run_script("throughput.py", "--models=cnn", "--methods=mat+fast", "--steps=1", folder="benchmarks")
    assert bad.returncode == 1 and "Unknown option +fast" in bad.stderr


def test_attack_precision_benchmark_times_each_attack_in_both_precisions(tiny_zoo, tmp_path):
    output = tmp_path / "precision.md"
    result = run_script("attack_precision.py", "--model=tiny_a", "--attacks=pgd_linf(steps=1),spatial(samples=2)",
                        "--examples=16", "--batch_size=8", f"--output={output}", zoo_dir=tiny_zoo, folder="benchmarks")
    assert result.returncode == 0, result.stderr[-2000:]
    rows = re.findall(r"^\| `(\w+)\(.*\)` \| ([\d.]+) \| ([\d.]+) \| ([\d.]+)x \| ([\d.]+) \| ([\d.]+) \|$",
                      output.read_text(), re.MULTILINE)
    assert [row[0] for row in rows] == ["pgd_linf", "spatial"]
    assert all(0 <= float(accuracy) <= 100 for row in rows for accuracy in row[4:])
    bad = run_script("attack_precision.py", "--model=tiny_a", "--examples=10", "--batch_size=8", zoo_dir=tiny_zoo,
                     folder="benchmarks")
    assert bad.returncode == 1 and "--examples must be at least 2 x --batch_size (16)" in bad.stderr
    assert "Traceback" not in bad.stderr


def write_tiny_recipe(directory: Path, name: str, source: str) -> None:
    """A card ``name`` in ``directory``: zoo card ``source`` with its recipe shrunk to a width-4 CNN,
    64 images, batch 16 (meta: 2 tasks x (8 + 8)), and a validation the benchmark must drop (holding
    out 48 images would leave too few for a meta step)."""
    card = zoo.get_card(source, directory=zoo.PACKAGE_CARDS_DIR)
    config = {**card.train_config, "model_args": {"width": 4}, "train_examples": 64, "batch_size": 16,
              "validation_examples": 48, "eval_every": 1,
              "meta": {**card.train_config["meta"], "support_size": 8, "query_size": 8}}
    tiny = dataclasses.replace(card, name=name, weights=f"{name}.weights.h5", train_config=config)
    (directory / f"{name}.json").write_text(tiny.to_json())


def test_throughput_benchmark_times_zoo_recipes_beside_pgd_at(tmp_path):
    for name, source in (("tiny_mat_inner3", "cnn_mat_inner3"), ("tiny_max", "cnn_max")):
        write_tiny_recipe(tmp_path, name, source)
    output = tmp_path / "throughput.md"
    result = run_script("throughput.py", "--recipe=tiny_mat_inner3,tiny_max", "--steps=1", f"--output={output}",
                        zoo_dir=tmp_path, folder="benchmarks")
    assert result.returncode == 0, result.stderr[-2000:]
    rows = {row[1]: (float(row[2]), row[3]) for row in re.findall(r"^\| (cnn) \| (\S+) \| ([\d.]+) \| (\S+) \|$",
                                                                   output.read_text(), re.MULTILINE)}
    assert list(rows) == ["pgd_at", "tiny_mat_inner3", "tiny_max"]  # one pgd_at row: the recipes share it
    assert rows["pgd_at"][1] == "1.00"
    for name in ("tiny_mat_inner3", "tiny_max"):
        assert float(rows[name][1]) == pytest.approx(rows[name][0] / rows["pgd_at"][0], abs=0.02)


def test_throughput_benchmark_names_an_unknown_recipe_and_the_choices():
    result = run_script("throughput.py", "--recipe=cnn_mat,cnn_mat_inner4", folder="benchmarks",
                        env={zoo.ZOO_DIR_ENV: zoo.PACKAGE_CARDS_DIR})
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert "Unknown zoo model 'cnn_mat_inner4'. Did you mean 'cnn_mat_inner3'" in result.stderr
    assert "Expected one of: cnn_avg, " in result.stderr and result.stdout == ""  # nothing timed


def test_throughput_benchmark_times_training_runs_recipes_beside_pgd_at(tmp_path):
    from metaadv_tf.training import MetaConfig, TrainConfig, train

    run = tmp_path / "no_L1" / "mat_seed0"
    config = TrainConfig(method="mat", model="cnn", model_args={"width": 4}, train_examples=64, steps=1,
                         batch_size=16, epochs=None, meta=MetaConfig(num_tasks=2, support_size=4, query_size=4),
                         train_attacks="fgsm,pgd_l2(steps=2)", checkpoint_every=1)
    train(config, str(run), progress=False)
    output = tmp_path / "throughput.md"
    result = run_script("throughput.py", f"--runs={run}", "--steps=1", f"--output={output}", folder="benchmarks")
    assert result.returncode == 0, result.stderr[-2000:]
    labels = re.findall(r"^\| cnn \| (\S+) \| [\d.]+ \| \S+ \|$", output.read_text(), re.MULTILINE)
    assert labels == ["pgd_at", "no_L1/mat_seed0"]
    missing = run_script("throughput.py", f"--runs={tmp_path}", "--steps=1", folder="benchmarks")
    assert missing.returncode == 1 and "has no config.json" in missing.stderr and "Traceback" not in missing.stderr


def test_recipe_search_varies_the_base_recipe_and_checks_the_protocol(tmp_path):
    from metaadv_tf.training import MetaConfig, TrainConfig, train

    base = TrainConfig(method="mat", model="cnn", model_args={"width": 4}, train_examples=64, steps=1, batch_size=32,
                       epochs=None, meta=MetaConfig(num_tasks=2, support_size=8, query_size=8),
                       train_attacks="fgsm,pgd_linf(steps=2)", checkpoint_every=1)
    train(base, str(tmp_path / "base"), progress=False)
    publish.publish(str(tmp_path / "base"), "tiny_mat", num_examples=4, directory=str(tmp_path / "zoo"))
    output = tmp_path / "recipes.md"
    arguments = ["--base=tiny_mat", "--reference=tiny_mat", "--recipes=longer_inner", f"--output={output}",
                 f"--workdir={tmp_path / 'runs'}"]
    result = run_script("recipe_search.py", *arguments, "--eval_examples=4", zoo_dir=tmp_path / "zoo",
                        folder=EXPERIMENTS)
    assert result.returncode == 0, result.stderr[-2000:]
    rows = json.loads((tmp_path / "recipes.json").read_text())
    assert [row["recipe"] for row in rows] == ["tiny_mat (zoo)", "longer_inner"]
    assert rows[1]["config"]["meta"] == {**json.loads(base.to_json())["meta"], "inner_steps": 3}
    text = output.read_text()
    assert "| longer_inner |" in text and "worst unseen" in text
    assert "- `longer_inner`: 3 inner SGD steps" in text and "`stronger_tasks`" not in text  # only recipes run
    result = run_script("recipe_search.py", *arguments[:2], "--recipes=baseline_max", "--seed=3",
                        "--eval_examples=4", f"--output={output}", f"--workdir={tmp_path / 'runs'}",
                        zoo_dir=tmp_path / "zoo", folder=EXPERIMENTS)
    assert result.returncode == 0, result.stderr[-2000:]
    row = json.loads((tmp_path / "recipes.json").read_text())[1]
    assert row["recipe"] == "baseline_max_seed3" and (row["config"]["seed"], row["config"]["method"]) == (3, "max")
    assert (tmp_path / "runs" / "baseline_max_seed3" / "config.json").exists()
    assert "seed 3)" in output.read_text()
    result = run_script("recipe_search.py", *arguments, "--eval_examples=5", zoo_dir=tmp_path / "zoo",
                        folder=EXPERIMENTS)
    assert result.returncode == 1 and "evaluated with another protocol" in result.stderr


def test_threat_model_study_first_steps_print_each_step_and_write_nothing(tmp_path):
    output = tmp_path / "study.md"
    result = run_tiny_study(tmp_path / "runs", output, "--task_sets=no_L1", "--methods=sat,mat_worst",
                            "--seeds=1", "--first_steps=2", "--warmup_steps=2")
    assert result.returncode == 0, result.stderr[-2000:]
    steps = re.findall(r"no_L1 (\S+) seed 1 step (\d): [\d.]+ s, loss ([\d.]+), gradient norm ([\d.]+)",
                       result.stdout)
    assert [(method, step) for method, step, _, _ in steps] == [
        ("sat", "0"), ("sat", "1"), ("mat_worst", "0"), ("mat_worst", "1")]
    assert all(0 < float(loss) < 100 and float(norm) > 0 for _, _, loss, norm in steps)
    assert not (tmp_path / "runs").exists() and not output.exists()  # a check: nothing written


def test_threat_model_study_trains_validates_measures_v2_and_is_checked_with_art(tmp_path):
    """One tiny run of the study: trained on Linf, L2 and spatial, measured on all four threat
    models with protocol v2 from its best validation checkpoint; then external_check.py attacks it
    with ART beside the per-image v2 results it reads back."""
    output = tmp_path / "study.md"
    result = run_tiny_study(tmp_path / "runs", output, "--task_sets=no_L1", "--methods=sat", "--seeds=1",
                            "--checkpoint_every=3", "--warmup_steps=2", "--attack_precision=mixed_bfloat16")
    assert result.returncode == 0, result.stderr[-2000:]
    config = read_run_config(str(tmp_path / "runs" / "no_L1" / "sat_seed1"))
    assert (config.checkpoint_every, config.warmup_steps, config.attack_precision) == (3, 2, "mixed_bfloat16")
    records = json.loads((tmp_path / "study.json").read_text())
    assert [(r["task_set"], r["method"], r["seed"]) for r in records] == [("no_L1", "sat", 1)]
    assert records[0]["settings"]["unseen"] == ["L1"] and records[0]["settings"]["num_examples"] == 8
    assert records[0]["images_seen"] == 4 * 128  # 512 training images, 1 epoch
    assert (tmp_path / "runs" / "no_L1" / "sat_seed1" / "best.weights.h5").exists()
    assert "| no_L1 | L1 | sat | 1 |" in output.read_text() and "| train min |" in output.read_text()
    assert "Small CNN on Fashion-MNIST" in output.read_text()  # --model's name
    assert (tmp_path / "study_validation.png").stat().st_size > 0  # the validation curves
    assert [epoch for epoch, _ in records[0]["validation"]] == [0.5, 1.0]  # kept in the record

    partial = run_tiny_study(tmp_path / "runs", tmp_path / "partial.md", "--task_sets=no_L1", "--methods=sat,mat",
                             "--seeds=1", "--measured_only")
    assert partial.returncode == 0, partial.stderr[-2000:]
    assert json.loads((tmp_path / "partial.json").read_text()) == records  # the measured run only
    assert not (tmp_path / "runs" / "no_L1" / "mat_seed1").exists()  # nothing trained
    (tmp_path / "runs" / "no_L1" / "sat_seed1" / "v2.json").rename(tmp_path / "v2.json")
    again = run_tiny_study(tmp_path / "runs", tmp_path / "partial.md", "--task_sets=no_L1", "--methods=sat",
                           "--seeds=1", "--measured_only")
    assert again.returncode == 0, again.stderr[-2000:]
    assert json.loads((tmp_path / "partial.json").read_text()) == records  # the run's record, from the JSON
    (tmp_path / "v2.json").rename(tmp_path / "runs" / "no_L1" / "sat_seed1" / "v2.json")

    run = tmp_path / "runs" / "no_L1" / "sat_seed1"
    checked = run_script("external_check.py", f"--runs={run}", "--examples=8", "--steps=2", "--queries=4",
                         f"--output={tmp_path / 'external.md'}", folder="scripts/experiments")
    assert checked.returncode == 0, checked.stderr[-2000:]
    external = json.loads((tmp_path / "external.json").read_text())
    assert [r["threat_model"] for r in external] == ["Linf", "L2", "L1"]
    for r in external:
        assert r["ours"] == records[0]["metrics"]["robust_accuracy"][r["threat_model"]]  # same 8 images
        assert r["outside"] <= min(r["attacks"].values())  # per-image worst
        assert r["both"] <= min(r["ours"], r["outside"])
        assert set(r["non-finite"]) == set(r["attacks"])
    assert [list(r["attacks"]) for r in external] == [
        ["ART APGD-CE", "ART APGD-DLR", "ART Square", "foolbox FMN"]] * 2 + [
        ["ART APGD-CE", "ART APGD-DLR", "foolbox FMN", "foolbox SparseL1"]]  # ART has no L1 Square
    too_many = run_script("external_check.py", f"--runs={run}", "--examples=9", folder="scripts/experiments")
    assert too_many.returncode != 0 and "--examples=9" in too_many.stderr
