"""The NumPy reference: every rule and every engine option in whole-array NumPy.

These classes are the specification the kernels are tested against, bit for
bit.  The rules are written the way the book writes ``common/optimizer.py`` -
a loop over ``params`` with whole-array expressions - with its published
defects fixed, and with the numerical rules of DESIGN section 3:

* arithmetic happens in the wider of the param dtype and the state dtype;
  each state array is kept in the state dtype and converted when read and
  when stored;
* every scalar is computed in Python floats once per step and rounded to the
  arithmetic dtype;
* the gradient prologue, in order: clamp to ``[-clip_value, clip_value]``,
  multiply by the clip coefficient (``-`` for ``maximize``; 1 without
  clipping), add ``weight_decay * p`` (coupled decay, every rule but AdamW);
* the clip norm is summed on the fixed grid of :mod:`fastopt._reduce`.

They share the hyperparameter declarations (names, defaults, checks) with the
fast classes and nothing else: no kernel, layout, plan or state buffer (and,
for Adafactor, the shapes of its factors and the chunking of its column
sums, which are part of the specification).  State lives in per-key dicts
as in the book (``self.v[key]``).
"""

from __future__ import annotations

import math
from fnmatch import fnmatchcase
from types import SimpleNamespace

import numpy as np

from ._hyper import Hyperparameters
from ._lowp import reference_bf16_values, reference_bits, reference_dequantize, reference_quantize
from ._reduce import reference_key_sum_of_squares, reference_pairwise, reference_pairwise_axis, reference_runs_sum_of_squares
from .rules import adafactor as _adafactor
from .rules.adafactor import AdafactorHyperparameters
from .rules.adabelief import AdaBeliefHyperparameters
from .rules.adadelta import AdadeltaHyperparameters
from .rules.adagrad import AdaGradHyperparameters
from .rules.adam import AdamHyperparameters
from .rules.adamax import AdamaxHyperparameters
from .rules.adamw import AdamWHyperparameters
from .rules.lamb import LAMBHyperparameters
from .rules.lars import LARSHyperparameters
from .rules.lion import LionHyperparameters
from .rules.momentum import MomentumHyperparameters
from .rules.nadam import NAdamHyperparameters
from .rules.nesterov import NesterovHyperparameters
from .rules.radam import RAdamHyperparameters
from .rules.rmsprop import RMSpropHyperparameters
from .rules.rprop import RpropHyperparameters
from .rules.sgd import SGDHyperparameters
from .rules.torch_adagrad import TorchAdagradHyperparameters
from .rules.torch_adam import TorchAdamHyperparameters
from .rules.torch_rmsprop import TorchRMSpropHyperparameters

__all__ = ["SGD", "Momentum", "Nesterov", "AdaGrad", "RMSprop", "Adam", "AdamW",
           "NAdam", "RAdam", "Adamax", "Adadelta", "Rprop", "AdaBelief", "Lion", "LAMB", "LARS", "Adafactor",
           "TorchAdam", "TorchAdagrad", "TorchRMSprop"]


class ReferenceOptimizer(Hyperparameters):
    state_names: tuple[str, ...] = ()
    #: State buffers that are never negative (stored with the unsigned code
    #: map when ``state_dtype="int8"``).
    nonnegative: tuple[str, ...] = ()
    #: Rules whose decay acts on the params themselves set this False.
    coupled_decay = True
    structure: dict = {}

    def __init__(self, *args, nonfinite="propagate", clip_norm=None, clip_value=None, maximize=False,
                 state_dtype=None, groups=None, **kwargs):
        options = {n: kwargs.pop(n, d) for n, d in self.structure.items()}
        super().__init__(*args, **kwargs)
        self.__dict__.update(options)
        self.nonfinite, self.clip_norm, self.clip_value = nonfinite, clip_norm, clip_value
        self.maximize = maximize
        #: "bfloat16" or "int8" (stored as bits or as codes and absmax), else None.
        self.state_format = state_dtype if state_dtype in ("bfloat16", "int8") else None
        self.state_dtype = None if state_dtype is None or self.state_format else np.dtype(state_dtype)
        self.groups = {p: dict(o) for p, o in (groups or {}).items()}
        self.step_count = 0
        self.skipped_steps = 0
        self.last_grad_norm = None
        self.store = {}  # state name -> {key: array in the state dtype}

    def hyperparameters_of(self, key, count):
        """The key's hyperparameters at update ``count``: the first matching
        group's overrides over the optimizer's own, schedules evaluated."""
        values = dict(self._hyper)
        for pattern, overrides in self.groups.items():
            if key == pattern or fnmatchcase(key, pattern):
                values.update(overrides)
                break
        return SimpleNamespace(**{n: (v(count) if callable(v) else v) for n, v in values.items()})

    def update(self, params, grads):
        count = self.step_count
        keys = list(params.keys())
        if self.nonfinite != "propagate":
            bad = [k for k in keys if not np.all(np.isfinite(grads[k]))]
            if bad:
                if self.nonfinite == "skip":
                    self.skipped_steps += 1
                    return
                raise FloatingPointError(bad[0])
        dtypes = {k: np.asarray(params[k]).dtype for k in keys}
        compute = {k: np.result_type(dtypes[k], self.state_dtype or dtypes[k]) for k in keys}
        clipped = {}
        for k in keys:
            g = np.asarray(grads[k]).astype(compute[k])
            if self.clip_value is not None:
                cv = compute[k].type(self.clip_value)
                g = np.where(g > cv, cv, np.where(g < -cv, -cv, g))
            clipped[k] = g
        scale = 1.0
        if self.clip_norm is not None:
            total = reference_pairwise([reference_key_sum_of_squares(clipped[k]) for k in keys])
            norm = math.sqrt(total)
            self.last_grad_norm = norm
            scale = min(1.0, self.clip_norm / (norm + 1e-6)) if not math.isnan(norm) else math.nan
        if self.maximize:
            scale = -scale
        self.step_count += 1
        t = self.step_count
        for k in keys:
            dt = compute[k].type
            hp = self.hyperparameters_of(k, count)
            p = np.asarray(params[k]).astype(compute[k])
            g = clipped[k] * dt(scale)
            if self.coupled_decay and dt(hp.weight_decay) != 0:
                g = g + dt(hp.weight_decay) * p
            state_dtype = self.state_dtype or dtypes[k]
            if self.state_format is None:
                state = {n: self.store.setdefault(n, {}).setdefault(k, np.zeros(self.state_shape(n, np.shape(p)),
                                                                                state_dtype))
                         for n in self.state_names}
            else:
                state = {n: self._decoded(n, k, np.shape(p)) for n in self.state_names}
            s = SimpleNamespace(**{n: a.astype(compute[k]) for n, a in state.items()})
            self.current_key = k
            self.current_dtype = dtypes[k]
            new_p, new_state = self.rule(p, g, s, hp, t, dt)
            for n in self.state_names:
                if self.state_format is None:
                    self.store[n][k] = np.asarray(new_state[n]).astype(state_dtype)
                else:
                    self._encode(n, k, np.asarray(new_state[n]))
            self._write(params, k, np.asarray(new_p).astype(dtypes[k]))

    def _decoded(self, name, key, shape) -> np.ndarray:
        """The float32 values of stored state (zeros before the key's first update)."""
        stored = self.store.setdefault(name, {}).get(key)
        if stored is None:
            return np.zeros(shape, np.float32)
        if self.state_format == "bfloat16":
            return reference_bf16_values(stored)
        return reference_dequantize(stored, self.store[name + ".absmax"][key], name in self.nonnegative)

    def _encode(self, name, key, values) -> None:
        if self.state_format == "bfloat16":
            self.store[name][key] = reference_bits(values)  # float64 values round to float32 first
        else:
            codes, absmax = reference_quantize(values, name in self.nonnegative)
            self.store[name][key] = codes
            self.store.setdefault(name + ".absmax", {})[key] = absmax

    def update_and_copy(self, params, grads, copies):
        """``update``, then each new param's bfloat16 bits into ``copies[key]``
        (uint16 arrays), unless the update was skipped."""
        skipped = self.skipped_steps
        self.update(params, grads)
        if self.skipped_steps == skipped:
            for k, c in copies.items():
                c[...] = reference_bits(params[k])

    @staticmethod
    def state_shape(name, shape):
        return shape

    def __getattr__(self, name):
        # The book's attributes: self.v[key], self.m[key], ... (None before the first update).
        store = self.__dict__.get("store")
        if store is not None and name in self.state_names:
            return store.get(name)
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")

    @staticmethod
    def _write(params, key, value):
        old = params[key]
        if type(old) is float:
            params[key] = float(value)
        elif isinstance(old, np.generic):
            params[key] = old.dtype.type(value)
        else:
            old[...] = value

    @property
    def state(self) -> dict[str, dict]:
        """What is stored: float arrays, bfloat16 bits (uint16), or int8 codes
        (uint8) with each name's ``"<name>.absmax"`` (float32 per block)."""
        names = list(self.state_names)
        if self.state_format == "int8":
            names += [n + ".absmax" for n in self.state_names]
        return {n: dict(self.store.get(n, {})) for n in names}


class SGD(SGDHyperparameters, ReferenceOptimizer):
    structure = {"nesterov": False}

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        momentum = self._hyper["momentum"]
        self.state_names = ("momentum_buffer",) if callable(momentum) or momentum != 0 else ()

    def rule(self, p, g, s, hp, t, dt):
        if not self.state_names:
            return p - dt(hp.lr) * g, {}
        if t == 1:
            b = g
        else:
            b = dt(hp.momentum) * s.momentum_buffer + dt(1.0 - hp.dampening) * g
        d = g + dt(hp.momentum) * b if self.nesterov else b
        return p - dt(hp.lr) * d, {"momentum_buffer": b}


class Momentum(MomentumHyperparameters, ReferenceOptimizer):
    state_names = ("v",)

    def rule(self, p, g, s, hp, t, dt):
        v = dt(hp.momentum) * s.v - dt(hp.lr) * g
        return p + v, {"v": v}


class Nesterov(NesterovHyperparameters, ReferenceOptimizer):
    """The book's current code: two roundings of ``p``, the *old* velocity."""

    state_names = ("v",)

    def rule(self, p, g, s, hp, t, dt):
        mom, lr = hp.momentum, hp.lr
        p = p + dt(mom * mom) * s.v
        p = p - dt((1.0 + mom) * lr) * g
        v = dt(mom) * s.v - dt(lr) * g
        return p, {"v": v}


class AdaGrad(AdaGradHyperparameters, ReferenceOptimizer):
    nonnegative = ("h",)
    state_names = ("h",)

    def rule(self, p, g, s, hp, t, dt):
        h = s.h + g * g
        return p - dt(hp.lr) * g / (np.sqrt(h) + dt(hp.eps)), {"h": h}


class RMSprop(RMSpropHyperparameters, ReferenceOptimizer):
    nonnegative = ("h",)
    state_names = ("h",)

    def rule(self, p, g, s, hp, t, dt):
        h = dt(hp.decay_rate) * s.h + dt(1.0 - hp.decay_rate) * g * g
        return p - dt(hp.lr) * g / (np.sqrt(h) + dt(hp.eps)), {"h": h}


class Adam(AdamHyperparameters, ReferenceOptimizer):
    nonnegative = ("v", "v_max")
    structure = {"amsgrad": False}

    @property
    def state_names(self):
        return ("m", "v", "v_max") if self.amsgrad else ("m", "v")

    def rule(self, p, g, s, hp, t, dt):
        lr_t = hp.lr * math.sqrt(1.0 - hp.beta2**t) / (1.0 - hp.beta1**t)
        m = s.m + dt(1.0 - hp.beta1) * (g - s.m)
        # g * g, not g**2: the kernels square by multiplication.
        v = s.v + dt(1.0 - hp.beta2) * (g * g - s.v)
        new = {"m": m, "v": v}
        if self.amsgrad:
            v = new["v_max"] = np.maximum(s.v_max, v)
        return p - dt(lr_t) * m / (np.sqrt(v) + dt(hp.eps)), new


class AdamW(AdamWHyperparameters, ReferenceOptimizer):
    nonnegative = ("v", "v_max")
    coupled_decay = False
    structure = {"amsgrad": False}

    @property
    def state_names(self):
        return ("m", "v", "v_max") if self.amsgrad else ("m", "v")

    def rule(self, p, g, s, hp, t, dt):
        b1, b2 = hp.beta1, hp.beta2
        step_size = hp.lr / (1.0 - b1**t)
        sqrt_bias2 = math.sqrt(1.0 - b2**t)
        m = dt(b1) * s.m + dt(1.0 - b1) * g
        v = dt(b2) * s.v + dt(1.0 - b2) * g * g
        new = {"m": m, "v": v}
        if self.amsgrad:
            v = new["v_max"] = np.maximum(s.v_max, v)
        p = p * dt(1.0 - hp.lr * hp.weight_decay)
        return p - dt(step_size) * m / (np.sqrt(v) / dt(sqrt_bias2) + dt(hp.eps)), new


class NAdam(NAdamHyperparameters, ReferenceOptimizer):
    """torch's NAdam; ``mu_product`` per key, as torch keeps it per param."""

    nonnegative = ("v",)

    state_names = ("m", "v")
    structure = {"decoupled_weight_decay": False}

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.mu_product = {}

    @property
    def coupled_decay(self):
        return not self.decoupled_weight_decay

    def rule(self, p, g, s, hp, t, dt):
        mu = hp.beta1 * (1.0 - 0.5 * 0.96 ** (t * hp.momentum_decay))
        mu_next = hp.beta1 * (1.0 - 0.5 * 0.96 ** ((t + 1) * hp.momentum_decay))
        mu_product = self.mu_product[self.current_key] = self.mu_product.get(self.current_key, 1.0) * mu
        if self.decoupled_weight_decay:
            p = p * dt(1.0 - hp.lr * hp.weight_decay)
        m = s.m + dt(1.0 - hp.beta1) * (g - s.m)
        v = dt(hp.beta2) * s.v + dt(1.0 - hp.beta2) * g * g
        d = np.sqrt(v / dt(1.0 - hp.beta2**t)) + dt(hp.eps)
        p = p + dt(-hp.lr * (1.0 - mu) / (1.0 - mu_product)) * (g / d)
        p = p + dt(-hp.lr * mu_next / (1.0 - mu_product * mu_next)) * (m / d)
        return p, {"m": m, "v": v}


class RAdam(RAdamHyperparameters, ReferenceOptimizer):
    nonnegative = ("v",)
    state_names = ("m", "v")
    structure = {"decoupled_weight_decay": False}

    @property
    def coupled_decay(self):
        return not self.decoupled_weight_decay

    def rule(self, p, g, s, hp, t, dt):
        if self.decoupled_weight_decay:
            p = p * dt(1.0 - hp.lr * hp.weight_decay)
        m = s.m + dt(1.0 - hp.beta1) * (g - s.m)
        v = dt(hp.beta2) * s.v + dt(1.0 - hp.beta2) * g * g
        bias1, bias2 = 1.0 - hp.beta1**t, 1.0 - hp.beta2**t
        rho_inf = 2.0 / (1.0 - hp.beta2) - 1.0
        rho_t = rho_inf - 2.0 * t * hp.beta2**t / bias2
        if rho_t > 5.0:
            rect = math.sqrt((rho_t - 4.0) * (rho_t - 2.0) * rho_inf / ((rho_inf - 4.0) * (rho_inf - 2.0) * rho_t))
            p = p - dt(hp.lr * rect * math.sqrt(bias2) / bias1) * m / (np.sqrt(v) + dt(hp.eps))
        else:
            p = p - dt(hp.lr / bias1) * m
        return p, {"m": m, "v": v}


class Adamax(AdamaxHyperparameters, ReferenceOptimizer):
    nonnegative = ("u",)
    state_names = ("m", "u")

    def rule(self, p, g, s, hp, t, dt):
        m = s.m + dt(1.0 - hp.beta1) * (g - s.m)
        u = np.maximum(dt(hp.beta2) * s.u, np.abs(g) + dt(hp.eps))
        return p - dt(hp.lr / (1.0 - hp.beta1**t)) * (m / u), {"m": m, "u": u}


class Adadelta(AdadeltaHyperparameters, ReferenceOptimizer):
    nonnegative = ("v", "acc_delta")
    state_names = ("v", "acc_delta")

    def rule(self, p, g, s, hp, t, dt):
        rho, one_minus_rho, eps = dt(hp.rho), dt(1.0 - hp.rho), dt(hp.eps)
        v = rho * s.v + one_minus_rho * g * g
        delta = np.sqrt(s.acc_delta + eps) / np.sqrt(v + eps) * g
        acc_delta = rho * s.acc_delta + one_minus_rho * delta * delta
        return p - dt(hp.lr) * delta, {"v": v, "acc_delta": acc_delta}


class Rprop(RpropHyperparameters, ReferenceOptimizer):
    state_names = ("prev", "step_size")
    coupled_decay = False

    def rule(self, p, g, s, hp, t, dt):
        size = np.full(np.shape(p), dt(hp.lr)) if t == 1 else s.step_size
        sign_test = g * s.prev
        size = np.where(sign_test > 0, size * dt(hp.eta_plus),
                        np.where(sign_test < 0, size * dt(hp.eta_minus),
                                 np.where(np.isnan(sign_test), size * sign_test, size)))
        size = np.where(size < dt(hp.step_min), dt(hp.step_min), size)
        size = np.where(size > dt(hp.step_max), dt(hp.step_max), size)
        g = np.where(sign_test < 0, dt(0.0), g)
        return p - np.sign(g) * size, {"prev": g, "step_size": size}


class AdaBelief(AdaBeliefHyperparameters, ReferenceOptimizer):
    nonnegative = ("s",)
    state_names = ("m", "s")

    def rule(self, p, g, s, hp, t, dt):
        m = dt(1.0 - hp.beta1) * g + dt(hp.beta1) * s.m
        e = g - m
        belief = dt(1.0 - hp.beta2) * (e * e) + dt(hp.beta2) * s.s + dt(hp.eps_root)
        m_hat = m / dt(1.0 - hp.beta1**t)
        step = m_hat / (np.sqrt(belief / dt(1.0 - hp.beta2**t)) + dt(hp.eps))
        return p - dt(hp.lr) * step, {"m": m, "s": belief}


class Lion(LionHyperparameters, ReferenceOptimizer):
    state_names = ("m",)
    coupled_decay = False

    def rule(self, p, g, s, hp, t, dt):
        c = dt(1.0 - hp.beta1) * g + dt(hp.beta1) * s.m
        m = dt(1.0 - hp.beta2) * g + dt(hp.beta2) * s.m
        return p - dt(hp.lr) * (np.sign(c) + dt(hp.weight_decay) * p), {"m": m}


def _norm(x) -> float:
    """A key's L2 norm as the engine sums it: float64 on the fixed grid."""
    return math.sqrt(reference_key_sum_of_squares(x))


class LAMB(LAMBHyperparameters, ReferenceOptimizer):
    state_names = ("m", "v")
    coupled_decay = False

    def rule(self, p, g, s, hp, t, dt):
        m = dt(1.0 - hp.beta1) * g + dt(hp.beta1) * s.m
        v = dt(1.0 - hp.beta2) * (g * g) + dt(hp.beta2) * s.v
        m_hat, v_hat = m * dt(1.0 / (1.0 - hp.beta1**t)), v * dt(1.0 / (1.0 - hp.beta2**t))
        u = m_hat / (np.sqrt(v_hat + dt(hp.eps_root)) + dt(hp.eps)) + dt(hp.weight_decay) * p
        p_norm, u_norm = _norm(p), _norm(u)
        ratio = 1.0 if p_norm == 0.0 or u_norm == 0.0 else p_norm / u_norm
        if math.isnan(ratio):
            return np.full(np.shape(p), dt(ratio)), {"m": m, "v": v}
        return p - dt(hp.lr) * (u * dt(ratio)), {"m": m, "v": v}


class LARS(LARSHyperparameters, ReferenceOptimizer):
    state_names = ("trace",)
    structure = {"nesterov": False}

    def rule(self, p, g, s, hp, t, dt):
        p_norm, g_norm = _norm(p), _norm(g)
        ratio = 1.0 if p_norm == 0.0 or g_norm == 0.0 else hp.trust_coefficient * p_norm / (g_norm + hp.eps)
        if math.isnan(ratio):
            everywhere = np.full(np.shape(p), dt(ratio))
            return everywhere, {"trace": everywhere.copy()}
        step = dt(-hp.lr) * (g * dt(ratio))
        trace = step + dt(hp.momentum) * s.trace
        if self.nesterov:
            return p + (step + dt(hp.momentum) * trace), {"trace": trace}
        return p + trace, {"trace": trace}


def _lerp(a, b, w, one_minus_w):
    """torch's lerp with a scalar weight."""
    return a + w * (b - a) if w < 0.5 else b - (b - a) * one_minus_w


def _column_sums(squares, m: int) -> np.ndarray:
    """Column sums of a stack of matrices ``(B, n, m)`` on Adafactor's grid:
    chunks of rows added in order, chunk sums combined pairwise."""
    stack, n = squares.shape[0], squares.shape[1]
    rows = _adafactor.rows_per_chunk(m)
    n_chunks = -(-n // rows)
    padded = np.zeros((stack, n_chunks * rows, m))
    padded[:, :n] = squares
    chunks = padded.reshape(stack, n_chunks, rows, m)
    sums = np.zeros((stack, n_chunks, m))
    for r in range(rows):  # row by row, from +0.0
        sums += chunks[:, :, r, :]
    return reference_pairwise_axis(sums, axis=1)


class Adafactor(AdafactorHyperparameters, ReferenceOptimizer):
    state_names = ("row_var", "col_var", "variance")
    coupled_decay = False
    state_shape = staticmethod(_adafactor.state_shape)

    def rule(self, p, g, s, hp, t, dt):
        state = {"row_var": s.row_var, "col_var": s.col_var, "variance": s.variance}
        if p.size == 0:
            return p, state
        w = dt(float(t) ** hp.beta2_decay)  # the weight of the new mean, 1 - beta2_t
        one_minus_w = dt(1.0) - w
        eps1_value = float(np.finfo(self.current_dtype).eps) if hp.eps1 is None else hp.eps1
        eps1, eps1_squared = dt(eps1_value), dt(eps1_value * eps1_value)
        if p.ndim >= 2:
            n, m = p.shape[-2], p.shape[-1]
            g3 = g.reshape(-1, n, m)
            g64 = g3.astype(np.float64)
            squares = g64 * g64
            row_means = (reference_runs_sum_of_squares(g3.reshape(-1, m)).reshape(-1, n) / m).astype(dt)
            col_means = (_column_sums(squares, m) / n).astype(dt)
            rows = _lerp(s.row_var.reshape(-1, n), row_means, w, one_minus_w)
            cols = _lerp(s.col_var.reshape(-1, m), col_means, w, one_minus_w)
            den = np.maximum((reference_pairwise_axis(rows.astype(np.float64), axis=1) / n).astype(dt), eps1)
            row_roots = np.sqrt(rows / den[:, None])
            col_roots = np.sqrt(cols)
            roots = row_roots[:, :, None] * col_roots[:, None, :]  # sqrt(V), a nan never below eps1
            inverses = (dt(1.0) / row_roots)[:, :, None] * (dt(1.0) / col_roots)[:, None, :]
            u = (g3 * np.where(roots < eps1, dt(1.0) / eps1, inverses)).reshape(p.shape)
            p_sum = reference_pairwise(reference_runs_sum_of_squares(p.reshape(-1, m)))
            u_sum = reference_pairwise(reference_runs_sum_of_squares(u.reshape(-1, m)))
            state["row_var"] = rows.reshape(s.row_var.shape)
            state["col_var"] = cols.reshape(s.col_var.shape)
        else:
            variance = _lerp(s.variance, g * g, w, one_minus_w)
            u = g / np.sqrt(np.maximum(variance, eps1_squared))
            p_sum, u_sum = reference_key_sum_of_squares(p), reference_key_sum_of_squares(u)
            state["variance"] = variance
        root_size = math.sqrt(p.size)
        rms_p = math.sqrt(p_sum) / root_size
        eps2 = float(dt(hp.eps2))
        alpha = (rms_p if rms_p > eps2 else eps2) * float(dt(min(hp.lr, 1 / (float(t) ** 0.5))))
        ratio = math.sqrt(u_sum) / (root_size * float(dt(hp.d)))
        step = dt(-(alpha / (ratio if ratio > 1.0 else 1.0)))
        return p * dt(1 - hp.lr * hp.weight_decay) + step * u, state


# -- PyTorch's forms of the book's rules (the math of fastopt.torch) -------------------


class TorchAdam(TorchAdamHyperparameters, ReferenceOptimizer):
    nonnegative = ("v", "v_max")
    structure = {"amsgrad": False}

    @property
    def state_names(self):
        return ("m", "v", "v_max") if self.amsgrad else ("m", "v")

    def rule(self, p, g, s, hp, t, dt):
        m = dt(hp.beta1) * s.m + dt(1.0 - hp.beta1) * g
        v = dt(hp.beta2) * s.v + dt(1.0 - hp.beta2) * g * g
        new = {"m": m, "v": v}
        if self.amsgrad:
            v = new["v_max"] = np.maximum(s.v_max, v)
        step_size, sqrt_bias2 = hp.lr / (1.0 - hp.beta1**t), math.sqrt(1.0 - hp.beta2**t)
        return p - dt(step_size) * m / (np.sqrt(v) / dt(sqrt_bias2) + dt(hp.eps)), new


class TorchAdagrad(TorchAdagradHyperparameters, ReferenceOptimizer):
    nonnegative = ("h",)
    state_names = ("h",)

    def rule(self, p, g, s, hp, t, dt):
        h = s.h + g * g
        clr = hp.lr / (1.0 + (t - 1) * hp.lr_decay)
        return p - dt(clr) * g / (np.sqrt(h) + dt(hp.eps)), {"h": h}


class TorchRMSprop(TorchRMSpropHyperparameters, ReferenceOptimizer):
    nonnegative = ("h",)
    structure = {"centered": False}

    @property
    def state_names(self):
        momentum = self._hyper["momentum"]
        with_buffer = callable(momentum) or momentum != 0
        return ("h",) + (("a",) if self.centered else ()) + (("b",) if with_buffer else ())

    def rule(self, p, g, s, hp, t, dt):
        alpha, one_minus_alpha = dt(hp.alpha), dt(1.0 - hp.alpha)
        new = {"h": alpha * s.h + one_minus_alpha * g * g}
        if self.centered:
            new["a"] = alpha * s.a + one_minus_alpha * g
            avg = np.sqrt(new["h"] - new["a"] * new["a"]) + dt(hp.eps)
        else:
            avg = np.sqrt(new["h"]) + dt(hp.eps)
        if "b" in self.state_names:
            new["b"] = dt(hp.momentum) * s.b + g / avg
            return p - dt(hp.lr) * new["b"], new
        return p - dt(hp.lr) * g / avg, new
