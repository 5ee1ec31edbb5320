"""Hyperparameters: validated plain attributes.

A rule declares its hyperparameters once, as class attributes, in the order of
its constructor.  The same declaration serves the Numba-backed class and its
NumPy reference, so both have the same signature, defaults and checks.
Assignment (``opt.lr = 5e-4``) is checked exactly like construction, and the
value is stored as a Python float: kernels receive it cast to the array dtype,
so changing it never recompiles anything.
"""

from __future__ import annotations

import inspect
import math
import numbers
from types import SimpleNamespace
from typing import Callable

from .errors import HyperparameterError


def non_negative(x: float) -> bool:
    return x >= 0.0


def positive(x: float) -> bool:
    return x > 0.0


def unit_interval(x: float) -> bool:
    return 0.0 <= x < 1.0


_RANGE_TEXT = {
    non_negative: ">= 0",
    positive: "> 0",
    unit_interval: "in [0, 1)",
}


class Hyperparameter:
    """A data descriptor holding one finite real hyperparameter."""

    def __init__(self, default: float, check: Callable[[float], bool], doc: str = ""):
        self.default = float(default)
        self.check = check
        self.__doc__ = doc

    def __set_name__(self, owner, name):
        self.name = name

    def __get__(self, obj, owner=None):
        if obj is None:
            return self
        return obj.__dict__[self.name]

    def __set__(self, obj, value):
        value = self.validate(value, type(obj).__name__)
        obj.__dict__[self.name] = value
        setattr(obj.hp, self.name, value)
        # Tells an optimizer that caches its per-step scalars to recompute them.
        obj.hyperparameter_version += 1

    def validate(self, value, owner_name: str) -> float:
        if isinstance(value, bool) or not isinstance(value, numbers.Real):
            raise TypeError(
                f"{owner_name}.{self.name}: expected a real number, "
                f"got {type(value).__name__} {value!r}"
            )
        x = float(value)
        if not math.isfinite(x) or not self.check(x):
            raise HyperparameterError(
                f"{owner_name}.{self.name}: expected a finite number "
                f"{_RANGE_TEXT[self.check]}, got {value!r}"
            )
        return x


class Hyperparameters:
    """Base of a rule's hyperparameter declaration.

    Subclasses list :class:`Hyperparameter` attributes; the constructor takes
    them positionally or by keyword, in declaration order, with their defaults.
    """

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
                inspect.Parameter(
                    n,
                    inspect.Parameter.POSITIONAL_OR_KEYWORD,
                    default=getattr(cls, n).default,
                )
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
        checked = {
            n: getattr(cls, n).validate(v, cls.__name__)
            for n, v in bound.arguments.items()
        }
        self.__dict__.update(checked)
        #: The same values as plain attributes: reading ``opt.lr`` goes through
        #: the validating descriptor (~100 ns), ``opt.hp.lr`` does not, which
        #: matters in code that runs every step.
        self.hp = SimpleNamespace(**checked)
        self.hyperparameter_version = 0

    def hyperparameters(self) -> dict[str, float]:
        """The current hyperparameters, by name."""
        return {n: getattr(self, n) for n in self.hyperparameter_names}

    def __repr__(self) -> str:
        args = ", ".join(f"{n}={getattr(self, n)!r}" for n in self.hyperparameter_names)
        return f"{type(self).__name__}({args})"
