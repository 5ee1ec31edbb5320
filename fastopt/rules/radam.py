"""RAdam: Adam with its adaptive step switched on once the variance of the
adaptive learning rate is tractable (rectified).

Equations (``g`` after coupled weight decay, ``g + weight_decay * p``, or with
``decoupled_weight_decay=True``, ``p *= 1 - lr * weight_decay`` first; ``t``
is the step count, 1 at the first update)::

    m += (1 - beta1) * (g - m)
    v  = beta2 * v + (1 - beta2) * g * g
    rho_inf = 2 / (1 - beta2) - 1
    rho_t   = rho_inf - 2 t beta2**t / (1 - beta2**t)
    if rho_t > 5:
        r  = sqrt((rho_t - 4)(rho_t - 2) rho_inf / ((rho_inf - 4)(rho_inf - 2) rho_t))
        p -= (lr r sqrt(1 - beta2**t) / (1 - beta1**t)) * m / (sqrt(v) + eps)
    else:
        p -= (lr / (1 - beta1**t)) * m

Defaults: ``lr=0.001, beta1=0.9, beta2=0.999, eps=1e-8, weight_decay=0.0,
decoupled_weight_decay=False`` (``torch.optim.RAdam``'s).  State: ``m``, ``v``.
With the default ``beta2`` the first 5 steps are unrectified (plain momentum
SGD): ``rho_t`` first exceeds 5 at ``t = 6``.

Reference: Liu et al., "On the Variance of the Adaptive Learning Rate and
Beyond", ICLR 2020, Algorithm 2.  Source of truth: ``torch.optim.RAdam``
(single-tensor implementation); the rectification threshold ``rho_t > 5`` is
torch's (the paper uses 4).  The per-step scalars are folded into one factor,
so results agree with torch to rounding (rtol 1e-12 in float64).
"""
from math import sqrt
from typing import NamedTuple

import numpy as np

from .._hyper import Hyperparameter, Hyperparameters, non_negative, positive, unit_interval
from .._jit import RuleMath
from ..optimizer import Optimizer


class RAdamHyperparameters(Hyperparameters):
    lr = Hyperparameter(0.001, non_negative, "learning rate")
    beta1 = Hyperparameter(0.9, unit_interval, "decay of the gradient average m")
    beta2 = Hyperparameter(0.999, unit_interval, "decay of the squared-gradient average v")
    eps = Hyperparameter(1e-8, positive, "added to sqrt(v)")
    weight_decay = Hyperparameter(0.0, non_negative, "L2 (or, decoupled, decay) coefficient")


class Scalars(NamedTuple):
    decay: float
    one_minus_beta1: float
    beta2: float
    one_minus_beta2: float
    rectified: float
    rectified_step: float
    plain_step: float
    eps: float


def rectification(beta2: float, t: int) -> float:
    """torch's ``rect``, or 0.0 while ``rho_t <= 5`` (no adaptive step yet)."""
    bias2 = 1.0 - beta2**t
    rho_inf = 2.0 / (1.0 - beta2) - 1.0
    rho_t = rho_inf - 2.0 * t * beta2**t / bias2
    if not rho_t > 5.0:
        return 0.0
    return sqrt((rho_t - 4.0) * (rho_t - 2.0) * rho_inf / ((rho_inf - 4.0) * (rho_inf - 2.0) * rho_t))


def scalars_for(decoupled: bool):
    def scalars(hp, t) -> Scalars:
        bias1 = 1.0 - hp.beta1**t
        rect = rectification(hp.beta2, t)
        return Scalars(
            decay=1.0 - hp.lr * hp.weight_decay if decoupled else 1.0,
            one_minus_beta1=1.0 - hp.beta1,
            beta2=hp.beta2,
            one_minus_beta2=1.0 - hp.beta2,
            rectified=1.0 if rect > 0.0 else 0.0,
            rectified_step=hp.lr * rect * sqrt(1.0 - hp.beta2**t) / bias1,
            plain_step=hp.lr / bias1,
            eps=hp.eps,
        )

    return scalars


def update(p, g, i, m, v, decay, one_minus_beta1, beta2, one_minus_beta2, rectified, rectified_step, plain_step,
           eps):
    mi = m[i] + one_minus_beta1 * (g - m[i])
    vi = beta2 * v[i] + one_minus_beta2 * g * g
    m[i] = mi
    v[i] = vi
    p = p * decay
    if rectified != 0:
        return p - rectified_step * mi / (np.sqrt(vi) + eps)
    return p - plain_step * mi


MATH = RuleMath("RAdam", ("m", "v"), Scalars, scalars_for(False), update, depends_on_step=True,
                int8_unsigned=("v",))
DECOUPLED_MATH = RuleMath("RAdamDecoupled", ("m", "v"), Scalars, scalars_for(True), update,
                          depends_on_step=True, coupled_decay=None, int8_unsigned=("v",))


class RAdam(RAdamHyperparameters, Optimizer):
    __doc__ = __doc__
    math = MATH
    structure = {"decoupled_weight_decay": False}

    def choose_math(self) -> RuleMath:
        return DECOUPLED_MATH if self.decoupled_weight_decay else MATH
