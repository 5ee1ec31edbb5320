"""Adam, in the book's (and the paper's "efficient") form.

Equations (``g`` after coupled weight decay, ``g + weight_decay * p``; ``t`` is
the step count, 1 at the first update)::

    lr_t = lr * sqrt(1 - beta2**t) / (1 - beta1**t)
    m += (1 - beta1) * (g - m)
    v += (1 - beta2) * (g * g - v)
    p -= lr_t * m / (sqrt(v) + eps)

Defaults: ``lr=0.001, beta1=0.9, beta2=0.999, eps=1e-7, weight_decay=0.0`` (the
book's ``Adam``, whose ``1e-7`` becomes ``eps``).  State: ``m``, ``v``.

``amsgrad=True`` (Reddi et al., "On the Convergence of Adam and Beyond",
ICLR 2018, as PyTorch implements it) keeps ``v_max = maximum(v_max, v)``
(NaN-propagating, like ``np.maximum``) and divides by ``sqrt(v_max)``
instead; state ``m``, ``v``, ``v_max``.

Reference: Kingma & Ba, "Adam: A Method for Stochastic Optimization",
arXiv:1412.6980, the update just before section 2.1; the book, section 6.1.6.

Warning - ``eps`` placement: folding the bias corrections into ``lr_t`` adds
``eps`` to the *uncorrected* ``sqrt(v)``.  PyTorch's ``Adam`` and
``optax.adam`` compute ``m_hat / (sqrt(v_hat) + eps)``, which equals this rule
with ``eps * sqrt(1 - beta2**t)`` in place of ``eps``; results differ most in the
first steps and where ``v`` is tiny.  Their default ``eps`` is ``1e-8``.

Unlike the book's code under NumPy 2 (NEP 50), where ``lr_t`` is a NumPy
float64 and silently promotes ``lr_t * m`` to float64 for float32 params,
every scalar here is rounded to the param dtype and all arithmetic stays in
that dtype.
"""
from typing import NamedTuple

import numpy as np

from .._hyper import Hyperparameter, Hyperparameters, non_negative, positive, unit_interval
from .._jit import RuleMath, nan_maximum
from ..optimizer import Optimizer
from math import sqrt


class AdamHyperparameters(Hyperparameters):
    lr = Hyperparameter(0.001, non_negative, "learning rate")
    beta1 = Hyperparameter(0.9, unit_interval, "decay of the gradient average m")
    beta2 = Hyperparameter(0.999, unit_interval, "decay of the squared-gradient average v")
    eps = Hyperparameter(1e-7, positive, "added to sqrt(v)")
    weight_decay = Hyperparameter(0.0, non_negative, "coupled L2 coefficient")


class Scalars(NamedTuple):
    lr_t: float
    one_minus_beta1: float
    one_minus_beta2: float
    eps: float


def scalars(hp, t) -> Scalars:
    return Scalars(
        lr_t=hp.lr * sqrt(1.0 - hp.beta2**t) / (1.0 - hp.beta1**t),
        one_minus_beta1=1.0 - hp.beta1,
        one_minus_beta2=1.0 - hp.beta2,
        eps=hp.eps,
    )


def update(p, g, i, m, v, lr_t, one_minus_beta1, one_minus_beta2, eps):
    mi = m[i] + one_minus_beta1 * (g - m[i])
    vi = v[i] + one_minus_beta2 * (g * g - v[i])
    m[i] = mi
    v[i] = vi
    return p - lr_t * mi / (np.sqrt(vi) + eps)


def amsgrad_update(p, g, i, m, v, v_max, lr_t, one_minus_beta1, one_minus_beta2, eps):
    mi = m[i] + one_minus_beta1 * (g - m[i])
    vi = v[i] + one_minus_beta2 * (g * g - v[i])
    top = nan_maximum(vi, v_max[i])
    m[i] = mi
    v[i] = vi
    v_max[i] = top
    return p - lr_t * mi / (np.sqrt(top) + eps)


MATH = RuleMath("Adam", ("m", "v"), Scalars, scalars, update, depends_on_step=True, int8_unsigned=("v",))
AMSGRAD_MATH = RuleMath("AdamAMSGrad", ("m", "v", "v_max"), Scalars, scalars, amsgrad_update, depends_on_step=True,
                         int8_unsigned=("v", "v_max"))


class Adam(AdamHyperparameters, Optimizer):
    __doc__ = __doc__
    math = MATH
    structure = {"amsgrad": False}

    def choose_math(self) -> RuleMath:
        return AMSGRAD_MATH if self.amsgrad else MATH
