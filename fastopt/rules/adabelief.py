"""AdaBelief: Adam with the variance of the gradient around its prediction.

Equations (``g`` after coupled weight decay, ``g + weight_decay * p``; ``t`` is
the step count, 1 at the first update)::

    m  = (1 - beta1) * g + beta1 * m
    s  = (1 - beta2) * (g - m)**2 + beta2 * s + eps_root      (the new m)
    p -= lr * (m / (1 - beta1**t)) / (sqrt(s / (1 - beta2**t)) + eps)

Defaults: ``lr=0.001, beta1=0.9, beta2=0.999, eps=1e-16, eps_root=1e-16,
weight_decay=0.0``.  optax has no default learning rate; 0.001 is the paper's.
State: ``m``, ``s`` (optax's ``mu``, ``nu``; ``s`` keeps the ``eps_root`` it
was given, as optax's does).

Reference: Zhuang et al., "AdaBelief Optimizer: Adapting Stepsizes by the
Belief in Observed Gradients", NeurIPS 2020, Algorithm 2.  Source of truth:
``optax.adabelief`` (0.2.8, ``nesterov=False``).  ``weight_decay`` is coupled,
as ``optax.chain(optax.add_decayed_weights(wd), optax.adabelief(lr))``; the
paper's own code decouples it (AdamW-style), which optax's adabelief does not
offer.
"""
from typing import NamedTuple

import numpy as np

from .._hyper import Hyperparameter, Hyperparameters, non_negative, positive, unit_interval
from .._jit import RuleMath
from ..optimizer import Optimizer


class AdaBeliefHyperparameters(Hyperparameters):
    lr = Hyperparameter(0.001, non_negative, "learning rate")
    beta1 = Hyperparameter(0.9, unit_interval, "decay of the gradient average m")
    beta2 = Hyperparameter(0.999, unit_interval, "decay of the belief s")
    eps = Hyperparameter(1e-16, positive, "added to the bias-corrected sqrt(s)")
    eps_root = Hyperparameter(1e-16, non_negative, "added to s at every step")
    weight_decay = Hyperparameter(0.0, non_negative, "coupled L2 coefficient")


class Scalars(NamedTuple):
    lr: float
    beta1: float
    one_minus_beta1: float
    beta2: float
    one_minus_beta2: float
    eps_root: float
    bias1: float
    bias2: float
    eps: float


def scalars(hp, t) -> Scalars:
    return Scalars(
        lr=hp.lr,
        beta1=hp.beta1,
        one_minus_beta1=1.0 - hp.beta1,
        beta2=hp.beta2,
        one_minus_beta2=1.0 - hp.beta2,
        eps_root=hp.eps_root,
        bias1=1.0 - hp.beta1**t,
        bias2=1.0 - hp.beta2**t,
        eps=hp.eps,
    )


def update(p, g, i, m, s, lr, beta1, one_minus_beta1, beta2, one_minus_beta2, eps_root, bias1, bias2, eps):
    mi = one_minus_beta1 * g + beta1 * m[i]
    e = g - mi
    si = one_minus_beta2 * (e * e) + beta2 * s[i] + eps_root
    m[i] = mi
    s[i] = si
    return p - lr * ((mi / bias1) / (np.sqrt(si / bias2) + eps))


MATH = RuleMath("AdaBelief", ("m", "s"), Scalars, scalars, update, depends_on_step=True,
                int8_unsigned=("s",))


class AdaBelief(AdaBeliefHyperparameters, Optimizer):
    __doc__ = __doc__
    math = MATH
