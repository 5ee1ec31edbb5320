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
from .._hyper import Hyperparameter, Hyperparameters, non_negative, positive, unit_interval
from .._jit import RuleMath
from ..optimizer import Optimizer
from . import adamw
from .adamw import Scalars as AdamWScalars
from .adamw import scalars as adamw_scalars


class TorchAdamHyperparameters(Hyperparameters):
    lr = Hyperparameter(0.001, non_negative, "learning rate")
    beta1 = Hyperparameter(0.9, unit_interval, "decay of the gradient average m")
    beta2 = Hyperparameter(0.999, unit_interval, "decay of the squared-gradient average v")
    eps = Hyperparameter(1e-8, positive, "added to the bias-corrected sqrt(v)")
    weight_decay = Hyperparameter(0.0, non_negative, "coupled L2 coefficient")


def scalars(hp, t) -> AdamWScalars:
    # AdamW's update with its decoupled factor at 1 (``p * 1.0`` is exact):
    # the decay is the prologue's coupled one, on the grad.
    s = adamw_scalars(hp, t)
    return AdamWScalars(step_size=s.step_size, sqrt_bias2=s.sqrt_bias2, decay=1.0, beta1=s.beta1,
                        one_minus_beta1=s.one_minus_beta1, beta2=s.beta2, one_minus_beta2=s.one_minus_beta2,
                        eps=s.eps)


MATH = RuleMath("TorchAdam", ("m", "v"), adamw.Scalars, scalars, adamw.update, depends_on_step=True,
                int8_unsigned=("v",))
AMSGRAD_MATH = RuleMath("TorchAdamAMSGrad", ("m", "v", "v_max"), adamw.Scalars, scalars, adamw.amsgrad_update,
                        depends_on_step=True, int8_unsigned=("v", "v_max"))


class TorchAdam(TorchAdamHyperparameters, Optimizer):
    __doc__ = __doc__
    math = MATH
    structure = {"amsgrad": False}

    def choose_math(self) -> RuleMath:
        return AMSGRAD_MATH if self.amsgrad else MATH
