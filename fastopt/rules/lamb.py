"""LAMB: Adam's direction, scaled per key by a trust ratio ||p|| / ||u||.

Equations (``t`` is the step count, 1 at the first update; norms are per key,
summed in float64 on the engine's fixed grid)::

    m  = (1 - beta1) * g + beta1 * m
    v  = (1 - beta2) * g * g + beta2 * v
    u  = (m * (1 / (1 - beta1**t))) / (sqrt(v * (1 / (1 - beta2**t)) + eps_root) + eps) + weight_decay * p
    r  = ||p|| / ||u||            (1 where either norm is 0)
    p -= lr * (u * r)             (r nan: p = r, the whole key)

Defaults: ``lr=0.001, beta1=0.9, beta2=0.999, eps=1e-6, eps_root=0.0,
weight_decay=0.0`` (optax's; optax has no default learning rate).  State:
``m``, ``v``.  A step reads the params, grads and both moments twice (the
norms need ``u`` before any of it is written) and writes params and
moments once: 11 array transfers per element, against Adam's 7.

Reference: You et al., "Large Batch Optimization for Deep Learning: Training
BERT in 76 minutes", ICLR 2020, Algorithm 2 with phi the identity.  Source of
truth: ``optax.lamb`` (0.2.8): ``scale_by_adam``, ``add_decayed_weights``,
``scale_by_trust_ratio`` and the learning rate, chained; a key whose params or
update have zero norm gets ratio 1 (optax's ``zero_norm`` case).  The bias
corrections multiply by their reciprocals (optax divides): the direction is
computed twice per step, and two divisions fewer keep it at the memory
bandwidth; results agree with optax to rounding.
"""
from typing import NamedTuple

import numpy as np

from .._hyper import Hyperparameter, Hyperparameters, non_negative, positive, unit_interval
from .._jit import RuleMath
from ..optimizer import Optimizer


class LAMBHyperparameters(Hyperparameters):
    lr = Hyperparameter(0.001, non_negative, "learning rate")
    beta1 = Hyperparameter(0.9, unit_interval, "decay of the gradient average m")
    beta2 = Hyperparameter(0.999, unit_interval, "decay of the squared-gradient average v")
    eps = Hyperparameter(1e-6, positive, "added to the bias-corrected sqrt(v)")
    eps_root = Hyperparameter(0.0, non_negative, "added to the bias-corrected v under the root")
    weight_decay = Hyperparameter(0.0, non_negative, "decoupled decay, inside the trust ratio")


class Scalars(NamedTuple):
    beta1: float
    one_minus_beta1: float
    beta2: float
    one_minus_beta2: float
    inv_bias1: float
    inv_bias2: float
    eps_root: float
    eps: float
    weight_decay: float
    lr: float
    trust_ratio: float


def scalars(hp, t) -> Scalars:
    return Scalars(
        beta1=hp.beta1,
        one_minus_beta1=1.0 - hp.beta1,
        beta2=hp.beta2,
        one_minus_beta2=1.0 - hp.beta2,
        inv_bias1=1.0 / (1.0 - hp.beta1**t),
        inv_bias2=1.0 / (1.0 - hp.beta2**t),
        eps_root=hp.eps_root,
        eps=hp.eps,
        weight_decay=hp.weight_decay,
        lr=hp.lr,
        trust_ratio=1.0,  # each key's own, written by the engine before the update
    )


def direction(p, g, i, m, v, beta1, one_minus_beta1, beta2, one_minus_beta2, inv_bias1, inv_bias2, eps_root, eps,
              weight_decay, lr, trust_ratio):
    mi = one_minus_beta1 * g + beta1 * m[i]
    vi = one_minus_beta2 * (g * g) + beta2 * v[i]
    return (mi * inv_bias1) / (np.sqrt(vi * inv_bias2 + eps_root) + eps) + weight_decay * p


def update(p, g, i, m, v, beta1, one_minus_beta1, beta2, one_minus_beta2, inv_bias1, inv_bias2, eps_root, eps,
           weight_decay, lr, trust_ratio):
    mi = one_minus_beta1 * g + beta1 * m[i]
    vi = one_minus_beta2 * (g * g) + beta2 * v[i]
    m[i] = mi
    v[i] = vi
    u = (mi * inv_bias1) / (np.sqrt(vi * inv_bias2 + eps_root) + eps) + weight_decay * p
    return p - lr * (u * trust_ratio)


def nan_update(p, g, i, m, v, beta1, one_minus_beta1, beta2, one_minus_beta2, inv_bias1, inv_bias2, eps_root, eps,
               weight_decay, lr, trust_ratio):
    """A nan in the key's norms: the moments as usual, every param that nan."""
    m[i] = one_minus_beta1 * g + beta1 * m[i]
    v[i] = one_minus_beta2 * (g * g) + beta2 * v[i]
    return trust_ratio


def trust_ratio(hp, param_norm: float, direction_norm: float) -> float:
    if param_norm == 0.0 or direction_norm == 0.0:
        return 1.0
    return param_norm / direction_norm


MATH = RuleMath("LAMB", ("m", "v"), Scalars, scalars, update, depends_on_step=True, coupled_decay=None,
                direction=direction, trust_ratio=trust_ratio, nan_update=nan_update)


class LAMB(LAMBHyperparameters, Optimizer):
    __doc__ = __doc__
    math = MATH
