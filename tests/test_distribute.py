"""The training loop under tf.distribute: MirroredStrategy over 2 logical CPUs, and 2 local workers.

Both run in subprocesses: logical devices must be configured before TensorFlow runs any op.
"""
import json
import os
import socket
import subprocess
import sys
import textwrap


REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ENV = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "PYTHONPATH": REPO}

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
            learning_rate=0.1, train_attacks="fgsm,pgd_linf(steps=2)", strategy=strategy,
            meta=MetaConfig(support_size=4, query_size=4), checkpoint_every=1)
        trainer = Trainer(config, workdir)
        trainer.train(progress=False)
        return trainer

    out = {"replicas": run("mirrored", "standard", False, sys.argv[1] + "/m").strategy.num_replicas_in_sync}
    single = run("default", "standard", False, sys.argv[1] + "/s")
    mirrored = run("mirrored", "standard", False, sys.argv[1] + "/m2")
    out["max_weight_difference"] = max(
        float(np.max(np.abs(np.array(a.value) - np.array(b.value))))
        for a, b in zip(single.model.weights, mirrored.model.weights))
    out["bn_replica_spread"] = {}
    for method in ("mat", "reptile", "max"):
        trainer = run("mirrored", method, True, sys.argv[1] + "/" + method)
        spread = 0.0
        for v in trainer.model.non_trainable_variables:
            if "moving" in v.path:
                copies = [np.array(c) for c in v.value.values]
                spread = max(spread, max(float(np.max(np.abs(c - copies[0]))) for c in copies))
        out["bn_replica_spread"][method] = spread
    print("RESULT " + json.dumps(out))
""")


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
    # gradients averaged over replicas equal the one-device gradient of the global batch
    assert out["max_weight_difference"] < 1e-5
    assert out["bn_replica_spread"] == {"mat": 0.0, "reptile": 0.0, "max": 0.0}


def _free_ports(count: int) -> list[int]:
    sockets = [socket.socket() for _ in range(count)]
    for s in sockets:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


def test_multi_worker_strategy_with_two_local_workers(tmp_path):
    ports = _free_ports(2)
    cluster = {"worker": [f"127.0.0.1:{port}" for port in ports]}
    args = [sys.executable, os.path.join(REPO, "scripts", "train.py"), "--strategy=multi_worker",
            "--method=mat", "--model=cnn", '--model_args={"width": 4}', "--train_examples=128",
            "--steps=2", "--support_size=4", "--query_size=4", "--train_attacks=fgsm,pgd_linf(steps=2)",
            "--checkpoint_every=1", f"--workdir={tmp_path}"]
    workers = [
        subprocess.Popen(args, env={**ENV, "TF_CONFIG": json.dumps({"cluster": cluster,
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
    chief = json.loads(outputs[0][0][outputs[0][0].index("{"):])
    assert chief["steps"] == 2 and chief["weights_path"]
    assert sorted(os.listdir(tmp_path / "checkpoints"))[0] == "checkpoint"
    assert os.path.isdir(tmp_path / ".worker-1" / "checkpoints")
