"""Nesterov accelerated gradient, in the form of Bengio et al. (2012), with
the book's roundings.

Equations (``g`` after coupled weight decay, ``g + weight_decay * p``;
``v_old`` is the velocity before this step), in this order, each scalar
computed in Python first::

    p = p + (momentum * momentum) * v_old
    p = p - ((1 + momentum) * lr) * g
    v = momentum * v_old - lr * g

Defaults: ``lr=0.01, momentum=0.9, weight_decay=0.0``.  State: ``v``.

Reference: Y. Bengio, N. Boulanger-Lewandowski, R. Pascanu, "Advances in
optimizing recurrent networks", arXiv:1212.0901 (2012), eq. 7 - the paper the
book cites; the book's ``common/optimizer.py`` since its 2021 fix ("Fix
Nesterov update function"), whose two in-place statements on ``p`` round
twice: fastopt does the same, so float64 results are bit-identical to the
book's code.  (Before that fix the book multiplied ``momentum**2`` by the
*updated* velocity.)

Compared with PyTorch ``SGD(momentum=m, nesterov=True)``: identical params
with PyTorch's buffer equal to ``-v / lr`` (for a constant ``lr``), up to
rounding.  optax's ``sgd(nesterov=True)`` is the same method.
"""
from typing import NamedTuple

from .._hyper import Hyperparameter, Hyperparameters, non_negative, unit_interval
from .._jit import RuleMath
from ..optimizer import Optimizer


class NesterovHyperparameters(Hyperparameters):
    lr = Hyperparameter(0.01, non_negative, "learning rate")
    momentum = Hyperparameter(0.9, unit_interval, "velocity decay")
    weight_decay = Hyperparameter(0.0, non_negative, "coupled L2 coefficient")


class Scalars(NamedTuple):
    lr: float
    momentum: float
    momentum_sq: float
    one_plus_momentum_lr: float


def scalars(hp, t) -> Scalars:
    m = hp.momentum
    return Scalars(lr=hp.lr, momentum=m, momentum_sq=m * m, one_plus_momentum_lr=(1.0 + m) * hp.lr)


def update(p, g, i, v, lr, momentum, momentum_sq, one_plus_momentum_lr):
    v_old = v[i]
    p = p + momentum_sq * v_old
    p = p - one_plus_momentum_lr * g
    v[i] = momentum * v_old - lr * g
    return p


MATH = RuleMath("Nesterov", ("v",), Scalars, scalars, update, depends_on_step=False, int8_unsigned=())


class Nesterov(NesterovHyperparameters, Optimizer):
    __doc__ = __doc__
    math = MATH
