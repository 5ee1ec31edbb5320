"""NAdam: Adam with Nesterov momentum and a warming momentum schedule.

Equations (``g`` after coupled weight decay, ``g + weight_decay * p``, or with
``decoupled_weight_decay=True``, ``p *= 1 - lr * weight_decay`` first; ``t``
is the step count, 1 at the first update)::

    mu_t    = beta1 * (1 - 0.5 * 0.96**(t * momentum_decay))
    mu_prod = mu_1 * ... * mu_t                      (carried across updates)
    m += (1 - beta1) * (g - m)
    v  = beta2 * v + (1 - beta2) * g * g
    d  = sqrt(v / (1 - beta2**t)) + eps
    p += (-lr (1 - mu_t) / (1 - mu_prod)) * (g / d)
    p += (-lr mu_{t+1} / (1 - mu_prod mu_{t+1})) * (m / d)

Defaults: ``lr=0.002, beta1=0.9, beta2=0.999, eps=1e-8, weight_decay=0.0,
momentum_decay=0.004, decoupled_weight_decay=False`` (``torch.optim.NAdam``'s).
State: ``m``, ``v``, and per group the float ``mu_prod`` (torch keeps one per
param as ``mu_product``).  ``mu_prod`` is not in a checkpoint: it depends only
on the step count and the hyperparameters of each past update, and is
rebuilt from them after a load (a hyperparameter assigned mid-run is taken as
if it had held from the start; schedules are replayed exactly).

Reference: Dozat, "Incorporating Nesterov Momentum into Adam", ICLR 2016
workshop, with the momentum schedule of its section 3.  Source of truth:
``torch.optim.NAdam`` (single-tensor implementation).
"""
from typing import NamedTuple

import numpy as np

from .._hyper import Hyperparameter, Hyperparameters, non_negative, positive, unit_interval
from .._jit import Carry, RuleMath
from ..optimizer import Optimizer


class NAdamHyperparameters(Hyperparameters):
    lr = Hyperparameter(0.002, non_negative, "learning rate")
    beta1 = Hyperparameter(0.9, unit_interval, "decay of the gradient average m")
    beta2 = Hyperparameter(0.999, unit_interval, "decay of the squared-gradient average v")
    eps = Hyperparameter(1e-8, positive, "added to the bias-corrected sqrt(v)")
    weight_decay = Hyperparameter(0.0, non_negative, "L2 (or, decoupled, decay) coefficient")
    momentum_decay = Hyperparameter(0.004, non_negative, "speed of the momentum warm-up (psi)")


def momentum_coefficient(hp, t: int) -> float:
    return hp.beta1 * (1.0 - 0.5 * 0.96 ** (t * hp.momentum_decay))


def advance(hp, t: int, previous: tuple) -> tuple:
    return (previous[0] * momentum_coefficient(hp, t),)


class Scalars(NamedTuple):
    decay: float
    one_minus_beta1: float
    beta2: float
    one_minus_beta2: float
    bias2: float
    eps: float
    grad_step: float
    avg_step: float


def scalars_for(decoupled: bool):
    def scalars(hp, t, carried) -> Scalars:
        mu, mu_next = momentum_coefficient(hp, t), momentum_coefficient(hp, t + 1)
        mu_prod = carried[0]
        return Scalars(
            decay=1.0 - hp.lr * hp.weight_decay if decoupled else 1.0,
            one_minus_beta1=1.0 - hp.beta1,
            beta2=hp.beta2,
            one_minus_beta2=1.0 - hp.beta2,
            bias2=1.0 - hp.beta2**t,
            eps=hp.eps,
            grad_step=-hp.lr * (1.0 - mu) / (1.0 - mu_prod),
            avg_step=-hp.lr * mu_next / (1.0 - mu_prod * mu_next),
        )

    return scalars


def update(p, g, i, m, v, decay, one_minus_beta1, beta2, one_minus_beta2, bias2, eps, grad_step, avg_step):
    mi = m[i] + one_minus_beta1 * (g - m[i])
    vi = beta2 * v[i] + one_minus_beta2 * g * g
    m[i] = mi
    v[i] = vi
    d = np.sqrt(vi / bias2) + eps
    p = p * decay
    p = p + grad_step * (g / d)
    return p + avg_step * (mi / d)


CARRY = Carry(initial=(1.0,), advance=advance)
MATH = RuleMath("NAdam", ("m", "v"), Scalars, scalars_for(False), update, depends_on_step=True, carry=CARRY,
                int8_unsigned=("v",))
DECOUPLED_MATH = RuleMath("NAdamDecoupled", ("m", "v"), Scalars, scalars_for(True), update,
                          depends_on_step=True, coupled_decay=None, carry=CARRY,
                          int8_unsigned=("v",))


class NAdam(NAdamHyperparameters, Optimizer):
    __doc__ = __doc__
    math = MATH
    structure = {"decoupled_weight_decay": False}

    def choose_math(self) -> RuleMath:
        return DECOUPLED_MATH if self.decoupled_weight_decay else MATH
