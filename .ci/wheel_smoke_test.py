"""Smoke test of an installed wheel, run by .ci/wheel_smoke_test.sh with the fresh virtualenv's
Python from a directory outside the checkout:

    python wheel_smoke_test.py --wheel=dist/metaadv_tf-0.1.0-py3-none-any.whl --zoo=CHECKOUT/zoo

Checks that the wheel holds the cards and no weights; then, with ``--zoo`` served by
``python -m http.server`` on 127.0.0.1 as ``$METAADV_ZOO_URL`` and an empty ``$METAADV_CACHE``:
``load_model`` downloads a CNN entry, loads it again from the cache with the server stopped,
``metaadv-evaluate`` runs the card's protocol on 20 images with no log lines in its output,
``metaadv-export`` writes a SavedModel that serves, and a tampered cached file is refused.
"""
from __future__ import annotations

import argparse
import importlib.metadata
import json
import os
import re
import subprocess
import sys
import zipfile
from pathlib import Path

MODEL = "cnn_mat_anchored"
LOG_LINE = re.compile(r"^(?:[IWEF]\d{4} |(?:INFO|WARNING)[:\s])", re.MULTILINE)
BIN = Path(sys.executable).parent


def run(*command: str, env: dict[str, str], check: bool = True) -> subprocess.CompletedProcess:
    """Runs ``command`` in the current directory with ``env``; raises with its output if it fails."""
    result = subprocess.run(command, capture_output=True, text=True, env=env, timeout=900)
    if check and result.returncode != 0:
        raise SystemExit(f"FAILED: {' '.join(command)}\n{result.stdout}\n{result.stderr}")
    return result


def python(code: str, env: dict[str, str], check: bool = True) -> subprocess.CompletedProcess:
    return run(sys.executable, "-c", code, env=env, check=check)


def check(condition: bool, message: str) -> None:
    if not condition:
        raise SystemExit(f"FAILED: {message}")
    print(f"ok: {message}", flush=True)


def check_wheel(wheel: str, zoo: Path) -> None:
    names = zipfile.ZipFile(wheel).namelist()
    cards = {Path(name).stem for name in names
             if name.startswith("metaadv_tf/cards/") and name.endswith(".json")}
    weights = {path.name.removesuffix(".weights.h5") for path in zoo.glob("*.weights.h5")}
    check(cards == weights, f"the wheel holds the card of every zoo entry ({len(cards)})")
    check(not [name for name in names if name.endswith(".h5")], "the wheel holds no weights")


def start_server(directory: Path) -> tuple[subprocess.Popen, str]:
    """``python -m http.server`` over ``directory`` on 127.0.0.1 (a free port); returns it and its URL."""
    server = subprocess.Popen(
        [sys.executable, "-u", "-m", "http.server", "0", "--bind", "127.0.0.1",
         "--directory", str(directory)],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
    )
    started = re.search(r" port (\d+) ", server.stdout.readline())
    if not started:
        raise SystemExit("FAILED: http.server did not start")
    return server, f"http://127.0.0.1:{started[1]}/"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--wheel", required=True)
    parser.add_argument("--zoo", required=True, type=Path, help="the checkout's zoo/ (weights)")
    arguments = parser.parse_args()
    check_wheel(arguments.wheel, arguments.zoo)
    installed = {dist.metadata["Name"].lower().replace("_", "-") for dist in importlib.metadata.distributions()}
    check("tensorflow-cpu" in installed and "tensorflow" not in installed,
          "metaadv_tf[cpu] installed tensorflow-cpu, and not the full tensorflow beside it")

    work = Path.cwd()  # outside the checkout
    env = {key: value for key, value in os.environ.items() if not key.startswith("METAADV_")}
    env["METAADV_CACHE"] = str(work / "cache")
    package = python("import metaadv_tf; print(metaadv_tf.__file__)", env).stdout.strip()
    checkout = arguments.zoo.resolve().parent
    check(not Path(package).resolve().is_relative_to(checkout), f"metaadv_tf is the installed one ({package})")

    load = (f"from metaadv_tf import load_model, zoo; load_model({MODEL!r});"
            f" print(zoo.weights_path(zoo.get_card({MODEL!r})))")
    server, env["METAADV_ZOO_URL"] = start_server(arguments.zoo)
    try:
        cached = Path(python(load, env).stdout.strip().splitlines()[-1])
    finally:
        server.terminate()
        server.wait(timeout=30)
    check(cached.is_relative_to(Path(env["METAADV_CACHE"])), f"load_model downloaded {MODEL} into the cache")
    check(python(load, env, check=False).returncode == 0, "load_model loads it again from the cache, server stopped")

    report = work / "report.json"
    evaluation = run(str(BIN / "metaadv-evaluate"), f"--model={MODEL}", "--num_examples=20",
                     f"--output={report}", env=env)
    check(json.loads(report.read_text())["num_examples"] == 20, "metaadv-evaluate ran the card's protocol, 20 images")
    check(not LOG_LINE.search(evaluation.stderr), "metaadv-evaluate printed no INFO or WARNING lines")

    export = work / "export" / "1"
    run(str(BIN / "metaadv-export"), f"--model={MODEL}", f"--export_dir={export}", env=env)
    served = python(
        "import numpy as np, tensorflow as tf;"
        f" serve = tf.saved_model.load({str(export)!r}).signatures['serving_uint8'];"
        " print(serve(images=tf.zeros([3, 28, 28, 1], tf.uint8))['classes'].shape)", env,
    )
    check(served.stdout.strip().endswith("(3,)"), "metaadv-export (export_saved_model) wrote a SavedModel; it serves")

    content = bytearray(cached.read_bytes())
    content[len(content) // 2] ^= 0x01
    cached.write_bytes(bytes(content))
    refused = python(load, env, check=False)
    check(refused.returncode != 0 and "is corrupted, truncated or tampered with" in refused.stderr
          and not cached.exists(), "a tampered cached file is refused and removed")


if __name__ == "__main__":
    main()
