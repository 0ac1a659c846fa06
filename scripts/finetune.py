"""Few-shot adversarial fine-tuning of a zoo model: `metaadv-finetune` as a script; the code is metaadv_tf/cli/finetune.py.

    python scripts/finetune.py --help
"""
from metaadv_tf.cli.finetune import main

if __name__ == "__main__":
    main()
