"""Robust accuracy of a model: `metaadv-evaluate` as a script; the code is metaadv_tf/cli/evaluate.py.

    python scripts/evaluate.py --help
"""
from metaadv_tf.cli.evaluate import main

if __name__ == "__main__":
    main()
