"""Typed errors for bad input.

Every check that can reject an ``update`` runs before anything is written, so
when one of these is raised the params, the grads and the optimizer state are
exactly as they were.  Each class also derives from the built-in exception a
caller would naturally catch (``KeyError``, ``ValueError``, ``TypeError``).
"""

from __future__ import annotations


class FastoptInputError(Exception):
    """Base class of every input error fastopt raises."""

    def __str__(self) -> str:
        # KeyError.__str__ would show the message as a quoted repr.
        return str(self.args[0]) if self.args else ""


class KeyMismatchError(FastoptInputError, KeyError):
    """params and grads (or a saved state) do not have the same keys."""


class EmptyParamsError(FastoptInputError, ValueError):
    """The params dict of an update (or of ``init``) is empty."""


class ShapeMismatchError(FastoptInputError, ValueError):
    """An array does not have the shape the layout expects."""


class DTypeMismatchError(FastoptInputError, TypeError):
    """An array or scalar has a dtype fastopt cannot or may not use here."""


class LayoutError(FastoptInputError, ValueError):
    """A param array cannot be updated in place (not C-contiguous, read-only)."""


class AliasingError(FastoptInputError, ValueError):
    """Two entries share memory: one array under two keys, or a grad inside a param."""


class HyperparameterError(FastoptInputError, ValueError):
    """A hyperparameter is out of range, not finite, or not a real number."""


class HyperparameterTypeError(HyperparameterError, TypeError):
    """A hyperparameter (or a schedule's value) is not a real number."""


class StateFileError(FastoptInputError, ValueError):
    """A saved state is corrupt, truncated, of another format version, or does
    not match this optimizer (rule, keys, shapes, dtype)."""


class KeyTypeError(FastoptInputError, TypeError):
    """A params or grads key is not a str (state is saved by parameter name)."""


class NonFiniteGradientError(FastoptInputError, FloatingPointError):
    """A gradient holds nan or inf and the optimizer was told to raise."""
