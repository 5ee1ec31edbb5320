"""Momentum SGD (heavy ball), with the learning rate folded into the velocity.

Equations (``g`` after coupled weight decay, ``g + weight_decay * p``)::

    v = momentum * v - lr * g
    p += v

Defaults: ``lr=0.01, momentum=0.9, weight_decay=0.0`` (the book's
``Momentum``).  State: ``v``, zeros at the first update.

Reference: Polyak (1964); Sutskever et al. (2013); the book, section 6.1.4.

Compared with PyTorch ``SGD(momentum=m)`` and ``optax.sgd(momentum=m)``: they
keep ``b = m * b + g`` and step ``p -= lr * b``, so their buffer is ``-v / lr``
here.  With a constant ``lr`` both give the same params (up to rounding);
when ``lr`` changes mid-run they differ, because this ``v`` carries the old
learning rate.  PyTorch also sets ``b = g`` on the first step (no
dampening), which matches ``v = -lr * g`` from zero here.
"""
from typing import NamedTuple

from .._hyper import Hyperparameter, Hyperparameters, non_negative, unit_interval
from .._jit import RuleMath
from ..optimizer import Optimizer


class MomentumHyperparameters(Hyperparameters):
    lr = Hyperparameter(0.01, non_negative, "learning rate")
    momentum = Hyperparameter(0.9, unit_interval, "velocity decay")
    weight_decay = Hyperparameter(0.0, non_negative, "coupled L2 coefficient")


class Scalars(NamedTuple):
    lr: float
    momentum: float


def scalars(hp, t) -> Scalars:
    return Scalars(lr=hp.lr, momentum=hp.momentum)


def update(p, g, i, v, lr, momentum):
    vi = momentum * v[i] - lr * g
    v[i] = vi
    return p + vi


MATH = RuleMath("Momentum", ("v",), Scalars, scalars, update, depends_on_step=False, int8_unsigned=())


class Momentum(MomentumHyperparameters, Optimizer):
    __doc__ = __doc__
    math = MATH
