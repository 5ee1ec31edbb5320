"""Adadelta: a step size from the ratio of two running RMS values.

Equations (``g`` after coupled weight decay, ``g + weight_decay * p``)::

    v     = rho * v + (1 - rho) * g * g
    delta = sqrt(acc_delta + eps) / sqrt(v + eps) * g
    acc_delta = rho * acc_delta + (1 - rho) * delta * delta
    p    -= lr * delta

Defaults: ``lr=1.0, rho=0.9, eps=1e-6, weight_decay=0.0``
(``torch.optim.Adadelta``'s).  State: ``v``, ``acc_delta`` (torch's
``square_avg``, ``acc_delta``).

Reference: Zeiler, "ADADELTA: An Adaptive Learning Rate Method",
arXiv:1212.5701, Algorithm 1.  Source of truth: ``torch.optim.Adadelta``
(single-tensor implementation), whose ``lr`` scales the paper's update (the
paper has none, i.e. ``lr=1``).
"""
from typing import NamedTuple

import numpy as np

from .._hyper import Hyperparameter, Hyperparameters, non_negative, positive, unit_interval
from .._jit import RuleMath
from ..optimizer import Optimizer


class AdadeltaHyperparameters(Hyperparameters):
    lr = Hyperparameter(1.0, non_negative, "scale of the update")
    rho = Hyperparameter(0.9, unit_interval, "decay of both running averages")
    eps = Hyperparameter(1e-6, positive, "added under both square roots")
    weight_decay = Hyperparameter(0.0, non_negative, "coupled L2 coefficient")


class Scalars(NamedTuple):
    lr: float
    rho: float
    one_minus_rho: float
    eps: float


def scalars(hp, t) -> Scalars:
    return Scalars(lr=hp.lr, rho=hp.rho, one_minus_rho=1.0 - hp.rho, eps=hp.eps)


def update(p, g, i, v, acc_delta, lr, rho, one_minus_rho, eps):
    vi = rho * v[i] + one_minus_rho * g * g
    delta = np.sqrt(acc_delta[i] + eps) / np.sqrt(vi + eps) * g
    v[i] = vi
    acc_delta[i] = rho * acc_delta[i] + one_minus_rho * delta * delta
    return p - lr * delta


MATH = RuleMath("Adadelta", ("v", "acc_delta"), Scalars, scalars, update, depends_on_step=False,
                int8_unsigned=("v", "acc_delta"))


class Adadelta(AdadeltaHyperparameters, Optimizer):
    __doc__ = __doc__
    math = MATH
