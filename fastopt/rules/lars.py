"""LARS: SGD with momentum whose step is scaled per key by a trust ratio.

Equations (``g`` after coupled weight decay, ``g + weight_decay * p``; norms
are per key, summed in float64 on the engine's fixed grid)::

    r     = trust_coefficient * ||p|| / (||g|| + eps)     (1 where either norm is 0)
    trace = -lr * (g * r) + momentum * trace
    p    += trace                                 (nesterov: p += -lr * (g * r) + momentum * trace)
    (r nan: trace = p = r, the whole key)

Defaults: ``lr=1.0, momentum=0.9, trust_coefficient=0.001, eps=0.0,
weight_decay=0.0, nesterov=False``.  optax has no default learning rate; the
trust coefficient makes the effective step ``lr * 0.001 * ||p|| / ||g||``, so
1.0 is the scale LARS is used at.  State: ``trace`` (optax's).  A step reads
params and grads twice (once for the norms) and the trace once, and writes
params and trace: 7 array transfers per element, against momentum SGD's 5.

Reference: You, Gitman & Ginsburg, "Large Batch Training of Convolutional
Networks", arXiv:1708.03888, Algorithm 1.  Source of truth: ``optax.lars``
(0.2.8) with its default masks (every key decayed and trust-scaled): the
learning rate scales the update before the momentum trace, as optax chains
it; the paper puts the momentum before the learning rate.  Exempt keys (say,
biases) from the decay with ``groups``.
"""
from typing import NamedTuple

from .._hyper import Hyperparameter, Hyperparameters, non_negative, positive, unit_interval
from .._jit import RuleMath
from ..optimizer import Optimizer


class LARSHyperparameters(Hyperparameters):
    lr = Hyperparameter(1.0, non_negative, "learning rate")
    momentum = Hyperparameter(0.9, unit_interval, "decay of the trace")
    trust_coefficient = Hyperparameter(0.001, positive, "scale of the trust ratio")
    eps = Hyperparameter(0.0, non_negative, "added to the grads' norm")
    weight_decay = Hyperparameter(0.0, non_negative, "coupled L2 coefficient")


class Scalars(NamedTuple):
    neg_lr: float
    momentum: float
    trust_ratio: float


def scalars(hp, t) -> Scalars:
    # trust_ratio: each key's own, written by the engine before the update
    return Scalars(neg_lr=-hp.lr, momentum=hp.momentum, trust_ratio=1.0)


def direction(p, g, i, trace, neg_lr, momentum, trust_ratio):
    return g


def update(p, g, i, trace, neg_lr, momentum, trust_ratio):
    step = neg_lr * (g * trust_ratio)
    ti = step + momentum * trace[i]
    trace[i] = ti
    return p + ti


def nesterov_update(p, g, i, trace, neg_lr, momentum, trust_ratio):
    step = neg_lr * (g * trust_ratio)
    ti = step + momentum * trace[i]
    trace[i] = ti
    return p + (step + momentum * ti)


def nan_update(p, g, i, trace, neg_lr, momentum, trust_ratio):
    """A nan in the key's norms: the trace and every param become that nan."""
    trace[i] = trust_ratio
    return trust_ratio


def trust_ratio(hp, param_norm: float, direction_norm: float) -> float:
    if param_norm == 0.0 or direction_norm == 0.0:
        return 1.0
    return hp.trust_coefficient * param_norm / (direction_norm + hp.eps)


MATH = RuleMath("LARS", ("trace",), Scalars, scalars, update, depends_on_step=False,
                direction=direction, trust_ratio=trust_ratio, nan_update=nan_update)
NESTEROV_MATH = RuleMath("LARSNesterov", ("trace",), Scalars, scalars, nesterov_update,
                         depends_on_step=False, direction=direction, trust_ratio=trust_ratio, nan_update=nan_update)


class LARS(LARSHyperparameters, Optimizer):
    __doc__ = __doc__
    math = MATH
    structure = {"nesterov": False}

    def choose_math(self):
        return NESTEROV_MATH if self.nesterov else MATH
