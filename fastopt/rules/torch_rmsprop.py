"""TorchRMSprop: ``torch.optim.RMSprop``'s form, with ``centered`` and
``momentum``, for :mod:`fastopt.torch`.

Equations (``g`` after coupled weight decay, ``g + weight_decay * p``)::

    h = alpha * h + (1 - alpha) * g * g
    a = alpha * a + (1 - alpha) * g                    # centered only
    avg = sqrt(h - a * a) + eps  if centered  else  sqrt(h) + eps
    b = momentum * b + g / avg;  p -= lr * b           # momentum > 0
    p -= lr * g / avg                                  # momentum == 0

Defaults: ``lr=0.01, alpha=0.99, eps=1e-8, weight_decay=0.0,
momentum=0.0`` and ``centered=False`` (PyTorch's).  State: ``h``
(PyTorch's ``square_avg``), ``a`` (``grad_avg``, centered), ``b``
(``momentum_buffer``, with momentum).  Whether there is a momentum buffer is
fixed at construction, as for :class:`~fastopt.SGD`.

Reference: Tieleman & Hinton (2012); Graves, "Generating Sequences With
Recurrent Neural Networks" (2013) for the centered form; PyTorch's
documented ``RMSprop`` algorithm.

Compared with fastopt's :class:`~fastopt.RMSprop` (the book's): the same
update when neither option is on.  Compared with PyTorch: the same
equations; PyTorch's ``lerp_`` for ``a`` may round differently in the last
bit.
"""
from typing import NamedTuple

import numpy as np

from .._hyper import Hyperparameter, Hyperparameters, non_negative, positive, unit_interval
from .._jit import RuleMath
from ..errors import HyperparameterError
from ..optimizer import Optimizer
from .sgd import has_momentum_buffer


class TorchRMSpropHyperparameters(Hyperparameters):
    lr = Hyperparameter(0.01, non_negative, "learning rate")
    alpha = Hyperparameter(0.99, unit_interval, "decay of the squared-gradient average h")
    eps = Hyperparameter(1e-8, positive, "added to the root of the average")
    weight_decay = Hyperparameter(0.0, non_negative, "coupled L2 coefficient")
    momentum = Hyperparameter(0.0, non_negative, "momentum factor (0: no momentum buffer)")


class Scalars(NamedTuple):
    lr: float
    alpha: float
    one_minus_alpha: float
    eps: float
    momentum: float


def scalars(hp, t) -> Scalars:
    return Scalars(lr=hp.lr, alpha=hp.alpha, one_minus_alpha=1.0 - hp.alpha, eps=hp.eps, momentum=hp.momentum)


def update(p, g, i, h, lr, alpha, one_minus_alpha, eps, momentum):
    hi = alpha * h[i] + one_minus_alpha * g * g
    h[i] = hi
    return p - lr * g / (np.sqrt(hi) + eps)


def centered_update(p, g, i, h, a, lr, alpha, one_minus_alpha, eps, momentum):
    hi = alpha * h[i] + one_minus_alpha * g * g
    ai = alpha * a[i] + one_minus_alpha * g
    h[i] = hi
    a[i] = ai
    return p - lr * g / (np.sqrt(hi - ai * ai) + eps)


def momentum_update(p, g, i, h, b, lr, alpha, one_minus_alpha, eps, momentum):
    hi = alpha * h[i] + one_minus_alpha * g * g
    h[i] = hi
    bi = momentum * b[i] + g / (np.sqrt(hi) + eps)
    b[i] = bi
    return p - lr * bi


def centered_momentum_update(p, g, i, h, a, b, lr, alpha, one_minus_alpha, eps, momentum):
    hi = alpha * h[i] + one_minus_alpha * g * g
    ai = alpha * a[i] + one_minus_alpha * g
    h[i] = hi
    a[i] = ai
    bi = momentum * b[i] + g / (np.sqrt(hi - ai * ai) + eps)
    b[i] = bi
    return p - lr * bi


#: (centered, momentum buffer) -> math
MATHS = {
    (False, False): RuleMath("TorchRMSprop", ("h",), Scalars, scalars, update, depends_on_step=False,
                                     int8_unsigned=("h",)),
    (True, False): RuleMath("TorchRMSpropCentered", ("h", "a"), Scalars, scalars, centered_update,
                            depends_on_step=False, int8_unsigned=("h",)),
    (False, True): RuleMath("TorchRMSpropMomentum", ("h", "b"), Scalars, scalars, momentum_update,
                            depends_on_step=False, int8_unsigned=("h",)),
    (True, True): RuleMath("TorchRMSpropCenteredMomentum", ("h", "a", "b"), Scalars, scalars,
                           centered_momentum_update, depends_on_step=False, int8_unsigned=("h",)),
}


class TorchRMSprop(TorchRMSpropHyperparameters, Optimizer):
    __doc__ = __doc__
    math = MATHS[False, False]
    structure = {"centered": False}

    def choose_math(self) -> RuleMath:
        return MATHS[self.centered, has_momentum_buffer(self._hyper["momentum"])]

    checks_read = ("momentum",)

    def check_resolved(self, rows) -> None:
        if "b" in self._math.state_names:
            return
        for hp in rows:
            if hp.momentum != 0.0:
                raise HyperparameterError(
                    f"{type(self).__name__}.momentum: this RMSprop was built with momentum=0 and holds no "
                    f"momentum buffer; got {hp.momentum!r} (build it with the momentum you want)"
                )
