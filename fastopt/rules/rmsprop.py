"""RMSprop.

Equations (``g`` after coupled weight decay, ``g + weight_decay * p``)::

    h = decay_rate * h + (1 - decay_rate) * g * g
    p -= lr * g / (sqrt(h) + eps)

Defaults: ``lr=0.01, decay_rate=0.99, eps=1e-7, weight_decay=0.0`` (the book's
``RMSprop``).  State: ``h``, zeros at the first update.

Reference: Tieleman & Hinton, COURSERA "Neural Networks for Machine Learning",
lecture 6.5 (2012); the book, section 6.1.5.

Compared with PyTorch ``RMSprop(alpha=decay_rate)``: the same update
(non-centered, no momentum); PyTorch's default ``eps`` is ``1e-8``.  optax's
``rmsprop`` puts ``eps`` inside the square root.
"""
from typing import NamedTuple

import numpy as np

from .._hyper import Hyperparameter, Hyperparameters, non_negative, positive, unit_interval
from .._jit import RuleMath
from ..optimizer import Optimizer


class RMSpropHyperparameters(Hyperparameters):
    lr = Hyperparameter(0.01, non_negative, "learning rate")
    decay_rate = Hyperparameter(0.99, unit_interval, "decay of the squared-gradient average h")
    eps = Hyperparameter(1e-7, positive, "added to sqrt(h)")
    weight_decay = Hyperparameter(0.0, non_negative, "coupled L2 coefficient")


class Scalars(NamedTuple):
    lr: float
    decay_rate: float
    one_minus_decay_rate: float
    eps: float


def scalars(hp, t) -> Scalars:
    return Scalars(lr=hp.lr, decay_rate=hp.decay_rate, one_minus_decay_rate=1.0 - hp.decay_rate, eps=hp.eps)


def update(p, g, i, h, lr, decay_rate, one_minus_decay_rate, eps):
    hi = decay_rate * h[i] + one_minus_decay_rate * g * g
    h[i] = hi
    return p - lr * g / (np.sqrt(hi) + eps)


MATH = RuleMath("RMSprop", ("h",), Scalars, scalars, update, depends_on_step=False, int8_unsigned=("h",))


class RMSprop(RMSpropHyperparameters, Optimizer):
    __doc__ = __doc__
    math = MATH
