"""What is timed: every case built from the rule registry and its capabilities.

A case is a rule, a size, a layout and an engine option; each builder returns
a zero-argument callable doing one update (or None where that implementation
cannot run it), warmed up by the timing.  ``python -m fastopt bench`` and the
asv suite both build their cases here, so a rule added to the registry, or a
state format a rule starts to offer, appears in both with no edit.

Written to run against the fastopt of any recent commit (asv measures old
commits with this checkout's harness): only the public API, the registry and
``RuleMath.passes`` are used, and what a commit lacks raises
``NotImplementedError`` (asv shows n/a).
"""

from __future__ import annotations

import numpy as np

from . import roofs

#: Arrays of the dict and arena layouts.
N_ARRAYS = 12
#: Row length of the arrays of a factored rule (Adafactor): matrices, the
#: case its factored state is for.
MATRIX_ROW = 1000
#: The book's MultiLayerNet 784-100-100-100-100-10: ten arrays (the "mlp" layouts).
BOOK_MLP = (784, 100, 100, 100, 100, 10)
LAYOUTS = ("one", "dict", "arena")
IMPLEMENTATIONS = ("fastopt", "reference", "torch-forloop", "torch-foreach", "torch-fused")


# -- the registry, at any commit -------------------------------------------------


def registry():
    try:
        from fastopt import registry
    except ImportError:
        raise NotImplementedError("no fastopt.registry at this commit")
    return registry


def rule_names() -> list[str]:
    try:
        return [rule.name for rule in registry().RULES]
    except NotImplementedError:
        return []


def rule(name: str):
    by_name = registry().BY_NAME
    if name not in by_name:
        raise NotImplementedError(f"no rule {name} at this commit")
    return by_name[name]


def passes(rule, **config) -> tuple[tuple[int, int], ...]:
    """(arrays read, arrays written) per pass over memory of one update."""
    math = getattr(rule.fast(**config), "_math", None) or rule.fast.math
    found = getattr(math, "passes", None)
    if found is not None:
        return tuple(found)
    n = len(math.state_names)  # a commit before RuleMath.passes: elementwise rules only
    return ((2 + n, 1 + n),)


def factored(rule) -> bool:
    return bool(getattr(rule, "factored", False))


def state_formats(rule) -> tuple[str, ...]:
    """The state formats ``rule`` offers: float32, and the compact ones its
    math accepts (none for a rule that keeps no state)."""
    offered = getattr(rule, "state_dtypes", None)
    if offered is not None:
        return tuple(offered)
    math = rule.fast.math  # a commit before Rule.state_dtypes: ask the math as it does
    if not getattr(math, "state_names", ()) or not hasattr(math, "low_precision_error"):
        return ("float32",)
    return ("float32",) + tuple(f for f in ("bfloat16", "int8") if math.low_precision_error(f) is None)


# -- engine options that change the kernel's work ------------------------------


#: Options that leave the kernel's memory traffic as plain's: what they cost
#: is the per-update Python and scalars work (visible at small sizes).
SAME_TRAFFIC = ("groups", "maximize", "schedule")


def options(rule) -> tuple[str, ...]:
    """The option cases of ``rule``: ``plain`` (defaults), ``clip_norm`` (a
    norm pass over the grads first), ``groups`` (three groups with their own
    learning rates: the group column), ``maximize``, ``schedule`` (a
    warmup-cosine learning rate), and ``state=F`` for each compact state
    format the rule offers."""
    return ("plain", "clip_norm", "groups", "maximize", "schedule") + tuple(
        f"state={f}" for f in state_formats(rule) if f != "float32")


def traffic_of(option: str) -> str:
    """The option case whose memory traffic ``option`` has (its roof)."""
    return "plain" if option in SAME_TRAFFIC else option


def all_options() -> list[str]:
    """Every option case some rule of the registry offers."""
    found = dict.fromkeys(("plain", "clip_norm", *SAME_TRAFFIC))
    for name in rule_names():
        found.update(dict.fromkeys(options(rule(name))))
    return list(found)


def option_config(rule, option: str) -> dict:
    """Constructor keywords of an option case."""
    if option == "plain":
        return {}
    if option == "clip_norm":
        return {"clip_norm": 1.0}
    if option == "groups":  # keys a1, a10, a11; a2; a3 at their own learning rates
        lr = rule.fast().lr
        return {"groups": {"a1*": {"lr": lr / 2}, "a2": {"lr": lr / 4}, "a3": {"lr": lr * 2}}}
    if option == "maximize":
        return {"maximize": True}
    if option == "schedule":
        try:
            from fastopt import schedules
        except ImportError:  # a commit before schedules: make_step says NotImplemented
            return {"lr": None}
        return {"lr": schedules.warmup_cosine_decay(0.0, rule.fast().lr, 100, 10**9)}
    if option.startswith("state="):
        return {"state_dtype": option.split("=", 1)[1]}
    raise ValueError(f"unknown option {option!r}; known: plain, clip_norm, groups, maximize, schedule, state=F")


def state_format_of(option: str) -> str:
    return option.split("=", 1)[1] if option.startswith("state=") else "float32"


def bytes_per_element(rule, option: str = "plain") -> float:
    """Bytes one float32 update of this case moves per element."""
    option = traffic_of(option)
    return roofs.bytes_per_element(passes(rule, **option_config(rule, option)), state_format_of(option),
                                   option == "clip_norm")


# -- layouts --------------------------------------------------------------------


def layout_shapes(n: int, layout: str, matrix: bool = False) -> list[tuple[int, ...]]:
    """The array shapes of a layout holding ``n`` elements in all (``matrix``:
    2-D arrays ``MATRIX_ROW`` wide, where ``n`` allows)."""
    rows = n // MATRIX_ROW if matrix and n % MATRIX_ROW == 0 else 0
    if layout == "one":
        return [(rows, MATRIX_ROW)] if rows else [(n,)]
    if layout in ("dict", "arena"):
        if rows >= N_ARRAYS:
            base, extra = divmod(rows, N_ARRAYS)
            return [(base + (1 if i < extra else 0), MATRIX_ROW) for i in range(N_ARRAYS)]
        base, extra = divmod(n, N_ARRAYS)
        return [(base + (1 if i < extra else 0),) for i in range(N_ARRAYS)]
    if layout in ("mlp-dict", "mlp-arena"):
        shapes = []
        for a, b in zip(BOOK_MLP, BOOK_MLP[1:]):
            shapes += [(a, b), (b,)]
        return shapes
    raise ValueError(layout)


def mlp_size() -> int:
    return sum(int(np.prod(s)) for s in layout_shapes(0, "mlp-dict"))


def _arrays(shapes, rng, scale=1.0):
    return {f"a{i}": rng.standard_normal(s, dtype=np.float32) * np.float32(scale) for i, s in enumerate(shapes)}


def _arena(params: dict, grads: dict):
    import fastopt

    if not hasattr(fastopt, "flatten"):
        raise NotImplementedError("no fastopt.flatten at this commit")
    params = fastopt.flatten(params)
    arena = fastopt.zeros_like(params)
    for k, g in grads.items():
        arena[k][...] = g
    return params, arena


# -- one update -------------------------------------------------------------------

#: The book's rules in torch.optim, with the book's eps where torch's differs;
#: the catalogue's defaults are torch's (``Rule.torch_equivalent``).
TORCH_CLASSES = {
    "SGD": ("SGD", {}),
    "Momentum": ("SGD", {"momentum": 0.9}),
    "Nesterov": ("SGD", {"momentum": 0.9, "nesterov": True}),
    "AdaGrad": ("Adagrad", {"eps": 1e-7}),
    "RMSprop": ("RMSprop", {"alpha": 0.99, "eps": 1e-7}),
    "Adam": ("Adam", {"eps": 1e-7}),
    "AdamW": ("AdamW", {}),
}


def make_step(impl: str, rule, n: int, layout: str, option: str = "plain", seed: int = 0):
    """One update of float32 params holding ``n`` elements in ``layout``:
    a zero-argument callable, or None where ``impl`` cannot run the case
    (torch not installed, no such torch class or mode, torch and an arena or
    an engine option)."""
    if option == "groups" and layout == "one":
        raise NotImplementedError("the groups case needs several keys: dict or arena")
    shapes = layout_shapes(n, layout, matrix=factored(rule))
    rng = np.random.default_rng(seed)
    params = _arrays(shapes, rng)
    grads = _arrays(shapes, rng, scale=1e-3)
    if impl in ("fastopt", "reference"):
        if layout.endswith("arena"):
            params, grads = _arena(params, grads)
        config = option_config(rule, option)
        try:
            opt = (rule.fast if impl == "fastopt" else rule.reference)(**config)
        except TypeError as exc:  # a commit without this option
            raise NotImplementedError(f"{rule.name}({config}): {exc}")
        step = lambda: opt.update(params, grads)  # noqa: E731
        step.optimizer = opt
        return step
    if layout.endswith("arena") or option != "plain":
        return None
    return _torch_step(impl, rule, params, grads)


def _torch_step(impl: str, rule, params: dict, grads: dict):
    try:
        import torch
    except ImportError:
        return None
    if rule.name in TORCH_CLASSES:
        cls_name, kwargs = TORCH_CLASSES[rule.name]
    elif getattr(rule, "torch_equivalent", None) is not None:
        cls_name, kwargs = rule.torch_equivalent, {}
    else:
        return None
    mode = impl.split("-")[1]
    flags = {"forloop": {"foreach": False}, "foreach": {"foreach": True}, "fused": {"fused": True}}[mode]
    tensors = []
    for k in params:
        t = torch.nn.Parameter(torch.from_numpy(params[k]))
        t.grad = torch.from_numpy(grads[k])
        tensors.append(t)
    try:
        opt = getattr(torch.optim, cls_name)(tensors, lr=rule.fast().lr, **kwargs, **flags)
        opt.step()
    except (TypeError, RuntimeError, ValueError):
        return None  # e.g. no fused RMSprop
    return opt.step


def make_roof_steps(rule, n: int, option: str = "plain") -> dict:
    """The case's roof, serial and parallel: {"roof-serial": ..., "roof-parallel": ...}."""
    option = traffic_of(option)
    return roofs.make_roofs(passes(rule, **option_config(rule, option)), n, state_format_of(option),
                            norm_pass=option == "clip_norm")


def throughput_steps(rule, n: int, layout: str, option: str = "plain", impls=IMPLEMENTATIONS,
                     roof: bool = True) -> dict:
    """Every implementation of the case that can run, and its roof."""
    steps = {}
    for impl in impls:
        step = make_step(impl, rule, n, layout, option)
        if step is not None:
            steps[impl] = step
    if roof:
        steps.update(make_roof_steps(rule, n, option))
    return steps


# -- the torch adapter ---------------------------------------------------------------

#: The torch adapter's cases: (name, tensor sizes, param dtype).
TORCH_ADAPTER_CASES = (
    ("1 tensor", (100_000,), "float32"),
    ("1 tensor", (1_000_000,), "float32"),
    ("1 tensor", (10_000_000,), "float32"),
    ("48 tensors", (100_000_000 // 48,) * 48, "float32"),
    ("200 tensors", (1_000,) * 200, "float32"),
    ("1 tensor bf16", (10_000_000,), "bfloat16"),
)


def torch_adapter_steps(sizes, dtype: str, rule_name: str = "AdamW") -> dict:
    """``fastopt.torch.<rule>`` against ``torch.optim.<rule>`` (fused and
    default), each on its own copy of the params, grads kept between steps.
    bf16 params: fastopt keeps fp32 master weights and writes the bf16 params
    from them; torch's optimizer steps an fp32 master copy (its grads widened
    from the bf16 grads first) and then copies it into the bf16 params, what
    a user does by hand.  NotImplementedError without torch or the adapter."""
    try:
        import torch

        import fastopt.torch as fastopt_torch
    except ImportError as exc:
        raise NotImplementedError(f"no torch adapter here: {exc}")
    rng = np.random.default_rng(0)
    values = [rng.standard_normal(n).astype(np.float32) for n in sizes]
    grads = [(rng.standard_normal(n) * 1e-3).astype(np.float32) for n in sizes]
    low = dtype == "bfloat16"

    def tensors():
        out = []
        for v, g in zip(values, grads):
            p = torch.nn.Parameter(torch.from_numpy(v.copy()))
            if low:
                p = torch.nn.Parameter(p.detach().to(torch.bfloat16))
            p.grad = torch.from_numpy(g.copy()).to(p.dtype)
            out.append(p)
        return out

    steps = {"fastopt": getattr(fastopt_torch, rule_name)(tensors(), lr=1e-3).step}
    for impl, flags in (("fused", {"fused": True}), ("default", {})):
        params = tensors()
        torch_class = getattr(torch.optim, rule_name)
        if low:
            masters = [torch.nn.Parameter(p.detach().float()) for p in params]
            for m, p in zip(masters, params):
                m.grad = p.grad.float()
            opt = torch_class(masters, lr=1e-3, **flags)

            def step(opt=opt, masters=masters, params=params):
                with torch.no_grad():
                    for m, p in zip(masters, params):
                        m.grad.copy_(p.grad)  # the bf16 grads, widened into the master's
                opt.step()
                with torch.no_grad():
                    for m, p in zip(masters, params):
                        p.copy_(m)
        else:
            step = torch_class(params, lr=1e-3, **flags).step
        steps[impl] = step
    return steps
