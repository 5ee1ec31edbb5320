"""Optimizer state as a dict and as a ``.npz`` file.

``state_dict`` holds the rule, the format version, the step count, the
hyperparameters (numbers; built-in schedules as their config; a user's own
callable by name only), the structure options (``amsgrad``, ...), the
groups, the state dtype, the layout and a copy of every state buffer, keyed
by parameter name.  ``load_state_dict`` validates all of it and builds the
new state before it installs anything.

The file (see :mod:`fastopt._npzfile` for the file level) holds one member
per state name (the flat buffer) and a JSON header with everything else and
a SHA-256 checksum over the header and the payload.  ``save`` hashes and
writes one snapshot, taken under the optimizer's state lock, so saving from
another thread while training writes a consistent file.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Mapping

import numpy as np

from . import _npzfile, schedules
from ._hyper import is_schedule
from ._layout import FLOAT_DTYPES, Layout
from ._groups import Groups
from ._lowp import FORMAT_OF, STORAGE, reference_bf16_values, reference_dequantize
from ._state import ABSMAX, MAX_STEP, Snapshot, stored_names
from .errors import HyperparameterError, StateFileError

FORMAT = "fastopt.state"
VERSION = 2
_PAYLOAD_PREFIX = "state."


class MissingSchedule:
    """Stands for a user's own schedule after loading: it must be set again."""

    def __init__(self, owner: str, name: str, saved_as: str):
        self.where, self.saved_as = f"{owner}.{name}", saved_as

    def __call__(self, count):
        raise HyperparameterError(
            f"{self.where} was the user schedule {self.saved_as!r} when the state was saved; a user's "
            f"callable is saved by name only: assign it again after loading ({self.where} = ...)"
        )

    def __repr__(self):
        return f"<schedule {self.saved_as!r}, to be set again after loading>"


def _encode(value):
    if type(value) is float or value is None:
        return value
    if isinstance(value, schedules.Schedule):
        return {"schedule": value.to_config()}
    if isinstance(value, MissingSchedule):
        return {"callable": value.saved_as}
    return {"callable": getattr(value, "__qualname__", None) or repr(value)}


def _decode(value, current, owner: str, name: str, where: str):
    if not isinstance(value, Mapping):
        return value
    if "schedule" in value:
        try:
            return schedules.from_config(value["schedule"])
        except HyperparameterError as exc:
            raise _fail(f"hyperparameter {name!r}: {exc}", where) from None
    saved_as = value.get("callable")
    if not isinstance(saved_as, str):
        raise _fail(f"hyperparameter {name!r}: corrupt value {value!r}", where)
    if is_schedule(current) and getattr(current, "__qualname__", None) == saved_as:
        return current
    return MissingSchedule(owner, name, saved_as)


def _format_name(stored: np.dtype | None) -> str | None:
    """How a state dict names the stored dtype: "bfloat16" and "int8" for bits and codes."""
    return None if stored is None else FORMAT_OF.get(np.dtype(stored), np.dtype(stored).name)


def state_dict(opt, dequantize: bool = False) -> dict:
    snapshot = opt.optimizer_state.snapshot()
    if dequantize:
        snapshot = _dequantized(opt, snapshot)
    hyper = {n: _encode(v) for n, v in opt.hyperparameters().items()}
    groups = {p: {n: _encode(v) for n, v in g.overrides.items()} for p, g in opt.groups.items()}
    layout = snapshot.layout
    state_layouts = None if layout is None else opt.optimizer_state.layouts_for(layout, snapshot.state_dtype)
    return {
        "format": FORMAT,
        "version": VERSION,
        "rule": type(opt).__name__,
        "step": snapshot.step,
        "hyperparameters": hyper,
        "structure": dict(opt.structure_options()),
        "groups": groups,
        "dtype": None if layout is None else layout.dtype.name,
        "state_dtype": _format_name(snapshot.state_dtype),
        "keys": [] if layout is None else list(layout.keys),
        "shapes": {} if layout is None else dict(zip(layout.keys, layout.shapes)),
        "state": {n: ({} if layout is None else state_layouts[n].views(b)) for n, b in snapshot.buffers.items()},
    }


def _dequantized(opt, snapshot: Snapshot) -> Snapshot:
    """The snapshot with bfloat16 or int8 state decoded to float32."""
    stored = snapshot.state_dtype
    if stored is None or np.dtype(stored) not in FORMAT_OF:
        return snapshot
    state = opt.optimizer_state
    layouts = state.layouts_for(snapshot.layout, stored)
    buffers = {}
    for name in state.state_names:
        if FORMAT_OF[np.dtype(stored)] == "bfloat16":
            buffers[name] = reference_bf16_values(snapshot.buffers[name])
        else:
            codes = layouts[name].slices(snapshot.buffers[name])
            absmax = layouts[name + ABSMAX].slices(snapshot.buffers[name + ABSMAX])
            unsigned = name in state.int8_unsigned
            buffers[name] = np.concatenate([np.zeros(0, np.float32)] + [
                reference_dequantize(c, a, unsigned) for c, a in zip(codes, absmax)])
    return Snapshot(snapshot.layout, snapshot.step, np.dtype(np.float32), buffers)


def _fail(message: str, where: str) -> StateFileError:
    return StateFileError(f"{where}: {message}")


def load_state_dict(opt, state: Mapping, where: str = "load_state_dict") -> None:
    hyper, groups, snapshot = _validated(opt, state, where)
    opt.restore(hyper, groups, snapshot)


def _validated_values(opt, values, where, what):
    cls, owner = type(opt), type(opt).__name__
    out = {}
    for name, value in values.items():
        if name not in cls.hyperparameter_names:
            raise _fail(f"{what}: unknown hyperparameter {name!r}", where)
        current = opt.hyperparameters()[name]
        value = _decode(value, current, owner, name, where)
        try:
            out[name] = getattr(cls, name).validate(value, owner)
        except (TypeError, HyperparameterError) as exc:
            raise _fail(str(exc), where) from None
    return out


def _validated(opt, state, where):
    """Check a state dict against ``opt``; return what ``restore`` installs."""
    if not isinstance(state, Mapping):
        raise _fail(f"expected a dict from state_dict(), got {type(state).__name__}", where)
    if state.get("format") != FORMAT:
        raise _fail(f"not a fastopt state (format {state.get('format')!r})", where)
    if state.get("version") != VERSION:
        raise _fail(f"format version {state.get('version')!r} is not supported (this fastopt reads {VERSION})", where)
    rule = type(opt).__name__
    if state.get("rule") != rule:
        raise _fail(f"the state is for {state.get('rule')!r}, not {rule!r}", where)
    step = state.get("step")
    if type(step) is not int or not 0 <= step <= MAX_STEP:
        raise _fail(f"step must be an int in [0, {MAX_STEP}], got {step!r}", where)
    if state.get("structure") != dict(opt.structure_options()):
        raise _fail(f"the state was saved with {state.get('structure')!r}, this optimizer has "
                    f"{dict(opt.structure_options())!r}", where)

    hyper_in = state.get("hyperparameters")
    if not isinstance(hyper_in, Mapping) or set(hyper_in) != set(opt.hyperparameter_names):
        raise _fail(
            f"hyperparameters must name exactly {list(opt.hyperparameter_names)}, "
            f"got {None if not isinstance(hyper_in, Mapping) else sorted(hyper_in)}",
            where,
        )
    hyper = _validated_values(opt, hyper_in, where, "hyperparameters")
    groups_in = state.get("groups")
    if not isinstance(groups_in, Mapping) or not all(
        type(p) is str and isinstance(o, Mapping) for p, o in groups_in.items()
    ):
        raise _fail("groups must be a dict {pattern: {hyperparameter: value}}", where)
    groups = {p: _validated_values(opt, o, where, f"groups[{p!r}]") for p, o in groups_in.items()}

    keys = state.get("keys")
    shapes = state.get("shapes")
    if not isinstance(keys, (list, tuple)) or not all(type(k) is str for k in keys):
        raise _fail("keys must be a list of str", where)
    if len(set(keys)) != len(keys):
        raise _fail("keys must be unique", where)
    if not isinstance(shapes, Mapping) or set(shapes) != set(keys):
        raise _fail("shapes must give one shape per key", where)
    shape_list = [_npzfile.checked_shape(shapes[k], where, f"shapes[{k!r}]") for k in keys]

    names = opt.state_names
    if not keys:
        if state.get("dtype") is not None or step and names:
            raise _fail("a state with no keys must have dtype None (and step 0 for a rule with state)", where)
        if opt.layout is not None:
            raise _fail(f"the state is empty but this optimizer holds keys {list(opt.layout.keys)}", where)
        return hyper, groups, Snapshot(None, step, None, {})
    dtype = _float_dtype(state.get("dtype"), "dtype", where)
    saved_as = state.get("state_dtype")
    if isinstance(saved_as, str) and saved_as in STORAGE:
        state_dtype = STORAGE[saved_as]
    else:
        state_dtype = _float_dtype(saved_as, "state_dtype", where)
    expected_state_dtype = opt.state_dtype_for(dtype)
    if state_dtype != expected_state_dtype:
        hint = ("; state_dict(dequantize=True) of the saving optimizer gives float32 state, which this one loads"
                if saved_as in STORAGE and expected_state_dtype == np.float32 else "")
        raise _fail(f"the state is stored as {saved_as}, this optimizer keeps {_format_name(expected_state_dtype)} "
                    f"state (state_dtype must match{hint})", where)
    layout = Layout.from_shapes(keys, shape_list, dtype)
    _check_against_current(opt.layout, layout, where)

    buffers = state.get("state")
    names = stored_names(names, state_dtype)
    if not isinstance(buffers, Mapping) or set(buffers) != set(names):
        raise _fail(
            f"state must hold exactly {list(names)}, "
            f"got {None if not isinstance(buffers, Mapping) else sorted(buffers)}",
            where,
        )
    flat = {}
    state_layouts = opt.optimizer_state.layouts_for(layout, state_dtype)
    for name in names:
        per_key = buffers[name]
        if not isinstance(per_key, Mapping) or set(per_key) != set(keys):
            raise _fail(f"state {name!r} must have one array per key {list(keys)}", where)
        state_layout = state_layouts[name]
        buffer_dtype = np.dtype(np.float32) if name.endswith(ABSMAX) else state_dtype
        buffer = np.empty(state_layout.total, buffer_dtype)
        for key, shape, piece in zip(keys, state_layout.shapes, state_layout.slices(buffer)):
            a = per_key[key]
            if not isinstance(a, np.ndarray) or a.dtype != buffer_dtype or a.shape != shape:
                got = f"{a.dtype} array of shape {a.shape}" if isinstance(a, np.ndarray) else type(a).__name__
                raise _fail(f"state {name!r}[{key!r}]: expected a {buffer_dtype} array of shape {shape}, got {got}",
                            where)
            piece[...] = a.ravel()
        flat[name] = buffer
    return hyper, groups, Snapshot(layout, step, state_dtype, flat)


def _float_dtype(name, what, where) -> np.dtype:
    try:
        dtype = np.dtype(name)
    except TypeError:
        raise _fail(f"{what} {name!r} is not a NumPy dtype", where) from None
    if name is None or dtype not in FLOAT_DTYPES:
        raise _fail(f"{what} must be float32 or float64, got {name!r}", where)
    return dtype


def _check_against_current(current: Layout | None, loaded: Layout, where: str) -> None:
    if current is None:
        return
    if set(current.keys) != set(loaded.keys):
        raise _fail(f"keys {sorted(loaded.keys)} differ from this optimizer's {sorted(current.keys)}", where)
    if current.dtype != loaded.dtype:
        raise _fail(f"dtype {loaded.dtype} differs from this optimizer's {current.dtype}", where)
    for key in loaded.keys:
        if loaded.shape_of(key) != current.shape_of(key):
            raise _fail(f"{key!r} has shape {loaded.shape_of(key)}, this optimizer's is {current.shape_of(key)}",
                        where)


# -- files --------------------------------------------------------------------


def _digest(header: dict, payload: Mapping[str, np.ndarray]) -> str:
    h = hashlib.sha256(json.dumps(header, sort_keys=True).encode())
    for name in sorted(payload):
        h.update(name.encode())
        h.update(np.ascontiguousarray(payload[name]).tobytes())
    return h.hexdigest()


def save(opt, path) -> None:
    where = f"save({path!r})"
    state = state_dict(opt)  # copies, taken together under the state lock
    header = {k: v for k, v in state.items() if k not in ("state", "shapes")}
    header["shapes"] = {k: list(s) for k, s in state["shapes"].items()}
    header["state_names"] = list(opt.state_names)
    payload = {}
    if state["keys"]:
        layout = Layout.from_shapes(state["keys"], [state["shapes"][k] for k in state["keys"]], state["dtype"])
        payload = {
            _PAYLOAD_PREFIX + n: np.concatenate([views[k].ravel() for k in layout.keys])
            for n, views in state["state"].items()
        }
    header["sha256"] = _digest(header, payload)
    members = {_npzfile.HEADER: np.frombuffer(json.dumps(header).encode(), dtype=np.uint8), **payload}
    _npzfile.write_atomic(path, members, where)


def load(opt, path) -> None:
    where = f"load({os.fsdecode(path) if isinstance(path, (str, bytes, os.PathLike)) else path!r})"

    def expected_sizes(header):
        keys = header.get("keys") or []
        shapes = header.get("shapes") or {}
        if not keys:
            return {}
        layout = Layout.from_shapes(keys, [_npzfile.checked_shape(shapes.get(k), where, f"shapes[{k!r}]")
                                           for k in keys], np.float64)
        saved_as = header.get("state_dtype")
        stored = STORAGE.get(saved_as, np.float64) if isinstance(saved_as, str) else np.float64
        layouts = opt.optimizer_state.layouts_for(layout, stored)
        return {_PAYLOAD_PREFIX + n: layouts[n].total for n in stored_names(opt.state_names, stored)}

    header, payload = _npzfile.read_checked(path, where, expected_sizes=expected_sizes)
    checksum = header.pop("sha256", None)
    if checksum != _digest(header, payload):
        raise _fail("checksum mismatch: the file is corrupt", where)
    names = header.get("state_names")
    if names != list(opt.state_names):
        raise _fail(f"state names {names} do not match {list(opt.state_names)}", where)
    state = dict(header)
    state["state"] = {}
    if header.get("keys"):
        try:
            saved_as = header["state_dtype"]
            stored = STORAGE[saved_as] if saved_as in STORAGE else np.dtype(saved_as)
            layout = Layout.from_shapes(header["keys"], [header["shapes"][k] for k in header["keys"]], stored)
            layouts = opt.optimizer_state.layouts_for(layout, stored)
        except (KeyError, TypeError, ValueError) as exc:
            raise _fail(f"corrupt header ({exc})", where) from None
        for name in stored_names(opt.state_names, stored):
            state["state"][name] = layouts[name].views(payload[_PAYLOAD_PREFIX + name])
    state.pop("state_names", None)
    load_state_dict(opt, state, where)


class StateIO:
    """A mixin of :class:`fastopt.Optimizer`: state dicts, files and pickling."""

    # -- state I/O ---------------------------------------------------------------------

    def state_dict(self, dequantize: bool = False) -> dict:
        """A self-contained copy of the state, keyed by parameter name: as
        stored (bfloat16 bits, int8 codes with their ``"<name>.absmax"``), or
        with ``dequantize=True`` decoded to float32 (``state_dtype`` then
        "float32", which an optimizer with ``state_dtype="float32"`` loads)."""
        return state_dict(self, dequantize)

    def load_state_dict(self, state) -> None:
        """Restore what :meth:`state_dict` returned, after validating all of it."""
        load_state_dict(self, state)

    def save(self, path) -> None:
        """Write one consistent snapshot atomically to a ``.npz`` file at ``path``."""
        save(self, path)

    def load(self, path) -> None:
        """Read a file written by :meth:`save` (checked) and restore it."""
        load(self, path)

    @property
    def optimizer_state(self):
        """The state object (layout, buffers, step) that checkpoints read and restore."""
        return self._state

    def restore(self, hyperparameters: dict, groups: dict, snapshot) -> None:
        """Install validated hyperparameters, groups and state (checkpoint code only)."""
        self._hyper.update(hyperparameters)
        self._groups = Groups(self, groups, self._groups.partial_layout)
        self._state.restore(snapshot)
        self._clear_plans()
        self._hyperparameters_changed()

    # -- pickling -------------------------------------------------------------------

    def __getstate__(self):
        return dict(
            hyper=dict(self._hyper), structure=dict(self._structure), groups=self._groups.spec(),
            options=dict(nonfinite=self._nonfinite, clip_norm=self._clip_norm, clip_value=self._clip_value,
                          maximize=self._maximize, state_dtype=self._state_dtype),
            snapshot=self._state.snapshot(), skipped_steps=self.skipped_steps,
            last_grad_norm=self.last_grad_norm, parallel=self.parallel, parallel_min_size=self.parallel_min_size,
        )

    def __setstate__(self, saved):
        type(self).__init__(self, **saved["hyper"], **saved["structure"], **saved["options"], groups=saved["groups"])
        self._state.restore(saved["snapshot"])
        self.skipped_steps = saved["skipped_steps"]
        self.last_grad_norm = saved["last_grad_norm"]
        self.parallel = saved["parallel"]
        self.parallel_min_size = saved["parallel_min_size"]


