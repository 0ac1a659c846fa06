"""Export a model as a SavedModel for TensorFlow Serving: `metaadv-export` as a script; the code is metaadv_tf/cli/export.py.

    python scripts/export.py --help
"""
from metaadv_tf.cli.export import main

if __name__ == "__main__":
    main()
