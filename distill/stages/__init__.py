"""Stages: the training loop pieces that train and distill models on top of `Model.fit`."""

from distill.stages.distillation import Distillation, hard_label_loss
from distill.stages.optimizers import build_optimizer
from distill.stages.stage import StageResult, run_stage

__all__ = ["Distillation", "StageResult", "build_optimizer", "hard_label_loss", "run_stage"]
