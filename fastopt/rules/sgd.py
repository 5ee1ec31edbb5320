"""Stochastic gradient descent, with PyTorch's optional momentum.

Equations (``g`` after coupled weight decay, ``g + weight_decay * p``)::

    p -= lr * g                                   # momentum == 0 (the book's)

    b = g                            if t == 1    # momentum != 0 (torch's form)
    b = momentum * b + (1 - dampening) * g  otherwise
    d = g + momentum * b  if nesterov  else  b
    p -= lr * d

Defaults: ``lr=0.01, weight_decay=0.0`` (the book's ``SGD``) and
``momentum=0.0, dampening=0.0, nesterov=False`` (PyTorch's).  State: none
without momentum - such an SGD takes any params dict on every call, so one
optimizer can update several networks, as the book's SGD does - and
``momentum_buffer`` with it.  Whether there is a buffer is fixed at
construction: an SGD built with ``momentum=0`` refuses a non-zero momentum
later (build it with the momentum you want, or a schedule).

Reference: Robbins & Monro (1951); the book, section 6.1.2; PyTorch's
``torch.optim.SGD`` documented algorithm for momentum, dampening, nesterov.

Compared with ``optax.sgd``: the same update without momentum; optax's
momentum form has no dampening and keeps its trace from zero.  The book's
``Momentum`` and ``Nesterov`` fold ``lr`` into the velocity instead.
"""
from typing import NamedTuple

from .._hyper import Hyperparameter, Hyperparameters, is_schedule, non_negative
from .._jit import RuleMath
from ..errors import HyperparameterError
from ..optimizer import Optimizer


class SGDHyperparameters(Hyperparameters):
    lr = Hyperparameter(0.01, non_negative, "learning rate")
    weight_decay = Hyperparameter(0.0, non_negative, "coupled L2 coefficient")
    momentum = Hyperparameter(0.0, non_negative, "momentum factor (0: plain SGD, no state)")
    dampening = Hyperparameter(0.0, non_negative, "dampening of the momentum buffer's new term")


class Scalars(NamedTuple):
    lr: float


def scalars(hp, t) -> Scalars:
    return Scalars(lr=hp.lr)


def update(p, g, i, lr):
    return p - lr * g


class MomentumScalars(NamedTuple):
    lr: float
    momentum: float
    one_minus_dampening: float
    first: float
    nesterov: float


def momentum_scalars(hp, t) -> MomentumScalars:
    return MomentumScalars(lr=hp.lr, momentum=hp.momentum, one_minus_dampening=1.0 - hp.dampening,
                           first=1.0 if t == 1 else 0.0, nesterov=hp.nesterov)


def momentum_update(p, g, i, momentum_buffer, lr, momentum, one_minus_dampening, first, nesterov):
    if first != 0:
        b = g
    else:
        b = momentum * momentum_buffer[i] + one_minus_dampening * g
    momentum_buffer[i] = b
    if nesterov != 0:
        d = g + momentum * b
    else:
        d = b
    return p - lr * d


MATH = RuleMath("SGD", (), Scalars, scalars, update, depends_on_step=False)
MOMENTUM_MATH = RuleMath("SGDMomentum", ("momentum_buffer",), MomentumScalars, momentum_scalars,
                         momentum_update, depends_on_step=True, int8_unsigned=())


def has_momentum_buffer(momentum) -> bool:
    return is_schedule(momentum) or momentum != 0.0


def check_momentum(cls_name, rows, with_buffer: bool, nesterov: bool) -> None:
    for hp in rows:
        if not with_buffer and hp.momentum != 0.0:
            raise HyperparameterError(
                f"{cls_name}.momentum: this SGD was built with momentum=0 and holds no momentum buffer; "
                f"got {hp.momentum!r} (build SGD(momentum=...) from the start)"
            )
        if nesterov and (hp.momentum <= 0.0 or hp.dampening != 0.0):
            raise HyperparameterError(
                f"{cls_name}: nesterov=True needs momentum > 0 and dampening == 0, "
                f"got momentum={hp.momentum!r}, dampening={hp.dampening!r}"
            )


class SGD(SGDHyperparameters, Optimizer):
    __doc__ = __doc__
    math = MATH
    structure = {"nesterov": False}
    default_parallel_min_size = 100_000

    def choose_math(self) -> RuleMath:
        return MOMENTUM_MATH if has_momentum_buffer(self._hyper["momentum"]) else MATH

    def _resolve_rows(self, count):
        rows = super()._resolve_rows(count)
        for hp in rows:
            hp.nesterov = 1.0 if self.nesterov else 0.0
        return rows

    checks_read = ("momentum", "dampening")

    def check_resolved(self, rows) -> None:
        check_momentum(type(self).__name__, rows, self._math is MOMENTUM_MATH, self.nesterov)
