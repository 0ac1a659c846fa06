"""The model zoo: checks run on every registered entry, research artifacts included, and
the machinery (publish, load, integrity errors) on a tiny model published into ``tmp_path``."""
from __future__ import annotations

import dataclasses
import json
import os
import shlex
import shutil
import subprocess
import sys
import warnings
from pathlib import Path

import h5py
import keras
import numpy as np
import pytest

from metaadv_tf import data, publish, zoo
from metaadv_tf.attack_specs import parse_attacks
from metaadv_tf.training import TrainConfig
from helpers import ROOT, run_script, train_tiny_run  # noqa: I100  (tests/ is on sys.path)

TINY = "tiny_cnn"
TINY_ATTACKS = "fgsm(eps=0.02),pgd_linf(eps=0.02,steps=2),mim(eps=0.02,steps=2)"
TINY_EXAMPLES = 40
PROTOCOL_KEYS = {"attacks", "groups", "split", "num_examples", "batch_size", "seed"}
EVERY_MODEL = zoo.list_models(include_research=True)
REASON = "kept to reproduce a study"


# --- checks every zoo entry passes ---------------------------------------------------------


def assert_card_consistent(card: zoo.ModelCard, directory: str | None = None) -> None:
    """The card's fields agree with each other, with the dataset and with its weights file."""
    info = data.get_info(card.dataset)
    assert (card.input_shape, card.num_classes) == (info.image_shape, info.num_classes)
    model = card.build()
    assert model.input_shape[1:] == card.input_shape and model.output_shape[-1] == card.num_classes

    config = TrainConfig.from_json(json.dumps(card.train_config))
    assert (config.method, config.model, config.dataset) == (card.method, card.architecture, card.dataset)
    assert card.images_seen == card.train_steps * config.images_per_step
    assert card.train_command.startswith("python scripts/train.py ") and card.train_seconds > 0
    # one threat model and its eps, or several joined by "+" with eps 0 (the study's cards)
    assert (card.threat_model, card.eps) == publish.training_threat_model(config)

    path = zoo.weights_path(card, directory)
    assert card.weights == f"{card.name}.weights.h5" and os.path.getsize(path) < zoo.MAX_WEIGHTS_BYTES
    with h5py.File(path, "r") as weights:
        float_dtypes = set()
        weights.visititems(lambda _, item: float_dtypes.add(item.dtype.name)
                           if isinstance(item, h5py.Dataset) and item.dtype.kind == "f" else None)
    assert float_dtypes == {card.weights_dtype}

    protocol, metrics = card.evaluation, card.metrics
    assert set(protocol) == PROTOCOL_KEYS
    names = [attack.name for attack in parse_attacks(protocol["attacks"])]
    assert len(set(names)) == len(names), "labels are the attack names only when each appears once"
    assert list(metrics["robust_accuracy"]) == names
    assert set(metrics["worst_case_by_group"]) == set(protocol["groups"])
    assert all(set(members) <= set(names) for members in protocol["groups"].values())
    accuracies = [metrics["clean_accuracy"], *metrics["robust_accuracy"].values()]
    assert all(0.0 <= a <= 1.0 for a in accuracies)
    worst_attack = min(metrics["robust_accuracy"].values())
    assert metrics["worst_case_accuracy"] <= worst_attack <= metrics["clean_accuracy"]
    assert np.shape(card.golden["logits"]) == (card.golden["num_examples"], card.num_classes)


def assert_loads_and_reproduces_golden(name: str, directory: str | None = None) -> None:
    """The weights match the card's sha256, load, and give the card's golden logits."""
    card = zoo.get_card(name, directory=directory)
    assert zoo.sha256_file(zoo.weights_path(card, directory)) == card.sha256
    assert zoo.verify_golden(zoo.load_model(name, directory=directory), card) <= card.golden["atol"]


@pytest.mark.parametrize("name", EVERY_MODEL)
def test_zoo_card_is_consistent(name):
    assert_card_consistent(zoo.get_card(name))


@pytest.mark.filterwarnings("ignore::metaadv_tf.zoo.ResearchArtifactWarning")
@pytest.mark.parametrize("name", EVERY_MODEL)
def test_zoo_weights_match_sha256_and_golden_logits(name):
    assert_loads_and_reproduces_golden(name)


V2_MODELS = [name for name in EVERY_MODEL if "v2" in zoo.get_card(name).evaluations]


@pytest.mark.parametrize("name", V2_MODELS)
def test_v2_results_name_the_protocol_evaluate_runs(name):
    """A card's v2 settings are exactly what `evaluate.py --protocol=v2` runs for it today, with
    seen/unseen from its training tasks, on at least 500 images, and its metrics cover every threat
    model and group."""
    from metaadv_tf.protocols import get_protocol

    card = zoo.get_card(name)
    record = card.evaluations["v2"]
    assert zoo.stored_num_examples(card) >= 500
    protocol = get_protocol("v2")
    assert record["settings"] == protocol.settings(zoo.seen_threat_models(card), zoo.stored_num_examples(card))
    assert zoo.evaluation_is_current(card)
    older = {**record["settings"], "attacks": {**record["settings"]["attacks"], "L1": "apgd_ce(norm=1)"}}
    assert not zoo.evaluation_is_current(dataclasses.replace(card, evaluations={"v2": {**record, "settings": older}}))
    assert not zoo.evaluation_is_current(dataclasses.replace(card, evaluations={}))
    metrics = record["metrics"]
    assert set(metrics["robust_accuracy"]) == set(record["settings"]["attacks"])
    assert set(metrics["union"]) == {"Lp", "all", "seen", "unseen"} - {
        group for group in ("seen", "unseen") if not record["settings"][group]}


@pytest.mark.slow
def test_evaluate_script_reproduces_a_v2_card(tmp_path):
    """`scripts/evaluate.py --model=NAME --protocol=v2` gives the card's v2 numbers (~10 min)."""
    name = V2_MODELS[0]
    output = tmp_path / "v2.json"
    result = run_script("evaluate.py", f"--model={name}", "--protocol=v2", f"--output={output}",
                        timeout=3600)
    assert result.returncode == 0, result.stderr[-2000:]
    stored = zoo.get_card(name).evaluations["v2"]["metrics"]
    measured = json.loads(output.read_text())["metrics"]
    for key in ("clean_accuracy", "robust_accuracy", "union"):
        assert measured[key] == stored[key]


# --- the machinery, on a tiny model published into tmp_path -------------------------------


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    workdir = tmp_path_factory.mktemp("tiny") / "run"
    train_tiny_run(workdir)
    return workdir


@pytest.fixture(scope="module")
def tiny_zoo(run_dir) -> Path:
    """A zoo directory holding TINY, published by scripts/publish_model.py."""
    directory = run_dir.parent / "zoo"
    result = run_script(
        "publish_model.py", f"--workdir={run_dir}", f"--name={TINY}", f"--attacks={TINY_ATTACKS}",
        f"--num_examples={TINY_EXAMPLES}", f"--zoo_dir={directory}", "--notes=tiny test model",
    )
    assert result.returncode == 0, result.stderr
    assert f"Published {TINY} (float16 weights" in result.stdout
    upload = f"download location ({zoo.DEFAULT_ZOO_URL}):\n  {directory}/{TINY}.weights.h5"
    assert upload in result.stdout and "Files to commit" not in result.stdout  # the card is not the package's
    return directory


@pytest.fixture
def zoo_copy(tiny_zoo, tmp_path) -> Path:
    """A private copy of the tiny zoo, free to damage."""
    return Path(shutil.copytree(tiny_zoo, tmp_path / "zoo"))


def test_v2_results_are_stored_in_the_card(zoo_copy, monkeypatch):
    """What `evaluate.py --protocol=v2 --update_card` does: the record is written into the card."""
    from metaadv_tf import protocols

    cheap = dataclasses.replace(
        protocols.get_protocol("v2"), num_examples=6, clean_examples=12, batch_size=6,
        attacks={"Linf": "autoattack(steps=2, target_classes=1, queries=5)", "spatial": "spatial(angles=1, shifts=2)"},
        unions={"all": ["Linf", "spatial"]})
    monkeypatch.setitem(protocols.PROTOCOLS._items, "v2", cheap)
    record = zoo.evaluate_card(TINY, "v2", directory=str(zoo_copy))
    card = zoo.store_evaluation(TINY, "v2", record, directory=str(zoo_copy))
    zoo.clear_cache()
    stored = zoo.get_card(TINY, directory=str(zoo_copy))
    assert stored.evaluations == card.evaluations == {"v2": record}
    assert stored.evaluations["v2"]["settings"]["seen"] == []  # the tiny entry trained without attacks


@pytest.mark.filterwarnings("ignore::metaadv_tf.zoo.ResearchArtifactWarning")
def test_a_retired_entry_keeps_its_weights_under_the_new_name(zoo_copy):
    """`publish.retire` frees a name for its successor: the old model loads under the new name, as a
    research artifact with the reason; retiring onto an existing name changes nothing."""
    directory = str(zoo_copy)
    card = zoo.get_card(TINY, directory=directory)
    (zoo_copy / "taken.json").write_text(dataclasses.replace(card, name="taken").to_json())
    with pytest.raises(FileExistsError, match="'taken' exists"):
        publish.retire(TINY, "taken", "superseded", directory=directory)
    assert zoo.get_card(TINY, directory=directory) == card
    retired = publish.retire(TINY, f"{TINY}_v1", "superseded by a longer run", directory=directory)
    assert TINY not in zoo.list_models(include_research=True, directory=directory)
    assert not (zoo_copy / f"{TINY}.weights.h5").exists()
    assert zoo.get_card(f"{TINY}_v1", directory=directory) == retired
    assert (retired.status, retired.status_reason, retired.sha256) == ("research", "superseded by a longer run",
                                                                       card.sha256)
    assert_loads_and_reproduces_golden(f"{TINY}_v1", directory)


def test_a_card_stores_v2_on_fewer_images_and_evaluate_reproduces_it(zoo_copy, tmp_path):
    """`evaluate.py --protocol=v2 --update_card --num_examples=N` stores N in the card; without
    --num_examples, evaluate.py then attacks the card's N again (the cache makes the rerun quick)."""
    cache, stored, again = tmp_path / "cache.json", tmp_path / "stored.json", tmp_path / "again.json"
    result = run_script("evaluate.py", f"--model={TINY}", "--protocol=v2", "--update_card", "--num_examples=3",
                        f"--cache={cache}", f"--output={stored}", zoo_dir=zoo_copy)
    assert result.returncode == 0, result.stderr[-2000:]
    zoo.clear_cache()
    card = zoo.get_card(TINY, directory=str(zoo_copy))
    assert zoo.stored_num_examples(card) == 3 and zoo.evaluation_is_current(card)
    assert card.evaluations["v2"] == {key: json.loads(stored.read_text())[key] for key in ("settings", "metrics")}
    result = run_script("evaluate.py", f"--model={TINY}", "--protocol=v2", f"--cache={cache}", f"--output={again}",
                        zoo_dir=zoo_copy)
    assert result.returncode == 0, result.stderr[-2000:]
    assert json.loads(again.read_text())["settings"]["num_examples"] == 3


def test_a_training_run_evaluated_and_compared(run_dir, tiny_zoo, tmp_path):
    """`evaluate.py --model=WORKDIR --protocol=v2 --num_examples=N` measures the run's weights with
    the threat models it trained on; `compare_models.py --records` tabulates the result; v1
    evaluates it too (~50 s)."""
    from metaadv_tf.protocols import get_protocol

    output = tmp_path / "run_v2.json"
    result = run_script("evaluate.py", f"--model={run_dir}", "--protocol=v2", "--num_examples=4", f"--output={output}")
    assert result.returncode == 0, result.stderr[-2000:]
    record = json.loads(output.read_text())
    assert (record["model"], record["method"], record["images_seen"]) == (str(run_dir), "standard", 320)
    assert record["settings"] == get_protocol("v2").settings([], 4)  # standard training: nothing seen
    config = TrainConfig.from_json((run_dir / "config.json").read_text())
    model = zoo.build_architecture("cnn", (28, 28, 1), 10, {"width": config.model_args["width"]})
    model.load_weights(run_dir / "final.weights.h5")
    x, y = data.load_arrays("fashion_mnist", "test", 10000)
    clean = float(np.mean(np.argmax(model.predict(x, batch_size=1000, verbose=0), axis=1) == y))
    assert record["metrics"]["clean_accuracy"] == pytest.approx(clean)
    table = run_script("compare_models.py", "--protocol=v2", f"--records={output}", folder="scripts/experiments")
    assert table.returncode == 0, table.stderr[-2000:]
    assert f"| {run_dir} | standard | none | 4 | {100 * clean:.1f} |" in table.stdout
    v1 = tmp_path / "run_v1.json"
    result = run_script("evaluate.py", f"--model={run_dir}", "--attacks=pgd_linf(steps=1),pgd_linf(steps=2)",
                        "--num_examples=20", f"--output={v1}")
    assert result.returncode == 0, result.stderr[-2000:]
    assert list(json.loads(v1.read_text())["robust_accuracy"]) == [
        "pgd_linf(eps=0.1, step_size=0.25, steps=1)", "pgd_linf(eps=0.1, step_size=0.125, steps=2)"]


def test_published_entry_passes_the_zoo_checks(tiny_zoo):
    assert zoo.list_models(directory=str(tiny_zoo)) == [TINY]
    assert_card_consistent(zoo.get_card(TINY, directory=str(tiny_zoo)), str(tiny_zoo))
    assert_loads_and_reproduces_golden(TINY, str(tiny_zoo))


def test_card_records_the_run_and_the_protocol(tiny_zoo, run_dir):
    card = zoo.get_card(TINY, directory=str(tiny_zoo))
    result = json.loads((run_dir / "result.json").read_text())
    assert (card.train_steps, card.images_seen, card.train_seconds) == (
        result["steps"], result["images_seen"], result["train_seconds"])
    assert card.train_config == json.loads((run_dir / "config.json").read_text())
    assert (card.threat_model, card.eps) == ("none", 0.0)  # standard training
    assert (card.weights_dtype, card.notes) == ("float16", "tiny test model")
    assert card.evaluation["groups"] == {"seen": ["fgsm", "pgd_linf"], "unseen": ["mim"]}
    assert card.evaluation["num_examples"] == TINY_EXAMPLES
    assert card.metrics["clean_accuracy"] > 0.2 and card.metrics["worst_case_accuracy"] > 0.0  # not trivial


def test_train_command_reproduces_the_run(tiny_zoo, run_dir, tmp_path):
    card = zoo.get_card(TINY, directory=str(tiny_zoo))
    arguments = shlex.split(card.train_command)
    assert arguments[:2] == ["python", "scripts/train.py"] and arguments[-1] == f"--workdir={run_dir}"
    rerun = tmp_path / "rerun"
    result = subprocess.run(
        [sys.executable, *arguments[1:-1], f"--workdir={rerun}"], capture_output=True, text=True,
        cwd=ROOT, timeout=600, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"},
    )
    assert result.returncode == 0, result.stderr
    assert json.loads((rerun / "config.json").read_text()) == card.train_config
    original, again = card.build(), card.build()
    original.load_weights(run_dir / "final.weights.h5")
    again.load_weights(rerun / "final.weights.h5")
    for a, b in zip(original.get_weights(), again.get_weights()):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def test_evaluate_script_reproduces_every_metric(tiny_zoo, tmp_path):
    output = tmp_path / "report.json"
    result = run_script("evaluate.py", f"--model={TINY}", f"--output={output}", zoo_dir=tiny_zoo)
    assert result.returncode == 0, result.stderr
    report = json.loads(output.read_text())
    card = zoo.get_card(TINY, directory=str(tiny_zoo))
    assert {key: report[key] for key in card.metrics} == card.metrics
    assert report["num_examples"] == TINY_EXAMPLES


def test_float16_weights_load_exactly_and_keep_logits(tiny_zoo, run_dir):
    card = zoo.get_card(TINY, directory=str(tiny_zoo))
    full = card.build()
    full.load_weights(run_dir / "final.weights.h5")
    loaded = zoo.load_model(TINY, directory=str(tiny_zoo))
    for reference, value in zip(full.weights, loaded.weights):
        assert value.dtype == "float32"
        np.testing.assert_array_equal(np.asarray(reference).astype(np.float16).astype(np.float32), value)
    x, _ = data.load_arrays("fashion_mnist", "test", TINY_EXAMPLES)
    change = np.abs(full.predict(x, verbose=0) - loaded.predict(x, verbose=0))
    assert np.max(change) < publish.FLOAT16_LOGIT_TOLERANCE


def test_float32_is_kept_when_float16_moves_logits_too_much(run_dir, tmp_path, monkeypatch):
    monkeypatch.setattr(publish, "FLOAT16_LOGIT_TOLERANCE", 0.0)
    card = publish.publish(
        str(run_dir), "strict", attacks="fgsm(eps=0.02)", num_examples=10, directory=str(tmp_path)
    )
    assert card.weights_dtype == "float32"
    assert_card_consistent(card, str(tmp_path))
    with pytest.raises(FileExistsError, match="exists"):
        publish.publish(str(run_dir), "strict", directory=str(tmp_path))


def test_publishing_writes_into_the_checkout_unless_given_a_directory(tmp_path, monkeypatch):
    monkeypatch.delenv(zoo.ZOO_DIR_ENV, raising=False)
    assert publish.destinations("new") == (os.path.join(zoo.PACKAGE_CARDS_DIR, "new.json"),
                                           os.path.join(zoo.CHECKOUT_ZOO_DIR, "new.weights.h5"))
    assert publish.destinations("new", str(tmp_path)) == (str(tmp_path / "new.json"),
                                                          str(tmp_path / "new.weights.h5"))
    monkeypatch.setattr(zoo, "CHECKOUT_ZOO_DIR", str(tmp_path / "site-packages" / "zoo"))  # installed
    with pytest.raises(ValueError, match=r"writes into a source checkout, but \S+site-packages/zoo does not"):
        publish.destinations("new")


def _flip_a_bit(path: Path) -> None:
    content = bytearray(path.read_bytes())
    content[len(content) // 2] ^= 0x01
    path.write_bytes(bytes(content))


def _truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def _lfs_pointer(path: Path) -> None:
    path.write_text("version https://git-lfs.github.com/spec/v1\noid sha256:abc\nsize 123\n")


@pytest.mark.parametrize(
    "damage, error, message",
    [
        (_flip_a_bit, ValueError, "is corrupted or truncated"),
        (_truncate, ValueError, "is corrupted or truncated"),
        (_lfs_pointer, ValueError, "is a Git LFS pointer"),
        (Path.unlink, FileNotFoundError, "does not exist"),
    ],
    ids=["bit_flip", "truncated", "lfs_pointer", "missing"],
)
def test_damaged_weights_are_refused_before_loading(zoo_copy, monkeypatch, damage, error, message):
    path = zoo_copy / f"{TINY}.weights.h5"
    damage(path)
    monkeypatch.setattr(keras.Model, "load_weights", lambda *a, **k: pytest.fail("weights were loaded"))
    with pytest.raises(error, match=message) as raised:
        zoo.load_model(TINY, directory=str(zoo_copy))
    assert str(path) in str(raised.value)
    assert zoo.load_model(TINY, pretrained=False, directory=str(zoo_copy)).input_shape == (None, 28, 28, 1)


@pytest.mark.parametrize(
    "edit, message",
    [
        (lambda card: card.pop("sha256"), "missing field 'sha256'"),
        (lambda card: card.update(extra=1), "unknown field 'extra'"),
        (lambda card: card.update(name="other"), "field 'name' is 'other', expected 'tiny_cnn'"),
        (lambda card: card.update(status="retired"),
         r"Unknown status in \S+ 'retired'\. Expected one of: recommended, research\."),
        (lambda card: card.update(status="research"), r"status in \S+ is 'research', so it needs a status_reason"),
    ],
    ids=["missing", "extra", "misnamed", "bad_status", "research_without_reason"],
)
def test_malformed_card_is_named_with_its_field(zoo_copy, edit, message):
    path = zoo_copy / f"{TINY}.json"
    card = json.loads(path.read_text())
    edit(card)
    path.write_text(json.dumps(card))
    with pytest.raises(ValueError, match=message) as raised:
        zoo.list_models(directory=str(zoo_copy))
    assert str(path) in str(raised.value)


def mark_research(directory: Path) -> None:
    """Makes the tiny entry of ``directory`` a research artifact, as a card edit does."""
    path = directory / f"{TINY}.json"
    path.write_text(json.dumps({**json.loads(path.read_text()), "status": "research", "status_reason": REASON}))


def test_status_is_optional_and_written_only_when_research(tiny_zoo):
    text = (tiny_zoo / f"{TINY}.json").read_text()
    card = zoo.get_card(TINY, directory=str(tiny_zoo))
    assert "status" not in json.loads(text) and (card.status, card.is_research) == ("recommended", False)
    assert card.to_json() == text
    research = dataclasses.replace(card, status="research", status_reason=REASON)
    assert json.loads(research.to_json())["status_reason"] == REASON


def test_research_entries_are_listed_only_when_asked(zoo_copy):
    mark_research(zoo_copy)
    directory = str(zoo_copy)
    assert zoo.list_models(directory=directory) == []
    assert zoo.list_models(method="standard", include_research=True, directory=directory) == [TINY]
    assert zoo.get_card(TINY, directory=directory).status_reason == REASON


def test_loading_a_research_entry_warns_once_with_its_reason(tiny_zoo, zoo_copy):
    with warnings.catch_warnings():
        warnings.simplefilter("error", zoo.ResearchArtifactWarning)
        zoo.load_model(TINY, directory=str(tiny_zoo))  # a recommended entry loads silently
    mark_research(zoo_copy)
    with pytest.warns(zoo.ResearchArtifactWarning) as caught:
        model = zoo.load_model(TINY, directory=str(zoo_copy))
    [warning] = [w for w in caught if issubclass(w.category, zoo.ResearchArtifactWarning)]
    assert f"{TINY!r} is a research artifact" in str(warning.message) and REASON in str(warning.message)
    assert warning.filename == __file__  # points at the caller
    assert model.output_shape == (None, 10)


def test_publishing_a_research_artifact(run_dir, tmp_path):
    with pytest.raises(ValueError, match="needs a status_reason"):
        publish.publish(str(run_dir), "artifact", status="research", directory=str(tmp_path))
    assert os.listdir(tmp_path) == []  # refused before any work
    card = publish.publish(str(run_dir), "artifact", attacks="fgsm(eps=0.02)", num_examples=10,
                           directory=str(tmp_path), status="research", status_reason=REASON)
    assert (card.is_research, zoo.list_models(directory=str(tmp_path))) == (True, [])
    assert zoo.get_card("artifact", directory=str(tmp_path)).status_reason == REASON


def test_unknown_name_lists_close_matches(tiny_zoo):
    for lookup in (zoo.get_card, zoo.load_model, zoo.resolve_model):
        with pytest.raises(ValueError, match=r"Unknown zoo model 'tiny_cn'\. Did you mean 'tiny_cnn'\?"):
            lookup("tiny_cn", directory=str(tiny_zoo))
    with pytest.raises(ValueError, match="no model file at '/no/such.keras'"):
        zoo.resolve_model("/no/such.keras", directory=str(tiny_zoo))


def test_list_models_filters(tiny_zoo):
    directory = str(tiny_zoo)
    found = zoo.list_models(dataset="fashion_mnist", method="standard", architecture="cnn", directory=directory)
    assert found == [TINY]
    assert zoo.list_models(method="mat", directory=directory) == []
    assert zoo.list_models(directory=str(tiny_zoo / "nonexistent")) == []


def test_zoo_dir_comes_from_the_environment(tiny_zoo, monkeypatch):
    monkeypatch.setenv(zoo.ZOO_DIR_ENV, str(tiny_zoo))
    assert zoo.list_models() == [TINY] and zoo.get_card(TINY).name == TINY


def test_oversized_weights_are_refused_and_not_written(tmp_path, monkeypatch):
    monkeypatch.setattr(zoo, "MAX_WEIGHTS_BYTES", 1000)
    model = zoo.build_architecture("cnn", (28, 28, 1), 10, {"width": 4})
    with pytest.raises(ValueError, match="zoo files must stay under"):
        zoo.save_weights(model, str(tmp_path / "big.weights.h5"), "float16")
    assert os.listdir(tmp_path) == []


def test_standard_protocol_round_trips_and_groups_attacks():
    protocol = zoo.evaluation_protocol()
    assert [a.name for a in parse_attacks(protocol["attacks"])] == [
        "fgsm", "pgd_linf", "bim", "mim", "pgd_l2", "cw_l2", "spsa"]
    assert parse_attacks(protocol["attacks"]) == parse_attacks(zoo.STANDARD_ATTACKS)
    assert protocol["groups"] == zoo.STANDARD_GROUPS
    assert zoo.evaluation_protocol("mim,fgsm", 10)["groups"] == {"seen": ["fgsm"], "unseen": ["mim"]}


def test_threat_model_comes_from_the_training_attacks():
    config = TrainConfig(method="mat", steps=1, epochs=None)
    assert publish.training_threat_model(config) == ("Linf", 0.1)
    assert publish.training_threat_model(dataclasses.replace(config, method="standard")) == ("none", 0.0)
    assert publish.training_threat_model(dataclasses.replace(config, method="pgd_at", eps=0.2)) == ("Linf", 0.2)
    several = dataclasses.replace(config, train_attacks="pgd_l1,fgsm,pgd_l2")
    assert publish.training_threat_model(several) == ("Linf+L2+L1", 0.0)  # radii in the train config
    with pytest.raises(ValueError, match=r"mix radii \[0.1, 0.3\] of Linf"):
        publish.training_threat_model(dataclasses.replace(config, train_attacks="fgsm,fgsm(eps=0.3)"))


def test_evaluate_script_resumes_from_its_cache(tiny_zoo, tmp_path):
    cache, reports = tmp_path / "cache.json", []
    for run in ("first", "rerun"):
        output = tmp_path / f"{run}.json"
        result = run_script("evaluate.py", f"--model={TINY}", f"--output={output}", f"--cache={cache}",
                            zoo_dir=tiny_zoo)
        assert result.returncode == 0, result.stderr
        reports.append(json.loads(output.read_text()))
    stored = json.loads(cache.read_text())["results"]
    assert set(stored) == {"clean", "fgsm", "pgd_linf", "mim"}
    assert reports[1]["seconds"] == {label: stored[label]["seconds"] for label in reports[1]["seconds"]}  # reused
    assert reports[1] == reports[0]
    card = zoo.get_card(TINY, directory=str(tiny_zoo))
    assert {key: reports[1][key] for key in card.metrics} == card.metrics
