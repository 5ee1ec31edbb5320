"""TorchAdam: ``torch.optim.Adam``'s form of Adam, for :mod:`fastopt.torch`.

Equations (``t`` is the step count, 1 at the first update; ``g`` after
coupled weight decay, ``g + weight_decay * p``)::

    m = beta1 * m + (1 - beta1) * g
    v = beta2 * v + (1 - beta2) * g * g
    p -= (lr / (1 - beta1**t)) * m / (sqrt(v) / sqrt(1 - beta2**t) + eps)

Defaults: ``lr=0.001, beta1=0.9, beta2=0.999, eps=1e-8, weight_decay=0.0``
(PyTorch's).  State: ``m``, ``v``; with ``amsgrad=True`` also ``v_max =
maximum(v_max, v)``, which replaces ``v`` in the denominator.

Reference: Kingma & Ba, "Adam: A Method for Stochastic Optimization", ICLR
2015, in the form of PyTorch's documented ``Adam`` algorithm: ``eps`` is
added to the bias-corrected ``sqrt(v)``, and weight decay is L2 (coupled).

Compared with fastopt's :class:`~fastopt.Adam` (the book's): the book folds
both bias corrections into one step size and adds ``eps`` to the
uncorrected ``sqrt(v)``, so the two differ where ``eps`` matters.  Compared
with PyTorch: the same equations; PyTorch's ``lerp_`` for ``m`` may round
differently in the last bit (agreement to ~1 ulp per step, not bit for bit).
"""
from math import sqrt
from typing import NamedTuple

import numpy as np

from .._hyper import Hyperparameter, Hyperparameters, non_negative, positive, unit_interval
from .._jit import RuleMath, nan_maximum
from ..optimizer import Optimizer


class TorchAdamHyperparameters(Hyperparameters):
    lr = Hyperparameter(0.001, non_negative, "learning rate")
    beta1 = Hyperparameter(0.9, unit_interval, "decay of the gradient average m")
    beta2 = Hyperparameter(0.999, unit_interval, "decay of the squared-gradient average v")
    eps = Hyperparameter(1e-8, positive, "added to the bias-corrected sqrt(v)")
    weight_decay = Hyperparameter(0.0, non_negative, "coupled L2 coefficient")


class Scalars(NamedTuple):
    step_size: float
    sqrt_bias2: float
    beta1: float
    one_minus_beta1: float
    beta2: float
    one_minus_beta2: float
    eps: float


def scalars(hp, t) -> Scalars:
    b1, b2 = hp.beta1, hp.beta2
    return Scalars(step_size=hp.lr / (1.0 - b1**t), sqrt_bias2=sqrt(1.0 - b2**t), beta1=b1,
                   one_minus_beta1=1.0 - b1, beta2=b2, one_minus_beta2=1.0 - b2, eps=hp.eps)


def update(p, g, i, m, v, step_size, sqrt_bias2, beta1, one_minus_beta1, beta2, one_minus_beta2, eps):
    mi = beta1 * m[i] + one_minus_beta1 * g
    vi = beta2 * v[i] + one_minus_beta2 * g * g
    m[i] = mi
    v[i] = vi
    return p - step_size * mi / (np.sqrt(vi) / sqrt_bias2 + eps)


def amsgrad_update(p, g, i, m, v, v_max, step_size, sqrt_bias2, beta1, one_minus_beta1, beta2,
                   one_minus_beta2, eps):
    mi = beta1 * m[i] + one_minus_beta1 * g
    vi = beta2 * v[i] + one_minus_beta2 * g * g
    top = nan_maximum(vi, v_max[i])
    m[i] = mi
    v[i] = vi
    v_max[i] = top
    return p - step_size * mi / (np.sqrt(top) / sqrt_bias2 + eps)


MATH = RuleMath("TorchAdam", ("m", "v"), Scalars, scalars, update, depends_on_step=True)
AMSGRAD_MATH = RuleMath("TorchAdamAMSGrad", ("m", "v", "v_max"), Scalars, scalars, amsgrad_update,
                        depends_on_step=True)


class TorchAdam(TorchAdamHyperparameters, Optimizer):
    __doc__ = __doc__
    math = MATH
    structure = {"amsgrad": False}

    def choose_math(self) -> RuleMath:
        return AMSGRAD_MATH if self.amsgrad else MATH
