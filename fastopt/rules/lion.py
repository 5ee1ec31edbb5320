"""Lion: the sign of an interpolated momentum, with decoupled weight decay.

Equations (``t``-independent; ``sign(0) = 0``, ``sign(nan) = nan``)::

    c  = (1 - beta1) * g + beta1 * m
    m  = (1 - beta2) * g + beta2 * m
    p -= lr * (sign(c) + weight_decay * p)

Defaults: ``lr=1e-4, beta1=0.9, beta2=0.99, weight_decay=1e-3``.  optax has
no default learning rate; the paper advises 3-10x smaller than AdamW's, so
1e-4.  State: ``m`` (optax's ``mu``), the only buffer: a step reads and writes
5 arrays where Adam's reads and writes 7.

Reference: Chen et al., "Symbolic Discovery of Optimization Algorithms",
arXiv:2302.06675, Program 1.  Source of truth: ``optax.lion`` (0.2.8), whose
``weight_decay`` is decoupled and scaled by ``lr`` (``add_decayed_weights``
before ``scale_by_learning_rate``), as here.
"""
from typing import NamedTuple

from .._hyper import Hyperparameter, Hyperparameters, non_negative, unit_interval
from .._jit import RuleMath, sign
from ..optimizer import Optimizer


class LionHyperparameters(Hyperparameters):
    lr = Hyperparameter(1e-4, non_negative, "learning rate")
    beta1 = Hyperparameter(0.9, unit_interval, "weight of m in the update's sign")
    beta2 = Hyperparameter(0.99, unit_interval, "decay of the momentum m")
    weight_decay = Hyperparameter(1e-3, non_negative, "decoupled decay coefficient (times lr)")


class Scalars(NamedTuple):
    lr: float
    beta1: float
    one_minus_beta1: float
    beta2: float
    one_minus_beta2: float
    weight_decay: float


def scalars(hp, t) -> Scalars:
    return Scalars(
        lr=hp.lr,
        beta1=hp.beta1,
        one_minus_beta1=1.0 - hp.beta1,
        beta2=hp.beta2,
        one_minus_beta2=1.0 - hp.beta2,
        weight_decay=hp.weight_decay,
    )


def update(p, g, i, m, lr, beta1, one_minus_beta1, beta2, one_minus_beta2, weight_decay):
    mi = m[i]
    c = one_minus_beta1 * g + beta1 * mi
    m[i] = one_minus_beta2 * g + beta2 * mi
    return p - lr * (sign(c) + weight_decay * p)


MATH = RuleMath("Lion", ("m",), Scalars, scalars, update, depends_on_step=False, coupled_decay=None,
                int8_unsigned=())


class Lion(LionHyperparameters, Optimizer):
    __doc__ = __doc__
    math = MATH
