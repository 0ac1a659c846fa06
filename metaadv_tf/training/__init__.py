"""Training: every method (standard, pgd_at, fgsm_rs, avg, max, sat, msd, mat, fomaml, reptile) in
one loop."""
from metaadv_tf.training.config import (CONFIG_FILE, FINAL_WEIGHTS, META_METHODS, METHODS, RESULT_FILE, MetaConfig,
                                        TrainConfig, read_run_config)
from metaadv_tf.training.loop import (CheckpointError, Trainer, TrainingDivergedError, TrainResult,
                                      checkpoint_problem, model_arguments, train)

__all__ = ["CONFIG_FILE", "CheckpointError", "FINAL_WEIGHTS", "META_METHODS", "METHODS", "MetaConfig", "RESULT_FILE",
           "TrainConfig", "TrainResult", "Trainer", "TrainingDivergedError", "checkpoint_problem", "model_arguments",
           "read_run_config", "train"]
