"""TorchAdagrad: ``torch.optim.Adagrad``'s form of AdaGrad, for :mod:`fastopt.torch`.

Equations (``t`` is the step count, 1 at the first update; ``g`` after
coupled weight decay, ``g + weight_decay * p``)::

    clr = lr / (1 + (t - 1) * lr_decay)
    h += g * g
    p -= clr * g / (sqrt(h) + eps)

Defaults: ``lr=0.01, lr_decay=0.0, eps=1e-10, weight_decay=0.0``
(PyTorch's).  State: ``h`` (PyTorch's ``sum``), zeros at the first update
here; :mod:`fastopt.torch` starts it at ``initial_accumulator_value``.

Reference: Duchi, Hazan & Singer, "Adaptive Subgradient Methods for Online
Learning and Stochastic Optimization", JMLR 2011, in the form of PyTorch's
documented ``Adagrad`` algorithm.

Compared with fastopt's :class:`~fastopt.AdaGrad` (the book's): the same
update with ``lr_decay`` and PyTorch's default ``eps``.
"""
from typing import NamedTuple

from .._hyper import Hyperparameter, Hyperparameters, non_negative, positive
from .._jit import RuleMath
from ..optimizer import Optimizer
from .adagrad import update


class TorchAdagradHyperparameters(Hyperparameters):
    lr = Hyperparameter(0.01, non_negative, "learning rate")
    lr_decay = Hyperparameter(0.0, non_negative, "lr / (1 + (t - 1) * lr_decay) at step t")
    eps = Hyperparameter(1e-10, positive, "added to sqrt(h)")
    weight_decay = Hyperparameter(0.0, non_negative, "coupled L2 coefficient")


class Scalars(NamedTuple):
    lr: float
    eps: float


def scalars(hp, t) -> Scalars:
    return Scalars(lr=hp.lr / (1.0 + (t - 1) * hp.lr_decay), eps=hp.eps)


MATH = RuleMath("TorchAdagrad", ("h",), Scalars, scalars, update, depends_on_step=True, int8_unsigned=("h",))


class TorchAdagrad(TorchAdagradHyperparameters, Optimizer):
    __doc__ = __doc__
    math = MATH
