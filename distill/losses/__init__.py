"""Distillation losses, one module per method, each a Keras distillation-loss object.

Importing this package registers every method in `METHODS`:

    kd          Hinton et al. 2015: soft targets at a temperature
    dist        Huang et al. 2022: inter- and intra-class Pearson correlations
    dkd         Zhao et al. 2022: target and non-target parts of KD, weighed apart
    logit_std   Sun et al. 2024: KD on z-scored logits

Every method's `compute_loss(teacher_logits, student_logits, **kwargs)` takes
the teachers' logits as (batch, classes) or, for several teachers, as
(batch, teachers, classes) with `teacher_weights=`; methods that need more read
it from keyword arguments (`labels=`, `epoch=`) and ignore the rest.
"""

from distill.losses import dist, dkd, kd, logit_std  # noqa: F401 - registers the methods
from distill.losses.build import LossSpec, Term, build_loss, term_names
from distill.losses.dist import DIST
from distill.losses.dkd import DKD
from distill.losses.kd import KD, soft_target_kl
from distill.losses.logit_std import LogitStandardization
from distill.losses.registry import METHODS, register_method

__all__ = ["DIST", "DKD", "KD", "METHODS", "LogitStandardization", "LossSpec", "Term",
           "build_loss", "register_method", "soft_target_kl", "term_names"]
