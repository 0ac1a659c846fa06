"""metaadv_tf: meta-adversarial training for TensorFlow / Keras 3, with a model zoo."""
from setuptools import find_packages, setup

# The TensorFlow versions tested (BUILD.md). No TensorFlow distribution is required: `tensorflow`,
# `tensorflow-cpu` and `tensorflow[and-cuda]` install the same `tensorflow` module, and pip does not
# know that one satisfies another, so requiring one would install it beside the user's. The
# extras pick one: metaadv_tf[cpu] or metaadv_tf[gpu]; `import metaadv_tf` without TensorFlow
# fails with a line naming them.
TENSORFLOW = ">=2.16,<2.22"

setup(
    name="metaadv_tf",
    version="0.1.0",
    description="Meta-adversarial training (MAT) for TensorFlow/Keras 3, with a model zoo.",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    packages=find_packages(include=["metaadv_tf", "metaadv_tf.*"]),
    package_data={"metaadv_tf": ["cards/*.json"]},  # the zoo's cards; weights are downloaded (zoo.py)
    python_requires=">=3.10,<3.13",
    # Bounds are the versions tested together (BUILD.md).
    install_requires=[
        "keras>=3.3,<3.16",
        "cleverhans==4.0.0",
        "tensorflow-datasets>=4.9,<4.10",
        "importlib_resources>=5",  # tensorflow-datasets needs it to prepare data but omits it
        "absl-py>=1.0",
        "numpy>=1.26,<3",
        "tensorboard>=2.16,<2.22",  # tf.summary needs it; tensorflow-cpu 2.21 no longer pulls it in
        "tqdm>=4.60",
    ],
    entry_points={"console_scripts": [
        f"metaadv-{name}=metaadv_tf.cli.{name}:main" for name in ("train", "evaluate", "finetune", "export")
    ]},
    extras_require={
        # macOS has no tensorflow-cpu wheels: its `tensorflow` is the CPU build
        "cpu": [f"tensorflow-cpu{TENSORFLOW}; sys_platform != 'darwin'",
                f"tensorflow{TENSORFLOW}; sys_platform == 'darwin'"],
        "gpu": [f"tensorflow[and-cuda]{TENSORFLOW}"],
        "test": ["pytest>=7", "adversarial-robustness-toolbox>=1.20,<1.21", "foolbox>=3.3.4,<3.4"],
    },
)
