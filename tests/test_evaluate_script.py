"""scripts/evaluate.py end to end, in a subprocess, on a small trained CNN and 20 test images."""
from __future__ import annotations

import json
import re
import subprocess

import numpy as np
import pytest

from metaadv_tf.attacks import get_attack
from metaadv_tf.data import load_arrays
from helpers import run_script  # noqa: I100  (tests/ is on sys.path)


@pytest.fixture(scope="module")
def model_path(trained_cnn, tmp_path_factory) -> str:
    """The session's trained CNN (about 80 % clean accuracy: attacks have something to lower)."""
    path = tmp_path_factory.mktemp("model") / "cnn.keras"
    trained_cnn[0].save(path)
    return str(path)


def run_evaluate(*flags: str) -> subprocess.CompletedProcess:
    return run_script("evaluate.py", *flags, timeout=300)


def test_evaluates_and_writes_json_and_markdown(model_path, trained_cnn, tmp_path):
    output = tmp_path / "report.json"
    result = run_evaluate(
        f"--model={model_path}", "--attacks=fgsm", "--num_examples=20", "--batch_size=10",
        f"--output={output}",
    )
    assert result.returncode == 0, result.stderr
    report = json.loads(output.read_text())
    assert report["num_examples"] == 20
    assert set(report["robust_accuracy"]) == {"fgsm"}
    # the same numbers, computed here from the model's predictions on the first 20 test images
    model, (x, y) = trained_cnn[0], load_arrays("fashion_mnist", "test", 20)
    clean = np.argmax(model(x, training=False), axis=1) == y
    robust = clean & (np.argmax(model(get_attack("fgsm")(model, x, y), training=False), axis=1) == y)
    assert report["clean_accuracy"] == pytest.approx(clean.mean())
    assert report["robust_accuracy"]["fgsm"] == pytest.approx(robust.mean())
    assert report["worst_case_accuracy"] == pytest.approx(robust.mean())  # one attack: its accuracy
    assert robust.sum() < clean.sum()  # FGSM fooled some examples: the values tell clean from robust
    assert report["metadata"]["dataset"] == "fashion_mnist"
    table = (tmp_path / "report.md").read_text()
    assert "| fgsm |" in table and "| clean |" in table
    assert table.strip() in result.stdout


@pytest.mark.parametrize(
    "flag, message",
    [
        ("--attacks=fgsm,pgd_linff", "Unknown attack 'pgd_linff'"),
        ("--model=/nonexistent/model.keras", "no model file at '/nonexistent/model.keras'"),
    ],
)
def test_bad_flag_exits_1_with_one_line(model_path, flag, message):
    result = run_evaluate(f"--model={model_path}", "--num_examples=20", flag)
    assert result.returncode == 1
    assert message in result.stderr
    assert "Traceback" not in result.stderr


LOG_LINE = re.compile(r"^(?:[IWEF]\d{4} |(?:INFO|WARNING|ERROR)[:\s])", re.MULTILINE)


def test_output_has_no_log_lines_unless_verbosity_is_given(model_path):
    # six attacks traced: TensorFlow called that "retracing" after five, when they shared one step function
    flags = (f"--model={model_path}", "--attacks=fgsm,pgd_linf(steps=2),bim(steps=2),mim(steps=2),"
             "pgd_l2(steps=2),spsa(steps=1,num_samples=2)", "--num_examples=20", "--batch_size=10")
    quiet = run_evaluate(*flags)
    assert quiet.returncode == 0, quiet.stderr
    assert not LOG_LINE.search(quiet.stderr), quiet.stderr
    verbose = run_evaluate(*flags, "--verbosity=0")
    assert verbose.returncode == 0, verbose.stderr
    assert re.search(r"^I\d{4} .* dataset_info\.py:\d+\] Load dataset info", verbose.stderr, re.MULTILINE)


def test_research_artifact_warning_is_one_line():
    result = run_evaluate("--model=cnn_fomaml", "--attacks=fgsm", "--num_examples=4", "--batch_size=4")
    assert result.returncode == 0, result.stderr
    lines = [line for line in result.stderr.splitlines() if "research artifact" in line]
    assert len(lines) == 1 and lines[0].startswith("Warning: Zoo model 'cnn_fomaml' is a research artifact")
    assert "warnings.warn" not in result.stderr and "return load_model" not in result.stderr
