"""AdaGrad.

Equations (``g`` after coupled weight decay, ``g + weight_decay * p``)::

    h += g * g
    p -= lr * g / (sqrt(h) + eps)

Defaults: ``lr=0.01, eps=1e-7, weight_decay=0.0`` (the book's ``AdaGrad``,
whose ``1e-7`` becomes ``eps``).  State: ``h``, zeros at the first update and
kept across calls.

Reference: Duchi, Hazan & Singer, "Adaptive Subgradient Methods", JMLR 12
(2011); the book, section 6.1.5.

Warning - differs from the study notes' listing, which re-initialises ``h`` to
zeros on every call (its loop sits outside ``if self.h is None``) and so
computes normalised SGD, not AdaGrad.

Compared with PyTorch ``Adagrad``: the same update with
``initial_accumulator_value=0`` and ``lr_decay=0``; PyTorch's default ``eps`` is
``1e-10``.  optax's ``adagrad`` starts ``h`` at 0.1 and puts ``eps`` inside the
square root.
"""
from typing import NamedTuple

import numpy as np

from .._hyper import Hyperparameter, Hyperparameters, non_negative, positive
from .._jit import RuleMath
from ..optimizer import Optimizer


class AdaGradHyperparameters(Hyperparameters):
    lr = Hyperparameter(0.01, non_negative, "learning rate")
    eps = Hyperparameter(1e-7, positive, "added to sqrt(h)")
    weight_decay = Hyperparameter(0.0, non_negative, "coupled L2 coefficient")


class Scalars(NamedTuple):
    lr: float
    eps: float


def scalars(hp, t) -> Scalars:
    return Scalars(lr=hp.lr, eps=hp.eps)


def update(p, g, i, h, lr, eps):
    hi = h[i] + g * g
    h[i] = hi
    return p - lr * g / (np.sqrt(hi) + eps)


MATH = RuleMath("AdaGrad", ("h",), Scalars, scalars, update, depends_on_step=False, int8_unsigned=("h",))


class AdaGrad(AdaGradHyperparameters, Optimizer):
    __doc__ = __doc__
    math = MATH
