"""The engine's options and read-only views of an optimizer, as properties.

A mixin of :class:`fastopt.Optimizer`: each option validates on assignment
and tells the optimizer what changed (new scalars, or new kernel bindings).
"""

from __future__ import annotations

import math

import numpy as np

from ._groups import Groups
from ._layout import FLOAT_DTYPES
from ._lowp import STORAGE
from ._state import MAX_STEP
from .errors import HyperparameterError

NONFINITE_CHOICES = ("propagate", "skip", "raise")
STATE_DTYPES = ("float32", "float64", "bfloat16", "int8")


class EngineOptions:
    @property
    def groups(self) -> Groups:
        """The per-key groups, by pattern (see :mod:`fastopt._groups`)."""
        return self._groups

    @property
    def nonfinite(self) -> str:
        """What an update does when a gradient holds nan or inf.

        ``"propagate"`` (the default, as PyTorch and optax do): nothing special.
        ``"skip"``: leave params, state and step count as they are and count
        the step in ``skipped_steps``.  ``"raise"``: raise
        :class:`NonFiniteGradientError` naming the first offending key.
        The check is one pass over the grads, before anything is written.
        """
        return self._nonfinite

    @nonfinite.setter
    def nonfinite(self, value) -> None:
        if value not in NONFINITE_CHOICES:
            raise ValueError(f"nonfinite: expected one of {NONFINITE_CHOICES}, got {value!r}")
        self._nonfinite = NONFINITE_CHOICES[NONFINITE_CHOICES.index(value)]
        if hasattr(self, "_groups"):
            self._refresh_time_dependence()

    @property
    def clip_norm(self):
        """Global L2-norm clipping of the grads (None: off), PyTorch's formula."""
        return self._clip_norm

    @clip_norm.setter
    def clip_norm(self, value) -> None:
        self._clip_norm = _positive_or_none(value, f"{type(self).__name__}.clip_norm")
        self._hyperparameters_changed()

    @property
    def clip_value(self):
        """Clamp every grad element to ``[-clip_value, clip_value]`` first (None: off)."""
        return self._clip_value

    @clip_value.setter
    def clip_value(self, value) -> None:
        self._clip_value = _positive_or_none(value, f"{type(self).__name__}.clip_value")
        self._hyperparameters_changed()

    @property
    def maximize(self) -> bool:
        """Ascend instead of descend (the grads are negated first)."""
        return self._maximize

    @maximize.setter
    def maximize(self, value) -> None:
        if value is not True and value is not False:
            raise HyperparameterError(f"{type(self).__name__}.maximize: expected True or False, got {value!r}")
        self._maximize = value
        self._hyperparameters_changed()

    @property
    def state_dtype(self):
        """The state buffers' dtype (None: the params'), or the low-precision
        format they are stored in: "bfloat16" or "int8"."""
        return self._state_dtype

    @property
    def parallel(self) -> bool | None:
        """Which kernel runs updates of at least ``parallel_min_size`` elements.

        ``None`` (the default): whichever has been faster lately, measured in
        use and shared by the process (:class:`~fastopt._jit.FasterOf`).
        ``True``: always parallel; ``False``: never.  Bitwise the same results.
        """
        return self._runner.parallel

    @parallel.setter
    def parallel(self, value) -> None:
        if value is not None and value is not True and value is not False:
            raise ValueError(f"parallel: expected None, True or False, got {value!r}")
        self._runner.parallel = value
        self._runner.invalidate()

    @property
    def parallel_min_size(self) -> int:
        """Updates of at least this many elements may run the parallel kernel."""
        return self._runner.parallel_min_size

    @parallel_min_size.setter
    def parallel_min_size(self, value) -> None:
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise ValueError(f"parallel_min_size: expected an int >= 0, got {value!r}")
        self._runner.parallel_min_size = value
        self._runner.invalidate()

    @property
    def step_count(self) -> int:
        """Updates applied so far (the ``t`` of the last one)."""
        return self._state.step_count

    @property
    def iter(self) -> int:
        """The book's name for the step count; setting it sets the count."""
        return self._state.step_count

    @iter.setter
    def iter(self, value) -> None:
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or not 0 <= value <= MAX_STEP:
            raise HyperparameterError(f"{type(self).__name__}.iter: expected an int in [0, {MAX_STEP}], got {value!r}")
        self._state.set_step(int(value))

    @property
    def layout(self):
        """The keys, shapes and dtype fixed at the first update (None before;
        always None for stateless rules, which take any layout)."""
        return self._state.layout

    @property
    def kernel(self):
        """The compiled kernel this optimizer runs (its rule's; assignable for tests)."""
        return getattr(self, "_kernel_override", None) or self._math.kernel

    @kernel.setter
    def kernel(self, value) -> None:
        self._kernel_override = value
        self._clear_plans()

    @property
    def state_names(self) -> tuple[str, ...]:
        return self._math.state_names

    @property
    def state(self) -> dict[str, dict[str, np.ndarray]]:
        """``{state name: {key: view shaped like the param}}`` of the flat buffers."""
        return self._state.views()



def _positive_or_none(value, where: str):
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float, np.floating, np.integer)):
        raise HyperparameterError(f"{where}: expected None or a number > 0, got {value!r}")
    try:
        x = float(value)
    except OverflowError:
        x = math.inf
    if not math.isfinite(x) or x <= 0:
        raise HyperparameterError(f"{where}: expected None or a finite number > 0, got {value!r}")
    return x


def checked_state_dtype(value, owner: str):
    """None, a float dtype, or the name of a low-precision format ("bfloat16", "int8")."""
    if value is None:
        return None
    if isinstance(value, str) and value in STORAGE:
        return value
    try:
        dtype = np.dtype(value)
    except TypeError:
        dtype = None
    if dtype is None or dtype not in FLOAT_DTYPES:
        raise HyperparameterError(f"{owner}(state_dtype=...): expected None or one of {STATE_DTYPES}, got {value!r}")
    return dtype


