"""The NumPy reference: every rule as whole-array NumPy, in the book's style.

These classes are the specification the kernels are tested against, bit for
bit.  They are written the way the book writes ``common/optimizer.py`` - a
loop over ``params`` with whole-array expressions - with its published defects
fixed (see each rule's docstring in :mod:`fastopt`) and with one numerical rule
the kernels share: every scalar is computed in Python floats once per step and
rounded to the param dtype, so float32 params are computed in float32 from
end to end.

They share the hyperparameter declarations (names, defaults, checks) with the
fast classes and nothing else: no kernel, layout or state buffer is used here.
State lives in per-key dicts as in the book (``self.v``, ``self.h``,
``self.m``), and :attr:`ReferenceOptimizer.state` shows them in the same shape
as :attr:`fastopt.Optimizer.state`.
"""

from __future__ import annotations

import math

import numpy as np

from ._hyper import Hyperparameters
from .rules.adagrad import AdaGradHyperparameters
from .rules.adam import AdamHyperparameters
from .rules.adamw import AdamWHyperparameters
from .rules.momentum import MomentumHyperparameters
from .rules.nesterov import NesterovHyperparameters
from .rules.rmsprop import RMSpropHyperparameters
from .rules.sgd import SGDHyperparameters

__all__ = ["SGD", "Momentum", "Nesterov", "AdaGrad", "RMSprop", "Adam", "AdamW"]


def _dtype_of(value) -> type:
    """The scalar type a param computes in (Python floats are float64)."""
    return np.asarray(value).dtype.type


def _zeros(value):
    return np.zeros_like(np.asarray(value))


class ReferenceOptimizer(Hyperparameters):
    state_names: tuple[str, ...] = ()

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.step_count = 0
        for name in self.state_names:
            setattr(self, name, None)

    def _init_state(self, params):
        for name in self.state_names:
            if getattr(self, name) is None:
                setattr(self, name, {key: _zeros(val) for key, val in params.items()})

    def _grad(self, params, grads, key, dt):
        """``g + weight_decay * p`` (coupled L2), or ``g`` when the decay is 0."""
        g = grads[key]
        wd = dt(self.weight_decay)
        if wd != 0:
            g = g + wd * params[key]
        return g

    @property
    def state(self) -> dict[str, dict]:
        return {n: dict(getattr(self, n) or {}) for n in self.state_names}


class SGD(SGDHyperparameters, ReferenceOptimizer):
    def update(self, params, grads):
        self.step_count += 1
        for key in params.keys():
            dt = _dtype_of(params[key])
            g = self._grad(params, grads, key, dt)
            params[key] -= dt(self.lr) * g


class Momentum(MomentumHyperparameters, ReferenceOptimizer):
    state_names = ("v",)

    def update(self, params, grads):
        self._init_state(params)
        self.step_count += 1
        for key in params.keys():
            dt = _dtype_of(params[key])
            g = self._grad(params, grads, key, dt)
            self.v[key] = dt(self.momentum) * self.v[key] - dt(self.lr) * g
            params[key] += self.v[key]


class Nesterov(NesterovHyperparameters, ReferenceOptimizer):
    """Bengio et al. (2012), eq. 7: ``momentum**2`` multiplies the *old* velocity."""

    state_names = ("v",)

    def update(self, params, grads):
        self._init_state(params)
        self.step_count += 1
        mom, lr = self.momentum, self.lr
        for key in params.keys():
            dt = _dtype_of(params[key])
            g = self._grad(params, grads, key, dt)
            v_old = self.v[key]
            params[key] += dt(mom * mom) * v_old - dt((1.0 + mom) * lr) * g
            self.v[key] = dt(mom) * v_old - dt(lr) * g


class AdaGrad(AdaGradHyperparameters, ReferenceOptimizer):
    state_names = ("h",)

    def update(self, params, grads):
        self._init_state(params)
        self.step_count += 1
        for key in params.keys():
            dt = _dtype_of(params[key])
            g = self._grad(params, grads, key, dt)
            self.h[key] += g * g
            params[key] -= dt(self.lr) * g / (np.sqrt(self.h[key]) + dt(self.eps))


class RMSprop(RMSpropHyperparameters, ReferenceOptimizer):
    state_names = ("h",)

    def update(self, params, grads):
        self._init_state(params)
        self.step_count += 1
        for key in params.keys():
            dt = _dtype_of(params[key])
            g = self._grad(params, grads, key, dt)
            self.h[key] = dt(self.decay_rate) * self.h[key] + dt(1.0 - self.decay_rate) * g * g
            params[key] -= dt(self.lr) * g / (np.sqrt(self.h[key]) + dt(self.eps))


class Adam(AdamHyperparameters, ReferenceOptimizer):
    state_names = ("m", "v")

    def update(self, params, grads):
        self._init_state(params)
        self.step_count += 1
        t = self.step_count
        lr_t = self.lr * math.sqrt(1.0 - self.beta2**t) / (1.0 - self.beta1**t)
        for key in params.keys():
            dt = _dtype_of(params[key])
            g = self._grad(params, grads, key, dt)
            self.m[key] += dt(1.0 - self.beta1) * (g - self.m[key])
            # g * g, not g**2: the kernels square by multiplication.
            self.v[key] += dt(1.0 - self.beta2) * (g * g - self.v[key])
            params[key] -= dt(lr_t) * self.m[key] / (np.sqrt(self.v[key]) + dt(self.eps))


class AdamW(AdamWHyperparameters, ReferenceOptimizer):
    state_names = ("m", "v")

    def update(self, params, grads):
        self._init_state(params)
        self.step_count += 1
        t = self.step_count
        b1, b2 = self.beta1, self.beta2
        step_size = self.lr / (1.0 - b1**t)
        sqrt_bias2 = math.sqrt(1.0 - b2**t)
        for key in params.keys():
            dt = _dtype_of(params[key])
            g = grads[key]
            params[key] *= dt(1.0 - self.lr * self.weight_decay)
            self.m[key] = dt(b1) * self.m[key] + dt(1.0 - b1) * g
            self.v[key] = dt(b2) * self.v[key] + dt(1.0 - b2) * g * g
            params[key] -= dt(step_size) * self.m[key] / (np.sqrt(self.v[key]) / dt(sqrt_bias2) + dt(self.eps))
