"""fastopt.torch: torch.optim's optimizers on the CPU, run by fastopt's kernels.

Change ``torch.optim.AdamW(model.parameters(), lr=1e-3)`` to
``fastopt.torch.AdamW(model.parameters(), lr=1e-3)`` and nothing else:
param groups, ``zero_grad``, ``closure``, LR schedulers, ``state_dict``
(torch's format, both ways) and ``add_param_group`` work as with torch.

How it runs.  The params of one dtype are one fastopt optimizer (an
*engine*): its kernel updates every param of that dtype in every group in
one call, on the tensors' own memory (``Tensor.numpy()`` views, no copy).
Each param group is a fastopt group (``"<group>.*"`` keys) with its own
hyperparameters, read from ``param_groups`` at every step, so schedulers
work.  The optimizer state lives in the engine's flat buffers;
``self.state[p]`` holds tensors that are views of them, with torch's names,
so ``state_dict()`` is torch's.  torch keeps a step count per param: a step
where some params have no grad (or params whose counts differ) updates those
params alone, with their state copied to a scratch engine and back (the
same math, slower); every other step is the one-call path.

bf16 and fp16 params are updated through float32 master weights kept in the
state (``state[p]["master_param"]``), and each param is written from its
master rounded to nearest even: bf16 params by the kernel in the same pass
(:meth:`fastopt.Optimizer.update_and_copy`; Adafactor's own kernel has no
copy, so its bf16 params take the second pass), fp16 params by torch's
``copy_`` after the step.

The math is torch's (DESIGN section 7): each class names the fastopt rule
it runs, and that rule has a NumPy reference in :mod:`fastopt.reference`
which the kernels match bit for bit.  torch's own kernels round some steps
differently in the last bit (``lerp_``, ``addcdiv_``), so fastopt agrees with
torch to ~1e-15 relative in float64, not bit for bit.

Not supported (a clear error): sparse grads, complex params, params off the
CPU, non-contiguous params, ``capturable=True``, ``differentiable=True``,
structural options (``amsgrad``, ``nesterov``, ``centered``, ``maximize``,
momentum on or off, ...) that differ between param groups.  ``foreach`` and
``fused`` are accepted and ignored.
"""

from __future__ import annotations

from collections import defaultdict

import numpy as np

try:
    import torch
except ImportError as exc:  # pragma: no cover - exercised without torch installed
    raise ImportError(
        "fastopt.torch needs PyTorch; install it with: pip install 'fastopt[torch]' "
        "(or pip install torch==2.13.0 for the CPU build)"
    ) from exc

import torch.optim.optimizer as _torch_optimizer

from .errors import FastoptInputError
from .rules.adadelta import Adadelta as _Adadelta
from .rules.adafactor import Adafactor as _Adafactor
from .rules.adamax import Adamax as _Adamax
from .rules.adamw import AdamW as _AdamW
from .rules.lamb import LAMB as _LAMB
from .rules.lion import Lion as _Lion
from .rules.nadam import NAdam as _NAdam
from .rules.radam import RAdam as _RAdam
from .rules.sgd import SGD as _SGD
from .rules.torch_adagrad import TorchAdagrad as _TorchAdagrad
from .rules.torch_adam import TorchAdam as _TorchAdam
from .rules.torch_rmsprop import TorchRMSprop as _TorchRMSprop

__all__ = ["SGD", "Adam", "AdamW", "Adagrad", "RMSprop", "NAdam", "RAdam", "Adamax", "Adadelta",
           "Adafactor", "Lion", "LAMB"]

_NUMPY_DTYPES = {torch.float32: np.float32, torch.float64: np.float64}
_GLOBAL_PRE_HOOKS = _torch_optimizer._global_optimizer_pre_hooks
_GLOBAL_POST_HOOKS = _torch_optimizer._global_optimizer_post_hooks
_profiler_enabled = torch._C._autograd._profiler_enabled
_LOW_PRECISION = (torch.bfloat16, torch.float16)
_MASTER = "master_param"


def _where(gi: int, j: int) -> str:
    return f"param_groups[{gi}]['params'][{j}]"


def _key(gi: int, j: int) -> str:
    return f"{gi}.{j}"


def _groups_signature(param_groups) -> tuple:
    """What tells that the groups' param lists were replaced or resized
    (``param_groups[0]["params"] = [...]``, a group removed)."""
    return tuple((id(g), id(g["params"]), len(g["params"])) for g in param_groups)


def _holds_tensors(value) -> bool:
    if isinstance(value, tuple):
        return any(_holds_tensors(v) for v in value)
    return torch.is_tensor(value)


def _plain(value):
    """A group entry as a comparable value: tensors (a tensor ``lr`` that a
    scheduler fills in place) by their current value."""
    if torch.is_tensor(value):
        return float(value)
    if isinstance(value, tuple):
        return tuple(_plain(v) for v in value)
    return value


class _TorchFormatState:
    """torch's ``state_dict`` format and pickling for the classes here (a
    mixin of :class:`_FastoptOptimizer`, before ``torch.optim.Optimizer`` in
    its bases, so that ``super()`` is torch's)."""

    def load_state_dict(self, state_dict) -> None:
        # torch casts every floating state entry to its param's dtype; the
        # state of bf16/fp16 params (fp32 masters and moments) is put back
        # in float32, as saved.
        saved_ids = [i for group in state_dict["param_groups"] for i in group["params"]]
        params = [p for group in self.param_groups for p in group["params"]]
        wide = {}
        for i, p in zip(saved_ids, params):
            if p.dtype in _LOW_PRECISION:
                wide[p] = {name: value.detach().to(torch.float32).clone()
                           for name, value in state_dict["state"].get(i, {}).items()
                           if name != "step" and torch.is_tensor(value) and value.is_floating_point()}
            elif self._state_dtype is not None:
                # State kept in another dtype than the param's (float64
                # moments of float32 params) is put back as saved, not
                # rounded through the param's dtype.
                wide[p] = {name: value.detach().clone()
                           for name, value in state_dict["state"].get(i, {}).items()
                           if name != "step" and torch.is_tensor(value) and value.is_floating_point()
                           and value.dtype != p.dtype}
        super().load_state_dict(state_dict)
        for p, entries in wide.items():
            self.state[p].update(entries)
        self._engines = None  # the next step adopts the loaded state

    def state_dict(self):
        saved = super().state_dict()
        # torch's own step tensors are standalone; ours are views of one
        # array (and torch packs the very dicts of self.state: copy them).
        saved["state"] = {
            index: {name: value.clone() if name == "step" and torch.is_tensor(value) else value
                    for name, value in param_state.items()}
            for index, param_state in saved["state"].items()
        }
        return saved

    def __getstate__(self):
        saved = super().__getstate__()
        for name in ("_engines", "_outside", "_groups_seen"):
            saved.pop(name, None)
        return saved

    def __setstate__(self, state):
        super().__setstate__(state)
        self._engines = None


class _FastoptOptimizer(_TorchFormatState, torch.optim.Optimizer):
    """The base of every class here: torch's Optimizer, stepping through engines.

    A subclass gives ``_rule(structure)`` (the fastopt rule class),
    ``_structure(group)`` (options fixed per engine: they choose the
    kernel), ``_state_names`` (the rule's state name -> torch's) and
    optionally ``_hyperparameters`` (when a group's entries are named otherwise
    than the rule's hyperparameters), ``_initial_state``, ``_skip_empty``,
    ``_adopt_extras`` and ``_after_step``.
    """

    _state_names: dict = {}
    #: Whether torch keeps ``state[p]["step"]`` for this rule (SGD does not).
    _has_step = True

    def __init__(self, params, defaults, state_dtype=None):
        self._engines = None
        self._state_dtype = _checked_state_dtype(state_dtype, type(self).__name__)
        super().__init__(params, defaults)

    # -- param groups -------------------------------------------------------------

    def add_param_group(self, param_group: dict) -> None:
        super().add_param_group(param_group)
        gi = len(self.param_groups) - 1
        group = self.param_groups[gi]
        try:
            for option in ("capturable", "differentiable"):
                if group.get(option):
                    raise ValueError(f"fastopt.torch.{type(self).__name__}: {option}=True is not supported")
            for j, p in enumerate(group["params"]):
                self._check_param(p, _where(gi, j))
            # The rule checks the group's values now, and the options that
            # choose the kernel must agree with the first group's.
            self._make_rule(sorted({0, gi}))
        except Exception:
            del self.param_groups[gi]  # a refused group is not kept
            raise
        self._engines = None

    def _check_param(self, p, where: str) -> None:
        name = f"fastopt.torch.{type(self).__name__}"
        if p.device.type != "cpu":
            raise ValueError(f"{name}: {where} is on device {str(p.device)!r}; fastopt runs on the CPU only")
        if p.is_complex():
            raise ValueError(f"{name}: {where} is complex ({p.dtype}); complex params are not supported")
        if p.dtype not in _NUMPY_DTYPES and p.dtype not in _LOW_PRECISION:
            raise ValueError(f"{name}: {where} has dtype {p.dtype}; expected float32, float64, bfloat16 or float16")
        if p.layout != torch.strided or not p.is_contiguous():
            raise ValueError(f"{name}: {where} is not contiguous; fastopt updates contiguous params in place "
                             "(call .contiguous() on the parameter's data before building the optimizer)")

    # -- what a subclass defines ----------------------------------------------------

    def _rule(self, structure: dict):
        raise NotImplementedError

    def _hyperparameters(self, group: dict) -> dict:
        """The rule's hyperparameters from a group: the entries of the same
        names, with torch's ``betas`` as ``beta1, beta2``."""
        names = self._rule(self._structure(group)).hyperparameter_names
        values = {name: float(group[name]) for name in names if name in group}
        if "betas" in group:
            values["beta1"], values["beta2"] = _betas(group)
        return values

    def _structure(self, group: dict) -> dict:
        return {}

    def _watched_keys(self) -> tuple:
        """The group entries whose change the engine must see (schedulers write them)."""
        return tuple(k for k in self.defaults if k not in ("foreach", "fused", "capturable", "differentiable"))

    def _initial_state(self, group: dict, name: str, view: np.ndarray) -> None:
        """Fill a new param's state buffer ``name`` (zeros already)."""

    def _skip_empty(self, name: str) -> bool:
        """Whether a state buffer of no elements stays out of ``state[p]``."""
        return False

    def _adopt_extras(self, engine: "_Engine", old_states: list) -> None:
        """Entries torch keeps besides the buffers (NAdam's ``mu_product``),
        from each param's state before the engine was built."""

    def _after_step(self, engine: "_Engine", indices) -> None:
        """Bring those entries up to date after the params ``indices`` stepped."""

    # -- stepping -------------------------------------------------------------------

    def _plain_step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        self._step()
        return loss

    #: torch's step wrapper: a profiler range and the step hooks.
    _step_with_hooks = torch.optim.Optimizer.profile_hook_step(_plain_step)

    def step(self, closure=None):
        """One step of every param that has a grad; returns ``closure()``'s loss."""
        # torch wraps every step in a profiler range, ~15 us even with no
        # profiler running; here it is entered only when it does something.
        if (_GLOBAL_PRE_HOOKS or _GLOBAL_POST_HOOKS or self._optimizer_step_pre_hooks
                or self._optimizer_step_post_hooks or _profiler_enabled()):
            # the hooks see the arguments as torch's own step passes them
            return self._step_with_hooks() if closure is None else self._step_with_hooks(closure)
        return self._plain_step(closure)

    step.hooked = True  # tells torch.optim.Optimizer not to wrap it again

    def _step(self) -> None:
        engines = self._engines
        if (engines is None or self._groups_seen != _groups_signature(self.param_groups)
                or any(p.grad is not None for p in self._outside)
                or not all(engine.params_in_place() for engine in engines)):
            self._build_engines()
            engines = self._engines
        # Every engine's grads are taken and checked before any engine writes.
        prepared = [engine.prepare(self) for engine in engines]
        for engine, (active, grad_views) in zip(engines, prepared):
            engine.run(self, active, grad_views)
            if engine.updated:
                torch.autograd.graph.increment_version(engine.updated)
            if engine.low_precision:
                engine.versions = [p._version for p in engine.params]

    # -- the engines ------------------------------------------------------------------

    def _build_engines(self) -> None:
        """One engine per param dtype, over every param that has a grad or
        state, adopting the state held in ``self.state``."""
        by_dtype = defaultdict(list)
        outside = []
        for gi, group in enumerate(self.param_groups):
            for j, p in enumerate(group["params"]):
                g = p.grad
                if g is not None and g.layout != torch.strided:
                    raise RuntimeError(f"fastopt.torch.{type(self).__name__} does not support sparse gradients "
                                       f"({_where(gi, j)})")
                if g is not None or self.state.get(p):
                    by_dtype[p.dtype].append((gi, j, p))
                else:
                    outside.append(p)
        self._engines = None
        self._outside = outside
        self._groups_seen = _groups_signature(self.param_groups)
        self._engines = [_Engine(self, dtype, entries) for dtype, entries in by_dtype.items()]

    def _make_rule(self, group_ids):
        """A fastopt optimizer for params of the groups ``group_ids``."""
        structure = self._structure(self.param_groups[group_ids[0]])
        maximize = bool(self.param_groups[group_ids[0]].get("maximize", False))
        for gi in group_ids[1:]:
            other = self.param_groups[gi]
            if self._structure(other) != structure or bool(other.get("maximize", False)) != maximize:
                raise ValueError(
                    f"fastopt.torch.{type(self).__name__}: param_groups[{gi}] has "
                    f"{dict(self._structure(other), maximize=other.get('maximize', False))}, param_groups"
                    f"[{group_ids[0]}] has {dict(structure, maximize=maximize)}; fastopt runs the params of one "
                    "dtype in one kernel, so these options must agree across groups"
                )
        hyper = {gi: self._hyperparameters(self.param_groups[gi]) for gi in group_ids}
        rule = self._rule(structure)
        return rule(**hyper[group_ids[0]], **{k: v for k, v in structure.items() if k in rule.structure},
                    maximize=maximize, state_dtype=self._state_dtype,
                    groups={f"{gi}.*": hyper[gi] for gi in group_ids}), hyper


class _AdoptedState:
    """How an engine takes over torch's per-param state (``owner.state``): its
    values copied into the engine's flat buffers, then each entry a view of
    them (a mixin of :class:`_Engine`)."""

    def _adopt(self, owner: "_FastoptOptimizer") -> None:
        """Copy ``owner.state`` into the engine's buffers, then make it views of them."""
        buffers = self.rule.optimizer_state.views()
        names = owner._state_names
        counts, olds = [], []
        for key, (gi, j, p) in zip(self.keys, self.entries):
            old = owner.state.get(p) or {}
            olds.append(old)
            group = owner.param_groups[gi]
            new = {}
            for name, torch_name in names.items():
                if name not in buffers:
                    continue  # a buffer this configuration has not (amsgrad off, no momentum)
                view = buffers[name][key]
                bits = view.dtype == np.uint16  # bfloat16 state: torch's bfloat16 tensors on its bits
                if torch.is_tensor(old.get(torch_name)):
                    source = old[torch_name].detach().reshape(view.shape).to(
                        torch.bfloat16 if bits else torch.float64 if view.dtype == np.float64 else torch.float32)
                    view[...] = _bf16_bits(source) if bits else source.numpy()
                elif bits:
                    wide = np.zeros(view.shape, np.float32)
                    owner._initial_state(group, name, wide)
                    view[...] = _bf16_bits(torch.from_numpy(wide).to(torch.bfloat16))
                else:
                    owner._initial_state(group, name, view)
                if view.size or not owner._skip_empty(name):
                    new[torch_name] = (torch.from_numpy(view.view(np.int16)).view(torch.bfloat16) if bits
                                       else torch.from_numpy(view))
            if owner._has_step:
                step = old.get("step")
                counts.append(float(step) if step is not None else 0.0)
                new["step"] = None  # pointed at its count below
            else:  # SGD: a param with a momentum buffer has stepped
                counts.append(1.0 if torch.is_tensor(old.get("momentum_buffer")) else 0.0)
            if self.low_precision:
                new[_MASTER] = self.master_tensors[len(counts) - 1]
            owner.state[p] = new
        # SGD's math only asks whether a param has stepped before.
        self.steps = _StepCounts(counts, cap=None if owner._has_step else 1)
        self._point_step_tensors(owner)
        owner._adopt_extras(self, olds)

    def _point_step_tensors(self, owner) -> None:
        if owner._has_step:
            for k, p in enumerate(self.params):
                owner.state[p]["step"] = self.steps.tensor(k)


class _Engine(_AdoptedState):
    """The fastopt optimizer over every param of one dtype."""

    def __init__(self, owner: _FastoptOptimizer, dtype, entries):
        self.entries = entries
        self.keys = [_key(gi, j) for gi, j, _ in entries]
        self.low_precision = dtype in _LOW_PRECISION
        self.group_ids = sorted({gi for gi, _, _ in entries})
        self.rule, self.applied = owner._make_rule(self.group_ids)
        first = owner.param_groups[self.group_ids[0]]
        self.structure = dict(owner._structure(first), maximize=bool(first.get("maximize", False)))
        state = owner.state
        views = {}
        for key, (gi, j, p) in zip(self.keys, entries):
            if self.low_precision:
                # The saved master, unless the param no longer is its rounding
                # (the param was written since: its value is the truth).
                master = state.get(p, {}).get(_MASTER)
                if master is None or not torch.equal(master.detach().to(dtype), p.detach()):
                    master = p
                views[key] = master.detach().to(torch.float32).numpy().copy()
            else:
                views[key] = p.detach().numpy()
        self.views = views
        if self.low_precision:
            # The grads, widened into buffers kept from step to step (a new
            # array each step would pay its page faults every time).
            self.grad_buffers = {key: np.empty(v.shape, np.float32) for key, v in views.items()}
            self.grad_tensors = [torch.from_numpy(b) for b in self.grad_buffers.values()]
            self.master_tensors = [torch.from_numpy(v) for v in views.values()]
        # bf16 params are written from their masters by the kernel, in the
        # same pass (the bits, rounded to nearest even); fp16 ones by torch's
        # copy_ after it (Numba has no float16, and a bit-level conversion
        # did not vectorise).
        self.copies = None
        if dtype == torch.bfloat16 and self.rule.supports_copies:
            self.copies = {key: _bf16_bits(p.detach())
                           for key, (_, _, p) in zip(self.keys, entries)}
        self.rule.init(views)
        self.params = [p for _, _, p in entries]
        self.pointers = [p.data_ptr() for p in self.params]
        self.versions = [p._version for p in self.params]
        self.updated = self.params
        self._watched = owner._watched_keys()
        self.seen = [None] * len(self.group_ids)  # each group's watched values, as last applied
        self.raw = [None] * len(self.group_ids)
        self.tensor_valued = [True] * len(self.group_ids)
        self._adopt(owner)

    def params_in_place(self) -> bool:
        """Whether every param still has the memory the engine updates
        (``p.data = ...``, as ``module.to(dtype)`` does, gives it new memory)."""
        return [p.data_ptr() for p in self.params] == self.pointers

    def sync_hyperparameters(self, owner) -> None:
        """Give the engine's groups the values now in ``param_groups`` (schedulers change them)."""
        groups = self.rule.groups
        watched = self._watched
        for n, gi in enumerate(self.group_ids):
            group = owner.param_groups[gi]
            raw = tuple([group.get(k) for k in watched])
            if raw == self.raw[n] and not self.tensor_valued[n]:
                continue
            seen = _plain(raw)  # a tensor lr filled in place is the same object with a new value
            if seen == self.seen[n]:
                continue
            structure = dict(owner._structure(group), maximize=bool(group.get("maximize", False)))
            if structure != self.structure:
                raise ValueError(
                    f"fastopt.torch.{type(owner).__name__}: param_groups[{gi}] has {structure}, but its params "
                    f"were set up with {self.structure}; these options choose the kernel and cannot change "
                    "after the first step (build a new optimizer and load this one's state_dict)")
            values = owner._hyperparameters(group)
            if values != self.applied[gi]:
                override = groups[f"{gi}.*"]
                for name, value in values.items():
                    if value != self.applied[gi][name]:
                        setattr(override, name, value)
                self.applied[gi] = values
            self.seen[n], self.raw[n], self.tensor_valued[n] = seen, raw, _holds_tensors(raw)

    def prepare(self, owner):
        """This step's hyperparameters and grads, checked; nothing of the
        params or the state is written (but the masters of low-precision
        params written since the last step take their new values).  Returns
        (the indices of the params that step, or None for all of them; their
        grads as NumPy arrays)."""
        self.sync_hyperparameters(owner)
        if self.low_precision:
            self._follow_outside_writes()
        if not self.low_precision:
            try:
                return None, {key: p.grad.numpy() for key, p in zip(self.keys, self.params)}
            except (AttributeError, RuntimeError, TypeError):
                pass  # a param without a grad, or a grad numpy() refuses: the careful path
        grads = [p.grad for p in self.params]
        active = [k for k, g in enumerate(grads) if g is not None]
        views = self._grad_views(active, grads)
        return (None if len(active) == len(grads) else active), views

    def run(self, owner, active, grad_views) -> None:
        """Update the params ``active`` (None: all) with ``grad_views``; ``updated`` lists them."""
        try:
            if active is None and self.steps.uniform:
                self._update_all(owner, grad_views)
            else:
                self._update_some(owner, grad_views, range(len(self.params)) if active is None else active)
        except FastoptInputError as exc:
            raise self._named(exc) from exc

    def _grad_views(self, indices, grads):
        """NumPy views of ``grads[k]`` for k in ``indices`` (widened to float32 for low-precision params)."""
        keys = self.keys
        for k in indices:
            if grads[k].layout != torch.strided:
                raise RuntimeError(f"fastopt.torch does not support sparse gradients ({self._where(keys[k])})")
        if self.low_precision:
            for k in indices:
                self.grad_tensors[k].copy_(grads[k])
            return {keys[k]: self.grad_buffers[keys[k]] for k in indices}
        return {keys[k]: grads[k].detach().numpy() for k in indices}

    def _update_all(self, owner, grad_views) -> None:
        rule = self.rule
        if rule.step_count != self.steps.count:  # after a rebuild or steps of some params alone
            rule.iter = self.steps.count
        if self.copies is not None:
            rule.update_and_copy(self.views, grad_views, self.copies)
        else:
            rule.update(self.views, grad_views)
        self.steps.advance_all()
        self.updated = self.params
        owner._after_step(self, range(len(self.params)))
        if self.low_precision and self.copies is None:
            self._write_low_precision(range(len(self.keys)))

    def _update_some(self, owner, grad_views, active) -> None:
        """Params with a grad, by step count: each set through a scratch
        optimizer holding a copy of its state (torch's per-param steps)."""
        if self.steps.uniform:
            self.steps.split()
            self._point_step_tensors(owner)
        by_count = defaultdict(list)
        for k in active:
            by_count[self.steps.of(k)].append(k)
        main = self.rule.optimizer_state.views()
        for count, ks in sorted(by_count.items()):
            keys = [self.keys[k] for k in ks]
            scratch, _ = owner._make_rule(sorted({self.entries[k][0] for k in ks}))
            views = {key: self.views[key] for key in keys}
            scratch.init(views)
            theirs = scratch.optimizer_state.views()
            for name in main:
                for key in keys:
                    theirs[name][key][...] = main[name][key]
            scratch.iter = count
            scratch.update(views, {key: grad_views[key] for key in keys})
            for name in main:
                for key in keys:
                    main[name][key][...] = theirs[name][key]
            self.steps.advance(ks)
        self.updated = [self.entries[k][2] for k in active]
        owner._after_step(self, active)
        if self.steps.settle():
            self._point_step_tensors(owner)
        if self.low_precision:
            self._write_low_precision(active)

    def _follow_outside_writes(self) -> None:
        """A low-precision param written in place since the last step
        (``load_state_dict``, ``clamp_``, an init) gives its master the new value."""
        versions = [p._version for p in self.params]
        if versions != self.versions:
            for k, (now, then) in enumerate(zip(versions, self.versions)):
                if now != then:
                    self.master_tensors[k].copy_(self.params[k].detach())
            self.versions = versions

    def _write_low_precision(self, indices) -> None:
        with torch.no_grad():
            for k in indices:
                self.params[k].copy_(self.master_tensors[k])

    def _where(self, key: str) -> str:
        gi, j, _ = self.entries[self.keys.index(key)]
        return _where(gi, j)

    def _named(self, exc: Exception) -> Exception:
        message = str(exc)
        for key, (gi, j, _) in zip(self.keys, self.entries):
            message = message.replace(f"[{key!r}]", f" of {_where(gi, j)}").replace(repr(key), _where(gi, j))
        return type(exc)(message)


class _StepCounts:
    """The step count of each param of an engine, and torch's ``step`` tensors.

    While every param has taken as many steps as every other (all but a few
    steps of any run), the count is one Python int and every param's
    ``step`` tensor views one shared float32 element, written once per step
    (a NumPy ufunc over a per-param array cost ~15 us per step at 1e6
    elements, with the caches cold after the kernel).  Otherwise each param
    has its own element of ``each``.
    """

    def __init__(self, counts, cap=None):
        self.cap = cap
        self.each = np.array(counts if cap is None else np.minimum(counts, cap), np.float32)
        self.shared = np.zeros(1, np.float32)
        self.shared_view = memoryview(self.shared)
        self.shared_tensor = torch.from_numpy(self.shared).reshape(())
        self.uniform = False
        self.settle()

    def settle(self) -> bool:
        """Share one count again if every param's is the same; True if that changed anything."""
        if self.uniform or not (len(self.each) == 0 or bool(np.all(self.each == self.each[0]))):
            return False
        self.uniform = True
        self.count = int(self.each[0]) if len(self.each) else 0
        self.shared_view[0] = float(self.count)
        return True

    def split(self) -> None:
        """One count per param from now on (some params are about to step alone)."""
        self.each[:] = self.count
        self.uniform = False

    def advance_all(self) -> None:
        self.count = self.count + 1 if self.cap is None else min(self.count + 1, self.cap)
        self.shared_view[0] = float(self.count)

    def advance(self, indices) -> None:
        """One more step of the params ``indices`` (after :meth:`split`)."""
        self.each[indices] += 1.0
        if self.cap is not None:
            np.minimum(self.each, self.cap, out=self.each)

    def of(self, k: int) -> int:
        return self.count if self.uniform else int(self.each[k])

    def tensor(self, k: int):
        return self.shared_tensor if self.uniform else torch.from_numpy(self.each[k : k + 1]).reshape(())


# -- torch's optimizers -------------------------------------------------------------------


def _bf16_bits(tensor) -> np.ndarray:
    """The bits of a contiguous bfloat16 CPU tensor, as a uint16 array on its memory."""
    return tensor.view(torch.int16).numpy().view(np.uint16)


_STATE_DTYPES = {None: None, "float32": "float32", "float64": "float64", "bfloat16": "bfloat16",
                 torch.float32: "float32", torch.float64: "float64", torch.bfloat16: "bfloat16"}


def _checked_state_dtype(value, owner: str):
    """None, float32, float64 or bfloat16 (names or torch dtypes)."""
    if value == "int8":
        raise ValueError(f"fastopt.torch.{owner}: state_dtype='int8' is offered by fastopt's own optimizers "
                         "(fastopt.AdamW(state_dtype='int8')), not in torch's state format; use 'bfloat16'")
    try:
        return _STATE_DTYPES[value]
    except (KeyError, TypeError):
        raise ValueError(f"fastopt.torch.{owner}: state_dtype must be None, 'float32', 'float64' or 'bfloat16' "
                         f"(or the torch dtype), got {value!r}") from None


def _check(condition: bool, message: str) -> None:
    if not condition:
        raise ValueError(message)


def _betas(group) -> tuple[float, float]:
    b1, b2 = group["betas"]
    return float(b1), float(b2)


def _check_common(lr, eps=None, weight_decay=0.0, betas=None) -> None:
    _check(float(lr) >= 0.0, f"Invalid learning rate: {lr}")
    if eps is not None:
        _check(eps >= 0.0, f"Invalid epsilon value: {eps}")
    _check(weight_decay >= 0.0, f"Invalid weight_decay value: {weight_decay}")
    if betas is not None:
        _check(0.0 <= betas[0] < 1.0, f"Invalid beta parameter at index 0: {betas[0]}")
        _check(0.0 <= betas[1] < 1.0, f"Invalid beta parameter at index 1: {betas[1]}")


class SGD(_FastoptOptimizer):
    """``torch.optim.SGD`` (momentum, dampening, nesterov, weight_decay, maximize) on fastopt's ``SGD``."""

    _state_names = {"momentum_buffer": "momentum_buffer"}
    _has_step = False

    def __init__(self, params, lr=1e-3, momentum=0, dampening=0, weight_decay=0, nesterov=False, *,
                 maximize=False, foreach=None, differentiable=False, fused=None, state_dtype=None):
        _check_common(lr, weight_decay=weight_decay)
        _check(momentum >= 0.0, f"Invalid momentum value: {momentum}")
        if nesterov and (momentum <= 0 or dampening != 0):
            raise ValueError("Nesterov momentum requires a momentum and zero dampening")
        super().__init__(params, dict(lr=lr, momentum=momentum, dampening=dampening, weight_decay=weight_decay,
                                      nesterov=nesterov, maximize=maximize, foreach=foreach,
                                      differentiable=differentiable, fused=fused), state_dtype=state_dtype)

    def _rule(self, structure):
        return _SGD

    def _structure(self, group):
        return {"nesterov": bool(group["nesterov"]), "with_momentum": group["momentum"] != 0}



class Adam(_FastoptOptimizer):
    """``torch.optim.Adam`` (amsgrad, maximize, decoupled_weight_decay) on
    :class:`fastopt.rules.torch_adam.TorchAdam` (fastopt's ``AdamW`` when the
    decay is decoupled)."""

    _state_names = {"m": "exp_avg", "v": "exp_avg_sq", "v_max": "max_exp_avg_sq"}
    _decoupled_default = False

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0, amsgrad=False, *,
                 foreach=None, maximize=False, capturable=False, differentiable=False, fused=None,
                 decoupled_weight_decay=None, state_dtype=None):
        if decoupled_weight_decay is None:
            decoupled_weight_decay = self._decoupled_default
        _check_common(lr, eps, weight_decay, betas)
        super().__init__(params, dict(lr=lr, betas=betas, eps=eps, weight_decay=weight_decay, amsgrad=amsgrad,
                                      maximize=maximize, foreach=foreach, capturable=capturable,
                                      differentiable=differentiable, fused=fused,
                                      decoupled_weight_decay=decoupled_weight_decay), state_dtype=state_dtype)

    def _rule(self, structure):
        return _AdamW if structure["decoupled_weight_decay"] else _TorchAdam

    def _structure(self, group):
        return {"amsgrad": bool(group["amsgrad"]),
                "decoupled_weight_decay": bool(group.get("decoupled_weight_decay", self._decoupled_default))}



class AdamW(Adam):
    """``torch.optim.AdamW`` (amsgrad, maximize) on fastopt's ``AdamW``."""

    _decoupled_default = True

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=1e-2, amsgrad=False, *,
                 maximize=False, foreach=None, capturable=False, differentiable=False, fused=None, state_dtype=None):
        super().__init__(params, lr, betas, eps, weight_decay, amsgrad, foreach=foreach, maximize=maximize,
                         capturable=capturable, differentiable=differentiable, fused=fused,
                         decoupled_weight_decay=True, state_dtype=state_dtype)


class Adagrad(_FastoptOptimizer):
    """``torch.optim.Adagrad`` (lr_decay, initial_accumulator_value, maximize) on
    :class:`fastopt.rules.torch_adagrad.TorchAdagrad`."""

    _state_names = {"h": "sum"}

    def __init__(self, params, lr=1e-2, lr_decay=0, weight_decay=0, initial_accumulator_value=0, eps=1e-10,
                 foreach=None, *, maximize=False, differentiable=False, fused=None, state_dtype=None):
        _check_common(lr, eps, weight_decay)
        _check(lr_decay >= 0.0, f"Invalid lr_decay value: {lr_decay}")
        _check(initial_accumulator_value >= 0.0,
               f"Invalid initial_accumulator_value value: {initial_accumulator_value}")
        super().__init__(params, dict(lr=lr, lr_decay=lr_decay, eps=eps, weight_decay=weight_decay,
                                      initial_accumulator_value=initial_accumulator_value, foreach=foreach,
                                      maximize=maximize, differentiable=differentiable, fused=fused),
                         state_dtype=state_dtype)

    def _rule(self, structure):
        return _TorchAdagrad


    def _initial_state(self, group, name, view):
        view[...] = group["initial_accumulator_value"]


class RMSprop(_FastoptOptimizer):
    """``torch.optim.RMSprop`` (alpha, centered, momentum, maximize) on
    :class:`fastopt.rules.torch_rmsprop.TorchRMSprop`."""

    _state_names = {"h": "square_avg", "a": "grad_avg", "b": "momentum_buffer"}

    def __init__(self, params, lr=1e-2, alpha=0.99, eps=1e-8, weight_decay=0, momentum=0, centered=False,
                 capturable=False, foreach=None, maximize=False, differentiable=False, *, state_dtype=None):
        _check_common(lr, eps, weight_decay)
        _check(momentum >= 0.0, f"Invalid momentum value: {momentum}")
        _check(alpha >= 0.0, f"Invalid alpha value: {alpha}")
        super().__init__(params, dict(lr=lr, momentum=momentum, alpha=alpha, eps=eps, centered=centered,
                                      weight_decay=weight_decay, capturable=capturable, foreach=foreach,
                                      maximize=maximize, differentiable=differentiable), state_dtype=state_dtype)

    def _rule(self, structure):
        return _TorchRMSprop

    def _structure(self, group):
        return {"centered": bool(group["centered"]), "with_momentum": group["momentum"] > 0}



class NAdam(_FastoptOptimizer):
    """``torch.optim.NAdam`` (momentum_decay, decoupled_weight_decay, maximize) on fastopt's ``NAdam``."""

    _state_names = {"m": "exp_avg", "v": "exp_avg_sq"}

    def __init__(self, params, lr=2e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0, momentum_decay=4e-3,
                 decoupled_weight_decay=False, *, foreach=None, maximize=False, capturable=False,
                 differentiable=False, state_dtype=None):
        _check_common(lr, eps, weight_decay, betas)
        _check(momentum_decay >= 0.0, f"Invalid momentum_decay value: {momentum_decay}")
        super().__init__(params, dict(lr=lr, betas=betas, eps=eps, weight_decay=weight_decay,
                                      momentum_decay=momentum_decay, decoupled_weight_decay=decoupled_weight_decay,
                                      maximize=maximize, foreach=foreach, capturable=capturable,
                                      differentiable=differentiable), state_dtype=state_dtype)

    def _rule(self, structure):
        return _NAdam

    def _structure(self, group):
        return {"decoupled_weight_decay": bool(group["decoupled_weight_decay"])}


    # torch keeps the product of the momentum coefficients per param (in its
    # scalar dtype: float64 only when that is the default dtype); fastopt's
    # NAdam carries it per group in float64 for the math, so here it is only
    # torch's state entry, kept the way torch keeps it.

    def _adopt_extras(self, engine, old_states):
        dtype = np.float64 if torch.get_default_dtype() == torch.float64 else np.float32
        engine.mu_products = np.array([float(old.get("mu_product", 1.0)) for old in old_states], dtype)
        for k, p in enumerate(engine.params):
            self.state[p]["mu_product"] = torch.from_numpy(engine.mu_products[k : k + 1]).reshape(())

    def _after_step(self, engine, indices):
        products = engine.mu_products
        for k in indices:
            group = self.param_groups[engine.entries[k][0]]
            t = engine.steps.of(k)
            mu = _betas(group)[0] * (1.0 - 0.5 * 0.96 ** (t * float(group["momentum_decay"])))
            products[k] *= products.dtype.type(mu)


class RAdam(_FastoptOptimizer):
    """``torch.optim.RAdam`` (decoupled_weight_decay, maximize) on fastopt's ``RAdam``."""

    _state_names = {"m": "exp_avg", "v": "exp_avg_sq"}

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0, decoupled_weight_decay=False,
                 *, foreach=None, maximize=False, capturable=False, differentiable=False, state_dtype=None):
        _check_common(lr, eps, weight_decay, betas)
        super().__init__(params, dict(lr=lr, betas=betas, eps=eps, weight_decay=weight_decay,
                                      decoupled_weight_decay=decoupled_weight_decay, maximize=maximize,
                                      foreach=foreach, capturable=capturable, differentiable=differentiable),
                         state_dtype=state_dtype)

    def _rule(self, structure):
        return _RAdam

    def _structure(self, group):
        return {"decoupled_weight_decay": bool(group["decoupled_weight_decay"])}



class Adamax(_FastoptOptimizer):
    """``torch.optim.Adamax`` (maximize) on fastopt's ``Adamax``."""

    _state_names = {"m": "exp_avg", "u": "exp_inf"}

    def __init__(self, params, lr=2e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0, foreach=None, *,
                 maximize=False, differentiable=False, capturable=False, state_dtype=None):
        _check_common(lr, eps, weight_decay, betas)
        super().__init__(params, dict(lr=lr, betas=betas, eps=eps, weight_decay=weight_decay, foreach=foreach,
                                      maximize=maximize, differentiable=differentiable, capturable=capturable),
                         state_dtype=state_dtype)

    def _rule(self, structure):
        return _Adamax



class Adadelta(_FastoptOptimizer):
    """``torch.optim.Adadelta`` (maximize) on fastopt's ``Adadelta``."""

    _state_names = {"v": "square_avg", "acc_delta": "acc_delta"}

    def __init__(self, params, lr=1.0, rho=0.9, eps=1e-6, weight_decay=0, foreach=None, *, capturable=False,
                 maximize=False, differentiable=False, state_dtype=None):
        _check_common(lr, eps, weight_decay)
        _check(0.0 <= rho <= 1.0, f"Invalid rho value: {rho}")
        super().__init__(params, dict(lr=lr, rho=rho, eps=eps, weight_decay=weight_decay, maximize=maximize,
                                      capturable=capturable, foreach=foreach, differentiable=differentiable),
                         state_dtype=state_dtype)

    def _rule(self, structure):
        return _Adadelta



class Adafactor(_FastoptOptimizer):
    """``torch.optim.Adafactor`` (beta2_decay, eps, d, weight_decay, maximize) on fastopt's ``Adafactor``:
    row and column factors for params of 2+ dims, ``variance`` for the others."""

    _state_names = {"row_var": "row_var", "col_var": "col_var", "variance": "variance"}

    def __init__(self, params, lr=1e-2, beta2_decay=-0.8, eps=(None, 1e-3), d=1.0, weight_decay=0.0, *,
                 foreach=None, maximize=False, state_dtype=None):
        _check(float(lr) >= 0.0, f"Learning rate should be >= 0 but is: {lr}")
        _check(beta2_decay <= 0.0, f"beta2_decay should be <= 0 but is: {beta2_decay}")
        _check(eps[0] is None or eps[0] >= 0.0, f"epsilon1 should be >= 0 but is: {eps[0]}")
        _check(eps[1] >= 0.0, f"epsilon2 should be >= 0 but is: {eps[1]}")
        _check(d >= 1.0, f"Clipping threshold d should be >= 1 but is: {d}")
        _check(weight_decay >= 0.0, f"weight_decay should be >= 0 but is: {weight_decay}")
        super().__init__(params, dict(lr=lr, beta2_decay=beta2_decay, eps=eps, d=d, weight_decay=weight_decay,
                                      foreach=foreach, maximize=maximize), state_dtype=state_dtype)

    def _rule(self, structure):
        return _Adafactor

    def _hyperparameters(self, group):
        eps1, eps2 = group["eps"]  # torch's pair; eps1 None: the dtype's epsilon
        return dict(super()._hyperparameters(group), eps1=None if eps1 is None else float(eps1), eps2=float(eps2))

    def _skip_empty(self, name: str) -> bool:
        return True  # a matrix has no "variance", a vector no factors


class Lion(_FastoptOptimizer):
    """Lion (optax's, Chen et al. 2023) for torch params; fastopt's ``Lion`` signature."""

    _state_names = {"m": "exp_avg"}

    def __init__(self, params, lr=1e-4, beta1=0.9, beta2=0.99, weight_decay=1e-3, *, maximize=False, state_dtype=None):
        _check_common(lr, weight_decay=weight_decay, betas=(beta1, beta2))
        super().__init__(params, dict(lr=lr, beta1=beta1, beta2=beta2, weight_decay=weight_decay,
                                      maximize=maximize), state_dtype=state_dtype)

    def _rule(self, structure):
        return _Lion



class LAMB(_FastoptOptimizer):
    """LAMB (optax's, You et al. 2019) for torch params; fastopt's ``LAMB`` signature."""

    _state_names = {"m": "exp_avg", "v": "exp_avg_sq"}

    def __init__(self, params, lr=1e-3, beta1=0.9, beta2=0.999, eps=1e-6, eps_root=0.0, weight_decay=0.0, *,
                 maximize=False, state_dtype=None):
        _check_common(lr, eps, weight_decay, (beta1, beta2))
        super().__init__(params, dict(lr=lr, beta1=beta1, beta2=beta2, eps=eps, eps_root=eps_root,
                                      weight_decay=weight_decay, maximize=maximize), state_dtype=state_dtype)

    def _rule(self, structure):
        return _LAMB


