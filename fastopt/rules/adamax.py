"""Adamax: Adam with the infinity norm in place of the second moment.

Equations (``g`` after coupled weight decay, ``g + weight_decay * p``; ``t`` is
the step count, 1 at the first update)::

    m += (1 - beta1) * (g - m)
    u  = max(beta2 * u, |g| + eps)        (nan-propagating, like torch.maximum)
    p -= (lr / (1 - beta1**t)) * (m / u)

Defaults: ``lr=0.002, beta1=0.9, beta2=0.999, eps=1e-8, weight_decay=0.0``
(``torch.optim.Adamax``'s, with ``betas=`` split in the book's style).  State:
``m``, ``u`` (torch's ``exp_avg``, ``exp_inf``).

Reference: Kingma & Ba, "Adam: A Method for Stochastic Optimization",
arXiv:1412.6980, section 7.1 (Algorithm 2).  Source of truth:
``torch.optim.Adamax`` (single-tensor implementation), which adds ``eps``
inside the maximum where the paper has none.
"""
from typing import NamedTuple

from .._hyper import Hyperparameter, Hyperparameters, non_negative, positive, unit_interval
from .._jit import RuleMath, nan_maximum
from ..optimizer import Optimizer


class AdamaxHyperparameters(Hyperparameters):
    lr = Hyperparameter(0.002, non_negative, "learning rate")
    beta1 = Hyperparameter(0.9, unit_interval, "decay of the gradient average m")
    beta2 = Hyperparameter(0.999, unit_interval, "decay of the infinity norm u")
    eps = Hyperparameter(1e-8, positive, "added to |g| inside the maximum")
    weight_decay = Hyperparameter(0.0, non_negative, "coupled L2 coefficient")


class Scalars(NamedTuple):
    step_size: float
    one_minus_beta1: float
    beta2: float
    eps: float


def scalars(hp, t) -> Scalars:
    return Scalars(
        step_size=hp.lr / (1.0 - hp.beta1**t),
        one_minus_beta1=1.0 - hp.beta1,
        beta2=hp.beta2,
        eps=hp.eps,
    )


def update(p, g, i, m, u, step_size, one_minus_beta1, beta2, eps):
    mi = m[i] + one_minus_beta1 * (g - m[i])
    ui = nan_maximum(beta2 * u[i], abs(g) + eps)
    m[i] = mi
    u[i] = ui
    return p - step_size * (mi / ui)


MATH = RuleMath("Adamax", ("m", "u"), Scalars, scalars, update, depends_on_step=True, int8_unsigned=("u",))


class Adamax(AdamaxHyperparameters, Optimizer):
    __doc__ = __doc__
    math = MATH
