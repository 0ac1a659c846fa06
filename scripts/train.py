"""Train a model with any method: `metaadv-train` as a script; the code is metaadv_tf/cli/train.py.

    python scripts/train.py --help
"""
from metaadv_tf.cli.train import main

if __name__ == "__main__":
    main()
