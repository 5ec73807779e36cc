"""Distillation losses, one module per method, each a Keras distillation-loss object.

Importing this package registers every method in `METHODS`.
"""

from distill.losses import kd  # noqa: F401 - registers the method
from distill.losses.build import LossSpec, build_loss
from distill.losses.kd import KD, soft_target_kl
from distill.losses.registry import METHODS, register_method

__all__ = ["KD", "METHODS", "LossSpec", "build_loss", "register_method", "soft_target_kl"]
