"""Hyperparameters: validated attributes, each a number or a schedule.

A rule declares its hyperparameters once, as :class:`Hyperparameter` class
attributes in constructor order.  The same declaration serves the
Numba-backed class and its NumPy reference: same signature, defaults, checks.

Every value lives in one place, the owner's ``_hyper`` dict (so nothing can
hold a second, stale copy), and is either a Python float or a *schedule*: a
callable ``count -> float`` evaluated once per update (``count`` = updates
applied before this one, optax's convention).  Assignment is checked exactly
like construction; a schedule's values are checked when it is evaluated,
before anything is written.  Kernels receive values cast to their arithmetic
dtype, so changing one never recompiles anything.
"""

from __future__ import annotations

import inspect
import math
import numbers
from types import SimpleNamespace
from typing import Callable

from .errors import HyperparameterError, HyperparameterTypeError


def non_negative(x: float) -> bool:
    return x >= 0.0


def positive(x: float) -> bool:
    return x > 0.0


def unit_interval(x: float) -> bool:
    return 0.0 <= x < 1.0


def open_unit_interval(x: float) -> bool:
    return 0.0 < x < 1.0


def closed_unit_interval(x: float) -> bool:
    return 0.0 <= x <= 1.0


def above_one(x: float) -> bool:
    return x > 1.0


def at_least_one(x: float) -> bool:
    return x >= 1.0


def non_positive(x: float) -> bool:
    return x <= 0.0


_RANGE_TEXT = {
    non_negative: ">= 0",
    positive: "> 0",
    unit_interval: "in [0, 1)",
    open_unit_interval: "in (0, 1)",
    closed_unit_interval: "in [0, 1]",
    above_one: "> 1",
    at_least_one: ">= 1",
    non_positive: "<= 0",
}

#: The values a test may draw for a hyperparameter with this check (finite,
#: inside the range): tests derive their ranges from the checks.
TEST_RANGES = {
    non_negative: (0.0, 2.0),
    positive: (1e-10, 1.0),
    unit_interval: (0.0, 0.999),
    open_unit_interval: (0.01, 0.99),
    closed_unit_interval: (0.0, 1.0),
    above_one: (1.001, 3.0),
    at_least_one: (1.0, 3.0),
    non_positive: (-1.0, -0.3),
}


def range_text(check: Callable[[float], bool]) -> str:
    return _RANGE_TEXT[check]


def is_schedule(value) -> bool:
    return callable(value) and not isinstance(value, (numbers.Real, bool))


class Hyperparameter:
    """A data descriptor holding one real hyperparameter (or a schedule of it)."""

    def __init__(self, default: float | None, check: Callable[[float], bool], doc: str = "", *,
                 nullable: bool = False):
        #: ``nullable``: None is a value too (Adafactor's ``eps1``: "the
        #: params' machine epsilon"); it is never scheduled or range-checked.
        self.nullable = nullable
        self.default = None if default is None and nullable else float(default)
        self.check = check
        self.__doc__ = doc

    def __set_name__(self, owner, name):
        self.name = name

    def __get__(self, obj, owner=None):
        if obj is None:
            return self
        return obj._hyper[self.name]

    def __set__(self, obj, value):
        obj._hyper[self.name] = self.validate(value, obj._owner_name())
        obj._hyperparameters_changed()

    def validate(self, value, owner_name: str):
        """A checked Python float, or the schedule itself (checked per update)."""
        if is_schedule(value):
            return value
        if value is None and self.nullable:
            return None
        return self.checked_value(value, f"{owner_name}.{self.name}")

    def checked_value(self, value, where: str) -> float:
        if isinstance(value, bool) or not isinstance(value, numbers.Real):
            raise HyperparameterTypeError(
                f"{where}: expected a real number{', None' if self.nullable else ''} or a schedule "
                "(a callable count -> float), "
                f"got {type(value).__name__} {value!r}"
            )
        try:
            x = float(value)
        except OverflowError:
            raise HyperparameterError(f"{where}: expected a finite number, got {value!r}") from None
        if not math.isfinite(x) or not self.check(x):
            raise HyperparameterError(
                f"{where}: expected a finite number {_RANGE_TEXT[self.check]}, got {value!r}"
            )
        return x

    def evaluate(self, value, count: int, owner: str) -> float:
        """``value`` at update ``count``: a float as is, a schedule called and checked."""
        if type(value) is float or value is None:
            return value
        try:
            result = value(count)
        except Exception as exc:
            raise HyperparameterError(
                f"{owner}.{self.name}: the schedule {_name_of(value)} raised {type(exc).__name__}: {exc} "
                f"at count {count}"
            ) from exc
        if type(result) is float and math.isfinite(result) and self.check(result):
            return result  # the common case, without building the message below
        return self.checked_value(result, f"{owner}.{self.name} (schedule {_name_of(value)} at count {count})")


def _name_of(schedule) -> str:
    return getattr(schedule, "__qualname__", None) or repr(schedule)


class Hyperparameters:
    """Base of a rule's hyperparameter declaration.

    Subclasses list :class:`Hyperparameter` attributes; the constructor takes
    them positionally or by keyword, in declaration order, with their defaults.
    """

    hyperparameter_names: tuple[str, ...] = ()

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        names = []
        for klass in reversed(cls.__mro__):
            for name, value in vars(klass).items():
                if isinstance(value, Hyperparameter) and name not in names:
                    names.append(name)
        cls.hyperparameter_names = tuple(names)
        cls.__signature__ = cls.hyperparameter_signature = inspect.Signature(
            [
                inspect.Parameter(n, inspect.Parameter.POSITIONAL_OR_KEYWORD, default=getattr(cls, n).default)
                for n in names
            ]
        )

    def __init__(self, *args, **kwargs):
        try:
            bound = self.hyperparameter_signature.bind(*args, **kwargs)
        except TypeError as exc:
            raise TypeError(f"{type(self).__name__}(): {exc}") from None
        bound.apply_defaults()
        # Validate every value before storing any, so a bad one leaves nothing
        # half-set.
        cls = type(self)
        checked = {n: getattr(cls, n).validate(v, cls.__name__) for n, v in bound.arguments.items()}
        object.__setattr__(self, "_hyper", checked)
        object.__setattr__(self, "hyperparameter_version", 0)

    def _owner_name(self) -> str:
        return type(self).__name__

    def _hyperparameters_changed(self) -> None:
        self.hyperparameter_version += 1

    def hyperparameters(self) -> dict:
        """The current hyperparameters, by name (floats or schedules)."""
        return dict(self._hyper)

    def resolved(self, count: int, values: dict | None = None) -> SimpleNamespace:
        """Every hyperparameter as a float at update ``count`` (schedules evaluated)."""
        values = self._hyper if values is None else values
        floats = {}
        for name, value in values.items():
            # Constants as they are: with a schedule this runs on every update.
            floats[name] = value if type(value) is float or value is None else \
                getattr(type(self), name).evaluate(value, count, self._owner_name())
        return SimpleNamespace(**floats)

    def has_schedule(self) -> bool:
        return any(is_schedule(v) for v in self._hyper.values())

    def __repr__(self) -> str:
        args = ", ".join(f"{n}={v!r}" for n, v in self._hyper.items())
        return f"{type(self).__name__}({args})"
