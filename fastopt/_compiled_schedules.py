"""Built-in schedules evaluated in compiled code, with Python's bits.

Between hyperparameter changes an update evaluates each of its schedules
(:meth:`fastopt._run.Scalars.refill`).  In Python a warmup-cosine costs a few
microseconds, more than a 1e3-element update; so each built-in schedule
also has a *program*: a few float64 words (:func:`program_of`) that
:func:`fill_schedules` evaluates with the same operations in the same order
as the schedule's ``_value`` (ints as int64, ``int / int`` as the division of
their doubles, ``math.pow``/``cos``/``sqrt`` from the same C library, and
Python's ``min``/``max`` choice of operand), then checks against the
hyperparameter's range.  A value that is not finite or not in range is not
written: the caller evaluates that schedule in Python, which raises the
usual error.  A schedule without a program (a user's callable, arguments
beyond 2**53) is evaluated in Python.

Programs: ``[kind, arguments...]``; a join is ``[JOIN, n, boundaries...,
offsets of its n children's programs...]`` followed by the children (joins
too).
"""

from __future__ import annotations

import math

from ._hyper import (above_one, at_least_one, closed_unit_interval, non_negative, non_positive, open_unit_interval,
                     positive, unit_interval)
from ._jit import helper

CONSTANT, POLYNOMIAL, COSINE, EXPONENTIAL, PIECEWISE, JOIN, ONECYCLE, INVERSE_SQRT = range(8)
#: The range checks of :mod:`fastopt._hyper`, by code.
CHECKS = (non_negative, positive, unit_interval, open_unit_interval, closed_unit_interval, above_one, at_least_one,
          non_positive)
_EXACT_INT = 2**53


def program_of(schedule) -> list[float] | None:
    """The program of a built-in schedule, or None (evaluate it in Python)."""
    from . import schedules as s

    kind = type(schedule)
    words = None
    if kind is s._Constant:
        words = [CONSTANT, schedule.value]
    elif kind in (s._Polynomial, s._Linear):
        words = [POLYNOMIAL, schedule.init_value, schedule.end_value, schedule.power, schedule.transition_steps,
                 schedule.transition_begin]
    elif kind is s._CosineDecay:
        words = [COSINE, schedule.init_value, schedule.decay_steps, schedule.alpha, schedule.exponent]
    elif kind is s._ExponentialDecay:
        end = schedule.end_value
        words = [EXPONENTIAL, schedule.init_value, schedule.transition_steps, schedule.decay_rate,
                 schedule.transition_begin, float(schedule.staircase), float(end is not None),
                 0.0 if end is None else end]
    elif kind is s._PiecewiseConstant:
        pairs = list((schedule.boundaries_and_scales or {}).items())
        words = [PIECEWISE, schedule.init_value, len(pairs), *(x for pair in pairs for x in pair)]
    elif kind is s._CosineOnecycle:
        words = [ONECYCLE, len(schedule._bounds), *schedule._bounds, *schedule._values]
    elif kind is s._InverseSqrt:
        warmup = program_of(schedule._warmup)
        words = [INVERSE_SQRT, schedule.peak_value, schedule.warmup_steps, *warmup]
    elif isinstance(schedule, s._Join):
        leaves = [program_of(x) for x in schedule.schedules]
        if any(leaf is None for leaf in leaves):
            return None
        n = len(leaves)
        offsets, at = [], 2 + (n - 1) + n
        for leaf in leaves:
            offsets.append(at)
            at += len(leaf)
        words = [JOIN, n, *schedule.boundaries, *offsets, *(w for leaf in leaves for w in leaf)]
    if words is None or not all(map(_exact, words)):
        return None
    return [float(w) for w in words]


def _exact(word) -> bool:
    """Whether a word survives the trip through float64 (ints below 2**53)."""
    if isinstance(word, float):
        return math.isfinite(word)
    return isinstance(word, int) and abs(word) < _EXACT_INT


@helper
def _pow(x, y):
    # fastopt.schedules._pow: C's pow, but +inf for 0 ** -y whatever the zero's sign.
    if x == 0.0 and y < 0.0:
        return math.inf
    return math.pow(x, y)


@helper
def _python_min(a, b):
    return b if b < a else a


@helper
def _python_max(a, b):
    return b if b > a else a


@helper
def _leaf(words, at, count):
    kind = int(words[at])
    if kind == INVERSE_SQRT:
        warmup_steps = int(words[at + 2])
        if count >= warmup_steps:
            return words[at + 1] * math.sqrt(warmup_steps / count)
        at += 3  # the linear warmup's program follows
        kind = int(words[at])
    if kind == CONSTANT:
        return words[at + 1]
    if kind == POLYNOMIAL:
        init, end, power = words[at + 1], words[at + 2], words[at + 3]
        steps, begin = int(words[at + 4]), int(words[at + 5])
        if steps <= 0:
            return init
        done = min(max(count - max(begin, 0), 0), steps)
        frac = 1 - done / steps
        return (init - end) * _pow(frac, power) + end
    if kind == COSINE:
        init, alpha, exponent = words[at + 1], words[at + 3], words[at + 4]
        steps = float(int(words[at + 2]))
        decay = 0.5 * (1 + math.cos(math.pi * _python_min(float(count), steps) / steps))
        return init * ((1 - alpha) * _pow(decay, exponent) + alpha)
    if kind == EXPONENTIAL:
        init, steps, rate, begin = words[at + 1], int(words[at + 2]), words[at + 3], int(words[at + 4])
        if steps <= 0 or rate == 0:
            return init
        decreased = count - max(begin, 0)
        p = decreased / steps
        if words[at + 5] != 0.0:
            p = float(math.floor(p))
        v = init if decreased <= 0 else init * _pow(rate, p)
        if words[at + 6] != 0.0 and v == v:
            end = words[at + 7]
            v = _python_max(v, end) if rate < 1.0 else _python_min(v, end)
        return v
    if kind == PIECEWISE:
        v = words[at + 1]
        for j in range(int(words[at + 2])):
            if count >= int(words[at + 3 + 2 * j]):
                v = words[at + 4 + 2 * j] * v
        return v
    # ONECYCLE: optax's cosine pieces between bounds
    n = int(words[at + 1])
    bounds, values = at + 2, at + 2 + n
    out = 0.0
    for i in range(n - 1):
        lo, hi = int(words[bounds + i]), int(words[bounds + i + 1])
        if lo <= count < hi:
            pct = (count - lo) / max(hi - lo, 1)
            v_i, v_next = words[values + i], words[values + i + 1]
            out += v_next + (v_i - v_next) / 2.0 * (math.cos(math.pi * pct) + 1)
    return out + (words[values + n - 1] if int(words[bounds + n - 1]) <= count else 0.0)


@helper
def _value(words, at, count):
    # A join's value is its last child whose boundary count has reached (the
    # first child otherwise) at the count less that boundary: descend.
    while int(words[at]) == JOIN:
        n = int(words[at + 1])
        child = 0
        boundary = 0
        for j in range(n - 1):
            if count >= int(words[at + 2 + j]):  # a later boundary wins, even when out of order
                child, boundary = j + 1, int(words[at + 2 + j])
        count -= boundary
        at += int(words[at + 2 + (n - 1) + child])
    return _leaf(words, at, count)


@helper
def _in_range(check, x):
    if not math.isfinite(x):
        return False
    if check == 0:
        return x >= 0.0
    if check == 1:
        return x > 0.0
    if check == 2:
        return 0.0 <= x < 1.0
    if check == 3:
        return 0.0 < x < 1.0
    if check == 4:
        return 0.0 <= x <= 1.0
    if check == 5:
        return x > 1.0
    if check == 6:
        return x >= 1.0
    return x <= 0.0


def fill_schedules(words, slots, targets, count, hyper, table, values):
    """Each slot's schedule at update ``count``, checked, written to its
    targets; returns -1, or the first slot whose value is not finite or not
    in range (then nothing was written).

    ``slots[k]`` = (program offset, check code, first target, targets in
    ``hyper``, targets in ``table`` after them); ``targets`` holds flat
    indices into ``hyper`` (float64) and then ``table`` (the scalars);
    ``values``: scratch of one float64 per slot (the caller's: an
    allocation here would cost as much as the evaluation)."""
    for k in range(slots.shape[0]):
        v = _value(words, slots[k, 0], count)
        if not _in_range(slots[k, 1], v):
            return k
        values[k] = v
    for k in range(slots.shape[0]):
        first, n_hyper, n_table = slots[k, 2], slots[k, 3], slots[k, 4]
        for j in range(first, first + n_hyper):
            hyper[targets[j]] = values[k]
        for j in range(first + n_hyper, first + n_hyper + n_table):
            table[targets[j]] = values[k]
    return -1


fill_schedules_compiled = helper(fill_schedules)
