"""The command-line programs, one module each, installed as console entry points.

``metaadv-train``, ``metaadv-evaluate``, ``metaadv-finetune`` and ``metaadv-export`` call these
modules' ``main()``; ``scripts/<name>.py`` in a checkout runs the same ``main()``. Each module
defines its absl flags when imported, so import one module per process.
"""
