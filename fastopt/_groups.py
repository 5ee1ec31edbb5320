"""Per-key hyperparameter groups: ``groups={pattern: {name: value or schedule}}``.

A pattern is a key or an ``fnmatch`` pattern; each key belongs to the first
group whose pattern matches it (in the order given), and keys that match
none use the optimizer's own values.  A pattern that matches no key of a
layout is an error (a typo must not pass silently).  Each group is an object
whose overridden hyperparameters are validated attributes:
``opt.groups["b*"].weight_decay = 0.0``.
"""

from __future__ import annotations

from collections.abc import Mapping
from fnmatch import fnmatchcase

from .errors import HyperparameterError


class Group:
    """The overrides of one pattern."""

    def __init__(self, owner, pattern: str, overrides: Mapping):
        cls = type(owner)
        if not isinstance(overrides, Mapping):
            raise HyperparameterError(
                f"{cls.__name__}(groups={{{pattern!r}: ...}}): expected a dict of hyperparameters, "
                f"got {type(overrides).__name__}"
            )
        unknown = [n for n in overrides if n not in cls.hyperparameter_names]
        if unknown:
            raise HyperparameterError(
                f"{cls.__name__}(groups={{{pattern!r}: ...}}): unknown hyperparameters {unknown}; "
                f"a group may override {list(cls.hyperparameter_names)}"
            )
        where = f"{cls.__name__}.groups[{pattern!r}]"
        values = {n: getattr(cls, n).validate(v, where) for n, v in overrides.items()}
        object.__setattr__(self, "_owner", owner)
        object.__setattr__(self, "pattern", pattern)
        object.__setattr__(self, "overrides", values)

    def __getattr__(self, name):
        overrides = self.__dict__["overrides"]
        if name in overrides:
            return overrides[name]
        raise AttributeError(f"group {self.pattern!r} overrides {sorted(overrides)}, not {name!r}")

    def __setattr__(self, name, value):
        owner = self._owner
        cls = type(owner)
        if name not in cls.hyperparameter_names:
            raise AttributeError(
                f"group {self.pattern!r}: {name!r} is not a hyperparameter of {cls.__name__} "
                f"({list(cls.hyperparameter_names)})"
            )
        self.overrides[name] = getattr(cls, name).validate(value, f"{cls.__name__}.groups[{self.pattern!r}]")
        owner._hyperparameters_changed()

    def __repr__(self) -> str:
        return f"Group({self.pattern!r}, {self.overrides!r})"


class Groups(Mapping):
    """The groups of an optimizer, by pattern, in matching order."""

    def __init__(self, owner, spec, partial_layout: bool = False):
        #: The layouts are parts of a larger one (a shard of
        #: :mod:`fastopt.distributed`): a pattern may match none of a part's
        #: keys (the whole layout was checked once).
        self.partial_layout = partial_layout
        if spec is None:
            spec = {}
        if not isinstance(spec, Mapping):
            raise HyperparameterError(
                f"{type(owner).__name__}(groups=...): expected a dict {{pattern: {{name: value}}}}, "
                f"got {type(spec).__name__}"
            )
        for pattern in spec:
            if type(pattern) is not str:
                raise HyperparameterError(
                    f"{type(owner).__name__}(groups=...): patterns must be str, got {pattern!r}"
                )
        self._groups = {p: Group(owner, p, o) for p, o in spec.items()}

    def __getitem__(self, pattern) -> Group:
        return self._groups[pattern]

    def __iter__(self):
        return iter(self._groups)

    def __len__(self) -> int:
        return len(self._groups)

    def overrides(self) -> list[dict]:
        """Each group's overrides, in order (group i + 1 of the scalars table)."""
        return [g.overrides for g in self._groups.values()]

    def assign(self, keys, owner_name: str) -> list[int]:
        """The group row of each key: 0 for none, i + 1 for the i-th pattern."""
        patterns = list(self._groups)
        rows, used = [], set()
        for key in keys:
            row = 0
            for i, pattern in enumerate(patterns):
                if key == pattern or fnmatchcase(key, pattern):
                    row = i + 1
                    used.add(pattern)
                    break
            rows.append(row)
        unused = [p for p in patterns if p not in used]
        if unused and not self.partial_layout:
            raise HyperparameterError(
                f"{owner_name}(groups=...): patterns {unused} match none of the keys {list(keys)} "
                "(or only keys an earlier pattern took)"
            )
        return rows

    def spec(self) -> dict:
        return {p: dict(g.overrides) for p, g in self._groups.items()}
