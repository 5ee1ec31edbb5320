"""Optimizer state as a dict and as a ``.npz`` file.

The file holds one array per state name (the flat buffer) and a JSON header
with the format name and version, the rule, the step count, the
hyperparameters, the layout (keys, shapes, dtype) and a SHA-256 checksum over
the header and the payload bytes.  ``save`` writes a temporary file in the
target folder, flushes and fsyncs it, then renames it over the target, so the
previous checkpoint survives a crash at any moment.  ``load`` checks
everything before it changes anything.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import zipfile
from collections.abc import Mapping

import numpy as np

from ._layout import FLOAT_DTYPES, Layout
from .errors import HyperparameterError, StateFileError

FORMAT = "fastopt.state"
VERSION = 1
_HEADER = "header"
_PAYLOAD_PREFIX = "state."


def state_dict(opt) -> dict:
    layout = opt.layout
    return {
        "format": FORMAT,
        "version": VERSION,
        "rule": type(opt).__name__,
        "step": opt.step_count,
        "hyperparameters": opt.hyperparameters(),
        "dtype": None if layout is None else layout.dtype.name,
        "keys": [] if layout is None else list(layout.keys),
        "shapes": {} if layout is None else dict(zip(layout.keys, layout.shapes)),
        "state": {n: {k: v.copy() for k, v in views.items()} for n, views in opt.state.items()},
    }


def _fail(message: str, where: str) -> StateFileError:
    return StateFileError(f"{where}: {message}")


def load_state_dict(opt, state: Mapping, where: str = "load_state_dict") -> None:
    layout, step, hyper, flat = _validated(opt, state, where)
    opt._restore(layout, step, hyper, flat)


def _validated(opt, state, where):
    """Check a state dict against ``opt``; return what ``_restore`` installs."""
    if not isinstance(state, Mapping):
        raise _fail(f"expected a dict from state_dict(), got {type(state).__name__}", where)
    if state.get("format") != FORMAT:
        raise _fail(f"not a fastopt state (format {state.get('format')!r})", where)
    if state.get("version") != VERSION:
        raise _fail(
            f"format version {state.get('version')!r} is not supported (this fastopt reads {VERSION})",
            where,
        )
    rule = type(opt).__name__
    if state.get("rule") != rule:
        raise _fail(f"the state is for {state.get('rule')!r}, not {rule!r}", where)
    step = state.get("step")
    if type(step) is not int or step < 0:
        raise _fail(f"step must be an int >= 0, got {step!r}", where)

    hyper_in = state.get("hyperparameters")
    if not isinstance(hyper_in, Mapping) or set(hyper_in) != set(opt.hyperparameter_names):
        raise _fail(
            f"hyperparameters must name exactly {list(opt.hyperparameter_names)}, "
            f"got {None if not isinstance(hyper_in, Mapping) else sorted(hyper_in)}",
            where,
        )
    hyper = {}
    for name in opt.hyperparameter_names:
        try:
            hyper[name] = getattr(type(opt), name).validate(hyper_in[name], rule)
        except (TypeError, HyperparameterError) as exc:
            raise _fail(str(exc), where) from None

    keys = state.get("keys")
    shapes = state.get("shapes")
    if not isinstance(keys, (list, tuple)) or not all(type(k) is str for k in keys):
        raise _fail("keys must be a list of str", where)
    if len(set(keys)) != len(keys):
        raise _fail("keys must be unique", where)
    if not isinstance(shapes, Mapping) or set(shapes) != set(keys):
        raise _fail("shapes must give one shape per key", where)
    try:
        shape_list = [tuple(int(d) for d in shapes[k]) for k in keys]
    except (TypeError, ValueError):
        raise _fail("every shape must be a sequence of ints", where) from None
    if any(d < 0 for s in shape_list for d in s):
        raise _fail("shapes must not have negative sizes", where)

    dtype_name = state.get("dtype")
    if not keys:
        if dtype_name is not None or step:
            raise _fail("a state with no keys must have dtype None and step 0", where)
        if opt.layout is not None:
            raise _fail(f"the state is empty but this optimizer holds keys {list(opt.layout.keys)}", where)
        return None, 0, hyper, {}
    try:
        dtype = np.dtype(dtype_name)
    except TypeError:
        raise _fail(f"dtype {dtype_name!r} is not a NumPy dtype", where) from None
    if dtype not in FLOAT_DTYPES:
        raise _fail(f"dtype must be float32 or float64, got {dtype}", where)
    layout = Layout.from_shapes(keys, shape_list, dtype)
    _check_against_current(opt.layout, layout, where)

    buffers = state.get("state")
    if not isinstance(buffers, Mapping) or set(buffers) != set(opt.state_names):
        raise _fail(
            f"state must hold exactly {list(opt.state_names)}, "
            f"got {None if not isinstance(buffers, Mapping) else sorted(buffers)}",
            where,
        )
    flat = {}
    for name in opt.state_names:
        per_key = buffers[name]
        if not isinstance(per_key, Mapping) or set(per_key) != set(keys):
            raise _fail(f"state {name!r} must have one array per key {keys}", where)
        buffer = np.empty(layout.total, dtype)
        for key, shape, piece in zip(keys, layout.shapes, layout.slices(buffer)):
            a = per_key[key]
            if not isinstance(a, np.ndarray) or a.dtype != dtype or a.shape != shape:
                got = (
                    f"{a.dtype} array of shape {a.shape}"
                    if isinstance(a, np.ndarray)
                    else type(a).__name__
                )
                raise _fail(
                    f"state {name!r}[{key!r}]: expected a {dtype} array of shape {shape}, got {got}",
                    where,
                )
            piece[...] = a.ravel()
        flat[name] = buffer
    return layout, step, hyper, flat


def _check_against_current(current: Layout | None, loaded: Layout, where: str) -> None:
    if current is None:
        return
    if set(current.keys) != set(loaded.keys):
        raise _fail(
            f"keys {sorted(loaded.keys)} differ from this optimizer's {sorted(current.keys)}", where
        )
    if current.dtype != loaded.dtype:
        raise _fail(f"dtype {loaded.dtype} differs from this optimizer's {current.dtype}", where)
    for key in loaded.keys:
        if loaded.shape_of(key) != current.shape_of(key):
            raise _fail(
                f"{key!r} has shape {loaded.shape_of(key)}, this optimizer's is {current.shape_of(key)}",
                where,
            )


# -- files --------------------------------------------------------------------


def _digest(header: dict, payload: dict[str, np.ndarray]) -> str:
    h = hashlib.sha256(json.dumps(header, sort_keys=True).encode())
    for name in sorted(payload):
        h.update(name.encode())
        h.update(np.ascontiguousarray(payload[name]).tobytes())
    return h.hexdigest()


def save(opt, path) -> None:
    path = os.fspath(path)
    state = state_dict(opt)
    header = {k: v for k, v in state.items() if k not in ("state", "shapes")}
    header["shapes"] = {k: list(s) for k, s in state["shapes"].items()}
    header["state_names"] = list(opt.state_names)
    payload = {}
    if opt.layout is not None:
        payload = {_PAYLOAD_PREFIX + n: b for n, b in opt._state_flat.items()}
    header["sha256"] = _digest(header, payload)
    arrays = {_HEADER: np.frombuffer(json.dumps(header).encode(), dtype=np.uint8), **payload}

    folder = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=".fastopt-", suffix=".tmp", dir=folder)
    try:
        with os.fdopen(fd, "wb") as f:
            np.savez(f, **arrays)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    dir_fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def load(opt, path) -> None:
    path = os.fspath(path)
    where = f"load({path!r})"
    try:
        with np.load(path, allow_pickle=False) as npz:
            if not hasattr(npz, "files") or _HEADER not in npz.files:
                raise _fail("not a fastopt state file (no header)", where)
            header = json.loads(npz[_HEADER].tobytes().decode())
            payload = {name: npz[name] for name in npz.files if name != _HEADER}
    except StateFileError:
        raise
    except FileNotFoundError:
        raise
    except (OSError, ValueError, EOFError, KeyError, zipfile.BadZipFile, UnicodeDecodeError) as exc:
        raise _fail(f"unreadable or truncated file ({type(exc).__name__}: {exc})", where) from None
    if not isinstance(header, dict):
        raise _fail("corrupt header", where)
    checksum = header.pop("sha256", None)
    if checksum != _digest(header, payload):
        raise _fail("checksum mismatch: the file is corrupt", where)
    names = header.get("state_names")
    if names != list(opt.state_names) and header.get("keys"):
        raise _fail(f"state names {names} do not match {list(opt.state_names)}", where)
    state = dict(header)
    state["state"] = {}
    if header.get("keys"):
        try:
            layout = Layout.from_shapes(
                header["keys"], [header["shapes"][k] for k in header["keys"]], header["dtype"]
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise _fail(f"corrupt header ({exc})", where) from None
        for name in opt.state_names:
            flat = payload.get(_PAYLOAD_PREFIX + name)
            if flat is None or flat.shape != (layout.total,):
                raise _fail(f"state {name!r} is missing or has the wrong size", where)
            state["state"][name] = layout.views(flat)
    load_state_dict(opt, state, where)
