"""The training loop under tf.distribute: MirroredStrategy over 2 logical CPUs, and 2 local workers.

Both run in subprocesses: logical devices must be configured before TensorFlow runs any op.

Data parallelism must not change what is computed: with deterministic attacks and no BatchNorm, a
distributed run ends with the weights of one device trained on the same global batches (for MAT,
each replica holds a part of every task's support and query batch, and the inner step is the
whole support batch's). With BatchNorm, each replica normalizes with the statistics of its own
part of the batch, so only the moving statistics' agreement is checked there.
"""
import dataclasses
import json
import os
import socket
import subprocess
import sys
import textwrap

import numpy as np

from metaadv_tf.training import TrainConfig, Trainer

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ENV = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "PYTHONPATH": REPO}
DETERMINISTIC_ATTACKS = "fgsm,bim(steps=2)"  # no random start: replicas and one device draw alike
MIN_TRAINING_CHANGE = 1e-2  # the runs compared moved their weights at least this far

MIRRORED = textwrap.dedent("""
    import json, sys
    import tensorflow as tf
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
    import numpy as np
    from metaadv_tf.training import MetaConfig, TrainConfig, Trainer

    def run(strategy, method, batchnorm, workdir):
        config = TrainConfig(
            method=method, model="cnn", model_args={"width": 4, "batchnorm": batchnorm},
            train_examples=128, steps=2, epochs=None, batch_size=16, optimizer="sgd",
            learning_rate=0.1, train_attacks=%r, strategy=strategy,
            meta=MetaConfig(support_size=4, query_size=4), checkpoint_every=1)
        trainer = Trainer(config, workdir)
        initial = [np.array(v.value) for v in trainer.model.weights]
        trainer.train(progress=False)
        return trainer, initial

    def largest(differences):
        return max((float(np.max(np.abs(d))) for d in differences), default=0.0)

    def replica_spread(variables):
        # largest difference between a variable's copies on the two replicas
        return largest(np.array(copy) - np.array(v.value.values[0])
                       for v in variables for copy in v.value.values)

    out = {"one_device_difference": {}, "training_change": {}, "replica_spread": {}}
    for method in ("standard", "mat"):
        single, _ = run("default", method, False, sys.argv[1] + "/single-" + method)
        mirrored, initial = run("mirrored", method, False, sys.argv[1] + "/mirrored-" + method)
        out["replicas"] = mirrored.strategy.num_replicas_in_sync
        final = [np.array(v.value) for v in mirrored.model.weights]
        out["one_device_difference"][method] = largest(
            np.array(a.value) - b for a, b in zip(single.model.weights, final))
        out["training_change"][method] = largest(a - b for a, b in zip(final, initial))
        out["replica_spread"][method] = replica_spread(mirrored.model.weights)
    out["bn_replica_spread"], out["bn_moved"] = {}, {}
    for method in ("mat", "reptile", "max"):
        trainer, initial = run("mirrored", method, True, sys.argv[1] + "/" + method)
        moving = [i for i, v in enumerate(trainer.model.weights) if "moving" in v.path]
        out["bn_replica_spread"][method] = replica_spread([trainer.model.weights[i] for i in moving])
        # the smallest change of a moving statistic: every one of them must have moved
        out["bn_moved"][method] = min(
            float(np.max(np.abs(np.array(trainer.model.weights[i].value) - initial[i]))) for i in moving)
    print("RESULT " + json.dumps(out))
""" % DETERMINISTIC_ATTACKS)


def _result(stdout: str) -> dict:
    lines = [line for line in stdout.splitlines() if line.startswith("RESULT ")]
    assert lines, stdout[-3000:]
    return json.loads(lines[-1][len("RESULT "):])


def test_mirrored_strategy_matches_one_device_and_keeps_batchnorm_in_sync(tmp_path):
    proc = subprocess.run([sys.executable, "-c", MIRRORED, str(tmp_path)], env=ENV, capture_output=True,
                          text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = _result(proc.stdout)
    assert out["replicas"] == 2
    for method in ("standard", "mat"):
        # gradients averaged over replicas equal the one-device gradient of the global batch
        assert out["training_change"][method] > MIN_TRAINING_CHANGE, method
        assert out["one_device_difference"][method] < 1e-5, (method, out)
        assert out["replica_spread"][method] == 0.0, method
    assert out["bn_replica_spread"] == {"mat": 0.0, "reptile": 0.0, "max": 0.0}
    for method, moved in out["bn_moved"].items():
        assert moved > 1e-4, (method, out["bn_moved"])  # the statistics follow the training passes


def _free_ports(count: int) -> list[int]:
    sockets = [socket.socket() for _ in range(count)]
    for s in sockets:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


# A worker: the run of train.py's flags, once without and once with BatchNorm (one process, one
# strategy: TensorFlow's start-up and the cluster's are paid once); each worker writes its weights
# before and after training as <workdir>/<run>-worker<index>.npz.
WORKER = textwrap.dedent("""
    import dataclasses, json, os, sys
    import numpy as np
    from absl import flags
    from metaadv_tf import flag_utils
    from metaadv_tf.training import Trainer

    flag_utils.define_train_flags()
    flags.DEFINE_string("workdir", None, "as train.py's")
    flags.FLAGS(["train.py", *sys.argv[1:]])
    config = flag_utils.train_config_from_flags()
    index = json.loads(os.environ["TF_CONFIG"])["task"]["index"]
    results = {}
    for run, batchnorm in (("plain", False), ("batchnorm", True)):
        workdir = os.path.join(flags.FLAGS.workdir, run)
        model_args = {**config.model_args, "batchnorm": batchnorm}
        trainer = Trainer(dataclasses.replace(config, model_args=model_args), workdir)
        initial = [np.array(v.value) for v in trainer.model.weights]
        results[run] = trainer.train(progress=False).__dict__
        final = [np.array(v.value) for v in trainer.model.weights]
        np.savez(os.path.join(flags.FLAGS.workdir, f"{run}-worker{index}.npz"), *initial, *final,
                 paths=np.array([v.path for v in trainer.model.weights]))
    print("RESULT " + json.dumps(results))
""")


def _weights(path) -> tuple[list[np.ndarray], list[np.ndarray], list[str]]:
    """(initial weights, final weights, variable paths) a worker wrote."""
    with np.load(path) as arrays:
        paths = list(arrays["paths"])
        values = [arrays[f"arr_{i}"] for i in range(2 * len(paths))]
    return values[:len(paths)], values[len(paths):], paths


def test_multi_worker_strategy_with_two_local_workers(tmp_path):
    ports = _free_ports(2)
    cluster = {"worker": [f"127.0.0.1:{port}" for port in ports]}
    flags = ["--strategy=multi_worker", "--method=mat", "--model=cnn", '--model_args={"width": 4}',
             "--train_examples=128", "--steps=2", "--support_size=4", "--query_size=4", "--optimizer=sgd",
             "--learning_rate=0.1", f"--train_attacks={DETERMINISTIC_ATTACKS}", "--checkpoint_every=1",
             f"--workdir={tmp_path}"]
    workers = [
        subprocess.Popen([sys.executable, "-c", WORKER, *flags],
                         env={**ENV, "TF_CONFIG": json.dumps({"cluster": cluster,
                                                              "task": {"type": "worker", "index": i}})},
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for i in range(2)
    ]
    try:
        outputs = [worker.communicate(timeout=600) for worker in workers]
    finally:
        for worker in workers:  # a lost peer makes TF wait forever and ignore SIGTERM
            worker.kill()
    for worker, (stdout, stderr) in zip(workers, outputs):
        assert worker.returncode == 0, stderr[-3000:]
    chief = _result(outputs[0][0])
    for run in ("plain", "batchnorm"):
        assert chief[run]["steps"] == 2 and chief[run]["weights_path"]
        assert sorted(os.listdir(tmp_path / run / "checkpoints"))[0] == "checkpoint"
        assert os.path.isdir(tmp_path / run / ".worker-1" / "checkpoints")

    # the two workers hold the same weights, BatchNorm moving statistics included, bit for bit
    for run in ("plain", "batchnorm"):
        (_, final_0, paths), (_, final_1, _) = (_weights(tmp_path / f"{run}-worker{i}.npz") for i in (0, 1))
        for path, a, b in zip(paths, final_0, final_1):
            np.testing.assert_array_equal(a, b, err_msg=f"{run}: {path}")
    initial, final, paths = _weights(tmp_path / "batchnorm-worker0.npz")
    moving = [i for i, path in enumerate(paths) if "moving" in path]
    assert moving
    for i in moving:
        assert np.max(np.abs(final[i] - initial[i])) > 1e-4, paths[i]  # the statistics moved

    # ... and equal one device trained on the same global batches (no BatchNorm: see the docstring)
    initial, final, paths = _weights(tmp_path / "plain-worker0.npz")
    config = TrainConfig.from_json((tmp_path / "plain" / "config.json").read_text())
    single = Trainer(dataclasses.replace(config, strategy="default"), str(tmp_path / "one_device"))
    single.train(progress=False)
    assert max(np.max(np.abs(a - b)) for a, b in zip(final, initial)) > MIN_TRAINING_CHANGE
    for path, a, b in zip(paths, final, single.model.weights):
        np.testing.assert_allclose(a, np.array(b.value), rtol=1e-5, atol=1e-6, err_msg=path)
