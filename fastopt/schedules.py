"""Learning-rate schedules (or any float hyperparameter) with optax's formulas.

A schedule is a callable ``count -> float``; ``count`` is a Python int >= 0, the
number of updates already applied (optax's convention): the first update uses
``schedule(0)``.  Values are plain Python floats computed with :mod:`math` only,
with optax 0.2.8's names, argument names, defaults and formulas, in the same
order of float operations, so they match optax run with ``jax_enable_x64``
(``tests/golden/schedules.npz``, written by ``tools/golden_schedules.py``).

Schedules (optax's names less ``_schedule``; ``join`` is ``join_schedules``):
``constant``, ``linear``, ``polynomial``, ``cosine_decay``, ``exponential_decay``,
``piecewise_constant``, ``warmup_cosine_decay``, ``warmup_exponential_decay``,
``cosine_onecycle``, ``join``, and ``inverse_sqrt``, which optax lacks: linear
warmup from ``init_value`` to ``peak_value`` over ``warmup_steps`` (>= 1), then
``peak_value * sqrt(warmup_steps / count)`` for ``count >= warmup_steps``.

As in optax, ``transition_steps <= 0`` (or ``decay_rate == 0``) gives a constant
``init_value`` and a negative ``transition_begin`` counts as 0.  Schedules pickle;
``to_config()`` gives JSON-serialisable ``{"schedule": name, "args": {...}}`` for
:func:`from_config`; bad arguments raise ``HyperparameterError``.  Example::

    >>> from fastopt import schedules
    >>> lr = schedules.warmup_cosine_decay(0.0, 1e-3, warmup_steps=10, decay_steps=100)
    >>> lr(0), lr(5), lr(10)
    (0.0, 0.0005, 0.001)
    >>> schedules.from_config(lr.to_config())(50) == lr(50)
    True
"""

import math
import numbers
import operator
from collections.abc import Mapping

from .errors import HyperparameterError

R, R_OPT, I, B = "real", "real?", "int", "bool"  # argument kinds, checked by _check
_TYPES = {R: (numbers.Real, "a real number", float), R_OPT: (numbers.Real, "a real number or None", float),
          I: (numbers.Integral, "an int", int), B: (bool, "a bool", bool)}


def _pow(x: float, y: float) -> float:
    """``x ** y`` as XLA's pow: inf on overflow and for 0 ** -y, nan for (-x) ** 0.5."""
    try:
        return math.pow(x, y)
    except OverflowError:
        return -math.inf if x < 0 and y % 2 == 1 else math.inf
    except ValueError:
        return math.inf if x == 0 else math.nan


def _check(sched: str, arg: str, kind: str, v):
    """Validate one argument of kind R, R_OPT, I, B, "ints", "schedules" or "scales"."""
    def bad(what):
        return HyperparameterError(f"{sched}: {arg} must be {what}, got {v!r}")
    if v is None and kind in (R_OPT, "scales"):
        return None
    if kind in _TYPES:
        typ, what, convert = _TYPES[kind]
        if not isinstance(v, typ) or (isinstance(v, bool) and kind != B):
            raise bad(what)
        if kind in (R, R_OPT) and not math.isfinite(v):
            raise bad("finite")
        return convert(v)
    if kind == "ints":
        if not isinstance(v, (list, tuple)):
            raise bad("a list of ints")
        return [_check(sched, f"{arg}[{i}]", I, b) for i, b in enumerate(v)]
    if kind == "schedules":
        if not isinstance(v, (list, tuple)) or not v or not all(isinstance(x, Schedule) for x in v):
            raise bad("a non-empty list of schedules")
        return list(v)
    # "scales": {step: scale} or [[step, scale], ...], as optax's dict.
    pairs = list(v.items()) if isinstance(v, Mapping) else v
    if not isinstance(pairs, (list, tuple)) or any(not isinstance(p, (list, tuple)) or len(p) != 2
                                                   for p in pairs):
        raise bad("a dict {step: scale} or a list of [step, scale]")
    out = {_check(sched, f"{arg} step", I, b): _check(sched, f"{arg}[{b!r}]", R, x) for b, x in pairs}
    if len(out) != len(pairs) or min(out.values(), default=0.0) < 0:
        raise bad("non-negative scales (as in optax), one per step")
    return dict(sorted(out.items()))


class Schedule:
    """Base class.  ``spec`` maps each argument, in signature order, to its kind."""

    name: str = ""
    spec: dict = {}

    def __init__(self, **args):
        for arg, kind in self.spec.items():
            setattr(self, arg, _check(self.name, arg, kind, args[arg]))
        self._setup()
        self._frozen = True

    def __setattr__(self, name, value):
        # An optimizer compiles a built-in schedule's arguments once
        # (fastopt._compiled_schedules): a schedule is a value, like a float.
        if self.__dict__.get("_frozen"):
            raise AttributeError(f"{self.name}: a schedule is immutable; build a new one")
        object.__setattr__(self, name, value)

    def _setup(self) -> None:
        """Cross-argument checks and derived constants; ``_value(count)`` does the maths."""

    def __call__(self, count: int) -> float:
        try:
            count = operator.index(count)
        except TypeError:
            raise HyperparameterError(f"{self.name}: count must be an int, got {count!r}") from None
        if count < 0:
            raise HyperparameterError(f"{self.name}: count must be >= 0, got {count}")
        return float(self._value(count))

    def __repr__(self) -> str:
        return f"{self.name}({', '.join(f'{a}={getattr(self, a)!r}' for a in self.spec)})"

    def to_config(self) -> dict:
        """``{"schedule": name, "args": {...}}``, JSON-serialisable; see :func:`from_config`."""
        args = {arg: getattr(self, arg) for arg in self.spec}
        for arg, kind in self.spec.items():
            if kind == "schedules":
                args[arg] = [x.to_config() for x in args[arg]]
            elif kind == "scales" and args[arg] is not None:
                args[arg] = [[step, scale] for step, scale in args[arg].items()]
        return {"schedule": self.name, "args": args}


class _Constant(Schedule):
    name, spec = "constant", dict(value=R)

    def _value(self, count):
        return self.value


class _Polynomial(Schedule):
    name = "polynomial"
    spec = dict(init_value=R, end_value=R, power=R, transition_steps=I, transition_begin=I)

    def _value(self, count):
        steps = self.transition_steps
        if steps <= 0:
            return self.init_value
        frac = 1 - min(max(count - max(self.transition_begin, 0), 0), steps) / steps
        return (self.init_value - self.end_value) * _pow(frac, self.power) + self.end_value


class _Linear(_Polynomial):
    name, power = "linear", 1.0
    spec = dict(init_value=R, end_value=R, transition_steps=I, transition_begin=I)


class _CosineDecay(Schedule):
    name, spec = "cosine_decay", dict(init_value=R, decay_steps=I, alpha=R, exponent=R)

    def _setup(self):
        if not self.decay_steps > 0:
            raise HyperparameterError(f"cosine_decay: decay_steps must be > 0, got {self.decay_steps}")

    def _value(self, count):
        steps = float(self.decay_steps)
        decay = 0.5 * (1 + math.cos(math.pi * min(float(count), steps) / steps))
        return self.init_value * ((1 - self.alpha) * _pow(decay, self.exponent) + self.alpha)


class _ExponentialDecay(Schedule):
    name = "exponential_decay"
    spec = dict(init_value=R, transition_steps=I, decay_rate=R, transition_begin=I,
                staircase=B, end_value=R_OPT)

    def _value(self, count):
        init, rate, end = self.init_value, self.decay_rate, self.end_value
        if self.transition_steps <= 0 or rate == 0:
            return init
        decreased = count - max(self.transition_begin, 0)
        p = decreased / self.transition_steps
        if self.staircase:
            p = float(math.floor(p))
        v = init if decreased <= 0 else init * _pow(rate, p)
        if end is not None and v == v:  # a bound on init_value too, as in optax
            v = max(v, end) if rate < 1.0 else min(v, end)
        return v


class _PiecewiseConstant(Schedule):
    name, spec = "piecewise_constant", dict(init_value=R, boundaries_and_scales="scales")

    def _value(self, count):
        v = self.init_value
        for step, scale in (self.boundaries_and_scales or {}).items():
            if count >= step:
                v = scale * v
        return v


class _Join(Schedule):
    name, spec = "join", dict(schedules="schedules", boundaries="ints")

    def _setup(self):
        if len(self.boundaries) != len(self.schedules) - 1:
            raise HyperparameterError(f"join: boundaries must hold len(schedules) - 1 ints, not {self.boundaries}")

    def _value(self, count):
        out = self.schedules[0]._value(count)
        for boundary, sched in zip(self.boundaries, self.schedules[1:]):
            if count >= boundary:  # a later boundary wins, even when out of order
                out = sched._value(count - boundary)
        return out


class _WarmupCosineDecay(_Join):  # a join of two schedules, as optax builds it
    name = "warmup_cosine_decay"
    spec = dict(init_value=R, peak_value=R, warmup_steps=I, decay_steps=I, end_value=R, exponent=R)

    def _setup(self):
        peak, warm = self.peak_value, self.warmup_steps
        if not self.decay_steps - warm > 0:
            raise HyperparameterError(f"warmup_cosine_decay: decay_steps must be > warmup_steps (it counts "
                                      f"the warmup), got decay_steps={self.decay_steps}, warmup_steps={warm}")
        alpha = 0.0 if peak == 0.0 else self.end_value / peak
        self.schedules = [linear(self.init_value, peak, warm),
                          cosine_decay(peak, self.decay_steps - warm, alpha, self.exponent)]
        self.boundaries = [warm]


class _WarmupExponentialDecay(_Join):
    name = "warmup_exponential_decay"
    spec = dict(init_value=R, peak_value=R, warmup_steps=I, transition_steps=I, decay_rate=R,
                transition_begin=I, staircase=B, end_value=R_OPT)

    def _setup(self):
        self.schedules = [linear(self.init_value, self.peak_value, self.warmup_steps),
                          exponential_decay(self.peak_value, self.transition_steps, self.decay_rate,
                                            self.transition_begin, self.staircase, self.end_value)]
        self.boundaries = [self.warmup_steps]


class _CosineOnecycle(Schedule):
    name = "cosine_onecycle"
    spec = dict(transition_steps=I, peak_value=R, pct_start=R, div_factor=R, final_div_factor=R)

    def _setup(self):
        steps, div, final = self.transition_steps, self.div_factor, self.final_div_factor
        if steps <= 0:
            raise HyperparameterError(f"cosine_onecycle: transition_steps must be > 0, got {steps}")
        if div == 0 or final == 0:
            raise HyperparameterError("cosine_onecycle: div_factor and final_div_factor must be non-zero")
        # optax's piecewise_interpolate_schedule("cosine", ...); on equal steps the last key wins.
        scales = {int(self.pct_start * steps): div, int(steps): 1.0 / (div * final)}
        self._bounds, self._values = [0], [self.peak_value / div]
        for step in sorted(scales):
            self._bounds.append(step)
            self._values.append(self._values[-1] * scales[step])

    def _value(self, count):
        b, v, out = self._bounds, self._values, 0.0
        for i in range(len(b) - 1):
            if b[i] <= count < b[i + 1]:
                pct = (count - b[i]) / max(b[i + 1] - b[i], 1)
                out += v[i + 1] + (v[i] - v[i + 1]) / 2.0 * (math.cos(math.pi * pct) + 1)
        return out + (v[-1] if b[-1] <= count else 0.0)


class _InverseSqrt(Schedule):
    name, spec = "inverse_sqrt", dict(peak_value=R, warmup_steps=I, init_value=R)

    def _setup(self):
        if self.warmup_steps < 1:
            raise HyperparameterError(f"inverse_sqrt: warmup_steps must be >= 1, got {self.warmup_steps}")
        self._warmup = linear(self.init_value, self.peak_value, self.warmup_steps)

    def _value(self, count):
        if count < self.warmup_steps:
            return self._warmup._value(count)
        return self.peak_value * math.sqrt(self.warmup_steps / count)


def constant(value):
    """``value`` at every count (optax.constant_schedule)."""
    return _Constant(**locals())


def linear(init_value, end_value, transition_steps, transition_begin=0):
    """``polynomial`` with ``power=1`` (optax.linear_schedule)."""
    return _Linear(**locals())


def polynomial(init_value, end_value, power, transition_steps, transition_begin=0):
    """``(init - end) * (1 - t / steps) ** power + end``, ``t = clip(count - begin, 0, steps)``."""
    return _Polynomial(**locals())


def cosine_decay(init_value, decay_steps, alpha=0.0, exponent=1.0):
    """``init * ((1 - alpha) * (0.5 * (1 + cos(pi * t / steps))) ** exponent + alpha)``, t <= steps."""
    return _CosineDecay(**locals())


def exponential_decay(init_value, transition_steps, decay_rate, transition_begin=0,
                      staircase=False, end_value=None):
    """``init * rate ** ((count - begin) / steps)``, floored exponent if staircase, bounded by end."""
    return _ExponentialDecay(**locals())


def piecewise_constant(init_value, boundaries_and_scales=None):
    """``init_value`` times each scale whose step is <= count: ``{step: scale}`` or pairs."""
    return _PiecewiseConstant(**locals())


def warmup_cosine_decay(init_value, peak_value, warmup_steps, decay_steps, end_value=0.0, exponent=1.0):
    """``linear`` warmup, then ``cosine_decay`` to ``end_value`` at count ``decay_steps``."""
    return _WarmupCosineDecay(**locals())


def warmup_exponential_decay(init_value, peak_value, warmup_steps, transition_steps, decay_rate,
                             transition_begin=0, staircase=False, end_value=None):
    """``linear`` warmup to ``peak_value``, then ``exponential_decay`` from it."""
    return _WarmupExponentialDecay(**locals())


def cosine_onecycle(transition_steps, peak_value, pct_start=0.3, div_factor=25.0, final_div_factor=1e4):
    """Cosine from ``peak / div`` up to ``peak`` then down to ``peak / (div * final_div)``."""
    return _CosineOnecycle(**locals())


def inverse_sqrt(peak_value, warmup_steps, init_value=0.0):
    """``linear`` warmup over ``warmup_steps`` (>= 1), then ``peak * sqrt(warmup_steps / count)``."""
    return _InverseSqrt(**locals())


def join(schedules, boundaries):
    """``schedules[i]`` gets ``count - boundaries[i-1]`` once ``count >= boundaries[i-1]``."""
    return _Join(**locals())


_FACTORIES = {f.__name__: f for f in (
    constant, linear, polynomial, cosine_decay, exponential_decay, piecewise_constant,
    warmup_cosine_decay, warmup_exponential_decay, cosine_onecycle, inverse_sqrt, join)}
SCHEDULE_NAMES = tuple(_FACTORIES)
__all__ = ["Schedule", "from_config", "SCHEDULE_NAMES", *SCHEDULE_NAMES]


def from_config(config) -> Schedule:
    """Rebuild a schedule from :meth:`Schedule.to_config`'s ``{"schedule": name, "args": {...}}``."""
    if not (isinstance(config, Mapping) and set(config) == {"schedule", "args"}
            and isinstance(config["args"], Mapping)):
        raise HyperparameterError(f"a schedule config is {{'schedule': name, 'args': {{}}}}, not {config!r}")
    name, args = config["schedule"], config["args"]
    factory = _FACTORIES.get(name) if isinstance(name, str) else None
    if factory is None:
        raise HyperparameterError(f"unknown schedule {name!r}; known: {', '.join(SCHEDULE_NAMES)}")
    args = dict(args)
    if name == "join" and isinstance(args.get("schedules"), (list, tuple)):
        args["schedules"] = [from_config(c) if isinstance(c, Mapping) else c for c in args["schedules"]]
    try:
        return factory(**args)
    except TypeError as e:  # a missing or unknown argument (bad values raise HyperparameterError)
        raise HyperparameterError(f"{name}: bad args in config: {e}") from None
