"""Rprop: a per-element step size that grows while the gradient keeps its
sign and shrinks when it flips; only the sign of the gradient moves ``p``.

Equations (``t`` is the step count, 1 at the first update; ``step_size``
starts at ``lr``)::

    s = g * prev
    if s > 0:  step_size = min(max(step_size * eta_plus,  step_min), step_max)
    if s < 0:  step_size = min(max(step_size * eta_minus, step_min), step_max);  g = 0
    (s == 0: step_size clamped unchanged; s nan: step_size nan)
    p   -= sign(g) * step_size
    prev = g

Defaults: ``lr=0.01, eta_minus=0.5, eta_plus=1.2, step_min=1e-6,
step_max=50.0`` (``torch.optim.Rprop``'s ``etas=(0.5, 1.2)``,
``step_sizes=(1e-6, 50)``, split in the book's style).  State: ``prev``,
``step_size``.  No weight decay (torch's Rprop has none).  ``lr`` is read only
at the first update, where it initialises ``step_size``.

Rprop is a full-batch rule: with mini-batch noise the signs flip at random
and the step sizes collapse.

Reference: Riedmiller & Braun, "A Direct Adaptive Method for Faster
Backpropagation Learning: The RPROP Algorithm", ICNN 1993 (the variant
without weight backtracking, "Rprop-").  Source of truth:
``torch.optim.Rprop`` (single-tensor implementation).
"""
from typing import NamedTuple

from .._hyper import Hyperparameter, Hyperparameters, above_one, non_negative, open_unit_interval, positive
from .._jit import RuleMath, sign
from ..optimizer import Optimizer


class RpropHyperparameters(Hyperparameters):
    lr = Hyperparameter(0.01, non_negative, "initial step size")
    eta_minus = Hyperparameter(0.5, open_unit_interval, "step-size factor after a sign flip")
    eta_plus = Hyperparameter(1.2, above_one, "step-size factor while the sign holds")
    step_min = Hyperparameter(1e-6, non_negative, "smallest step size")
    step_max = Hyperparameter(50.0, positive, "largest step size")


class Scalars(NamedTuple):
    first: float
    lr: float
    eta_minus: float
    eta_plus: float
    step_min: float
    step_max: float


def scalars(hp, t) -> Scalars:
    return Scalars(first=1.0 if t == 1 else 0.0, lr=hp.lr, eta_minus=hp.eta_minus, eta_plus=hp.eta_plus,
                   step_min=hp.step_min, step_max=hp.step_max)


def update(p, g, i, prev, step_size, first, lr, eta_minus, eta_plus, step_min, step_max):
    size = lr if first != 0 else step_size[i]
    s = g * prev[i]
    if s > 0:
        size = size * eta_plus
    elif s < 0:
        size = size * eta_minus
        g = lr - lr  # +0 in the arithmetic dtype (lr is finite)
    elif s != s:
        size = size * s
    # torch's clamp_(min, max): the lower bound, then the upper (so with
    # step_min > step_max every size is step_max, as in torch); nan stays nan.
    if size < step_min:
        size = step_min
    if size > step_max:
        size = step_max
    step_size[i] = size
    prev[i] = g
    return p - sign(g) * size


MATH = RuleMath("Rprop", ("prev", "step_size"), Scalars, scalars, update, depends_on_step=True,
                coupled_decay=None)


class Rprop(RpropHyperparameters, Optimizer):
    __doc__ = __doc__
    math = MATH
