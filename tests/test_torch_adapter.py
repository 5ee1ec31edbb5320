"""fastopt.torch against torch.optim (torch 2.13, in the test extra) and
against fastopt's own NumPy references (bit for bit)."""

from __future__ import annotations

import copy
import subprocess
import sys

import numpy as np
import pytest
import torch

import fastopt.torch as ft
from fastopt import reference
from fastopt._lowp import reference_bits

#: Each class torch has, with the configurations compared: default, weight
#: decay, and amsgrad / maximize / the rule's structural options.
TORCH_CONFIGS = {
    "SGD": [dict(lr=0.05), dict(lr=0.05, momentum=0.9, dampening=0.1, weight_decay=0.01),
            dict(lr=0.05, momentum=0.9, nesterov=True, maximize=True)],
    "Adam": [dict(lr=0.01), dict(lr=0.01, weight_decay=0.1, amsgrad=True),
             dict(lr=0.01, weight_decay=0.1, decoupled_weight_decay=True, maximize=True)],
    "AdamW": [dict(lr=0.01), dict(lr=0.01, weight_decay=0.1, amsgrad=True, maximize=True)],
    "Adagrad": [dict(lr=0.1), dict(lr=0.1, lr_decay=0.01, initial_accumulator_value=0.1, weight_decay=0.01,
                                   maximize=True)],
    "RMSprop": [dict(lr=0.01), dict(lr=0.01, centered=True, momentum=0.9, weight_decay=0.01),
                dict(lr=0.01, momentum=0.5, maximize=True)],
    "NAdam": [dict(lr=0.01), dict(lr=0.01, weight_decay=0.1),
              dict(lr=0.01, weight_decay=0.1, decoupled_weight_decay=True, maximize=True)],
    "RAdam": [dict(lr=0.01), dict(lr=0.01, weight_decay=0.1),
              dict(lr=0.01, weight_decay=0.1, decoupled_weight_decay=True, maximize=True)],
    "Adamax": [dict(lr=0.01), dict(lr=0.01, weight_decay=0.1, maximize=True)],
    "Adadelta": [dict(lr=0.5), dict(lr=0.5, weight_decay=0.1, maximize=True)],
    "Adafactor": [dict(lr=0.01), dict(lr=0.01, weight_decay=0.1, maximize=True)],
}
CATALOGUE_CONFIGS = {
    "Lion": [dict(lr=0.001), dict(lr=0.001, weight_decay=0.5, maximize=True)],
    "LAMB": [dict(lr=0.01), dict(lr=0.01, weight_decay=0.1, maximize=True)],
}
CASES = [(name, i) for name, configs in TORCH_CONFIGS.items() for i in range(len(configs))]
SHAPES = [(), (7,), (5, 6), (2, 3, 4)]
STEPS = 100
#: float64: the issue's rtol; float32: torch's own suite between its implementations.
TOLERANCES = {torch.float64: dict(rtol=1e-12, atol=1e-15), torch.float32: dict(rtol=1.3e-6, atol=1e-5)}


@pytest.fixture
def float64_scalars():
    """torch keeps NAdam's ``mu_product`` in its default dtype: float64 here,
    as fastopt does (see fastopt.torch.NAdam)."""
    before = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    yield
    torch.set_default_dtype(before)


def make_params(dtype, seed=0):
    g = torch.Generator().manual_seed(seed)
    return [torch.nn.Parameter(torch.randn(s, dtype=dtype, generator=g)) for s in SHAPES]


def param_groups(params, config):
    """Two groups: the second with half the learning rate (and its own decay)."""
    second = {"params": params[2:], "lr": config.get("lr", 1e-3) * 0.5}
    if "weight_decay" in config:
        second["weight_decay"] = config["weight_decay"] * 2
    return [{"params": params[:2]}, second]


def grads_for(step, dtype, seed=1):
    g = torch.Generator().manual_seed(seed * 100_003 + step)
    return [torch.randn(s, dtype=dtype, generator=g) for s in SHAPES]


def run(optimizer, params, steps, dtype, first=0):
    for t in range(first, first + steps):
        for p, g in zip(params, grads_for(t, dtype)):
            p.grad = g
        optimizer.step()


def assert_params_close(actual, expected, dtype):
    for a, e in zip(actual, expected):
        torch.testing.assert_close(a.detach(), e.detach(), **TOLERANCES[dtype])


def torch_optimizer(name, groups, config):
    extra = {} if name == "Adafactor" else {"foreach": False}  # torch's single-tensor implementation
    return getattr(torch.optim, name)(groups, **config, **extra)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=["float64", "float32"])
@pytest.mark.parametrize("name,index", CASES, ids=[f"{n}-{i}" for n, i in CASES])
def test_agrees_with_torch(name, index, dtype, float64_scalars):
    config = TORCH_CONFIGS[name][index]
    expected, actual = make_params(dtype), make_params(dtype)
    theirs = torch_optimizer(name, param_groups(expected, config), config)
    ours = getattr(ft, name)(param_groups(actual, config), **config)
    run(theirs, expected, STEPS, dtype)
    run(ours, actual, STEPS, dtype)
    assert_params_close(actual, expected, dtype)
    for p, q in zip(actual, expected):
        mine, torchs = ours.state[p], theirs.state[q]
        assert set(mine) == set(torchs)
        for key, value in torchs.items():
            if torch.is_tensor(value):
                torch.testing.assert_close(mine[key].to(value.dtype), value, **TOLERANCES[dtype])


# -- bit for bit against fastopt's NumPy references ------------------------------------


def reference_for(name, config, groups):
    """The fastopt.reference class of the adapter's math, from torch-style arguments."""
    kwargs = {k: v for k, v in config.items() if k not in ("initial_accumulator_value",)}
    if "betas" in kwargs:
        kwargs["beta1"], kwargs["beta2"] = kwargs.pop("betas")
    cls = {"Adam": reference.TorchAdam, "Adagrad": reference.TorchAdagrad, "RMSprop": reference.TorchRMSprop}.get(
        name, getattr(reference, name, None))
    if name == "Adam" and kwargs.pop("decoupled_weight_decay", False):
        cls = reference.AdamW
    defaults = {"SGD": dict(lr=1e-3), "Adam": dict(weight_decay=0.0), "Adagrad": dict(eps=1e-10),
                "RMSprop": dict(eps=1e-8), "Adafactor": dict(lr=1e-2, beta2_decay=-0.8, eps2=1e-3, d=1.0),
                "NAdam": dict(lr=2e-3), "Adamax": dict(lr=2e-3), "Adadelta": dict(lr=1.0, eps=1e-6)}
    kwargs = {**defaults.get(name, {}), **kwargs}
    overrides = {k: v for k, v in groups[1].items() if k != "params"}
    n_first = len(groups[0]["params"])
    return cls(**kwargs, groups={"1.*": overrides}), n_first


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=["float64", "float32"])
@pytest.mark.parametrize("name,index", CASES + [(n, i) for n, c in CATALOGUE_CONFIGS.items() for i in range(len(c))],
                         ids=lambda v: str(v))
def test_matches_its_reference_bit_for_bit(name, index, dtype):
    config = {**TORCH_CONFIGS, **CATALOGUE_CONFIGS}[name][index]
    params = make_params(dtype)
    groups = param_groups(params, config)
    ours = getattr(ft, name)(groups, **config)
    ref, n_first = reference_for(name, config, groups)
    keys = [f"0.{j}" for j in range(n_first)] + [f"1.{j}" for j in range(len(SHAPES) - n_first)]
    arrays = {k: p.detach().numpy().copy() for k, p in zip(keys, params)}
    if "initial_accumulator_value" in config:
        ref.store["h"] = {k: np.full(a.shape, config["initial_accumulator_value"], a.dtype)
                          for k, a in arrays.items()}
    for t in range(12):
        grads = grads_for(t, dtype)
        for p, g in zip(params, grads):
            p.grad = g
        ours.step()
        ref.update(arrays, {k: g.numpy() for k, g in zip(keys, grads)})
    for k, p in zip(keys, params):
        assert np.array_equal(p.detach().numpy(), arrays[k]), k


# -- checkpoints in torch's format, both ways ---------------------------------------


@pytest.mark.parametrize("name", list(TORCH_CONFIGS))
def test_state_dict_moves_between_torch_and_fastopt(name, float64_scalars):
    dtype = torch.float64
    config = TORCH_CONFIGS[name][-1]

    def build(module, params):
        if module is torch.optim:
            return torch_optimizer(name, param_groups(params, config), config)
        return getattr(ft, name)(param_groups(params, config), **config)

    for first, second in ((torch.optim, ft), (ft, torch.optim)):
        straight = make_params(dtype)
        uninterrupted = build(first, straight)
        run(uninterrupted, straight, 10, dtype)

        resumed = make_params(dtype)
        before = build(first, resumed)
        run(before, resumed, 5, dtype)
        saved = copy.deepcopy(before.state_dict())
        after = build(second, resumed)
        after.load_state_dict(saved)
        run(after, resumed, 5, dtype, first=5)
        assert_params_close(resumed, straight, dtype)


def test_fastopt_checkpoint_resumes_bit_for_bit():
    straight = make_params(torch.float32)
    opt = ft.AdamW(param_groups(straight, {}), lr=0.01, amsgrad=True)
    run(opt, straight, 10, torch.float32)
    resumed = make_params(torch.float32)
    before = ft.AdamW(param_groups(resumed, {}), lr=0.01, amsgrad=True)
    run(before, resumed, 5, torch.float32)
    saved = copy.deepcopy(before.state_dict())
    after = ft.AdamW(param_groups(resumed, {}), lr=0.01, amsgrad=True)
    after.load_state_dict(saved)
    run(after, resumed, 5, torch.float32, first=5)
    for a, b in zip(resumed, straight):
        assert torch.equal(a, b)


def test_state_dict_steps_are_copies():
    params = make_params(torch.float32)
    opt = ft.Adam(params)
    run(opt, params, 3, torch.float32)
    saved = opt.state_dict()
    run(opt, params, 2, torch.float32, first=3)
    assert float(saved["state"][0]["step"]) == 3.0
    assert float(opt.state[params[0]]["step"]) == 5.0


# -- schedulers, closures, missing grads, new groups --------------------------------


SCHEDULERS = {
    "StepLR": lambda opt: torch.optim.lr_scheduler.StepLR(opt, step_size=3, gamma=0.5),
    "CosineAnnealingLR": lambda opt: torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=10),
    "OneCycleLR": lambda opt: torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=0.05, total_steps=20),
    "LambdaLR": lambda opt: torch.optim.lr_scheduler.LambdaLR(opt, lambda epoch: 1.0 / (1 + epoch)),
}


@pytest.mark.parametrize("scheduler", list(SCHEDULERS))
def test_lr_schedulers(scheduler):
    dtype = torch.float64
    results = []
    for module in (torch.optim, ft):
        params = make_params(dtype)
        opt = module.AdamW(param_groups(params, {"lr": 0.01}), lr=0.01)
        sched = SCHEDULERS[scheduler](opt)
        for t in range(20):
            for p, g in zip(params, grads_for(t, dtype)):
                p.grad = g
            opt.step()
            sched.step()
        results.append(params)
    assert_params_close(results[1], results[0], dtype)


def test_closure_is_called_with_grad_enabled():
    params = make_params(torch.float64)
    opt = ft.SGD(params, lr=0.1)
    target = [torch.ones(s, dtype=torch.float64) for s in SHAPES]

    def closure():
        opt.zero_grad()
        assert torch.is_grad_enabled()
        loss = sum(((p - t) ** 2).sum() for p, t in zip(params, target))
        loss.backward()
        return loss

    first = opt.step(closure)
    second = opt.step(closure)
    assert float(second.detach()) < float(first.detach())


def test_params_without_grads_are_skipped_like_torch():
    dtype = torch.float64
    results = []
    for module in (torch.optim, ft):
        params = make_params(dtype)
        opt = module.Adam(param_groups(params, {}), lr=0.01, foreach=False)
        for t in range(8):
            for k, (p, g) in enumerate(zip(params, grads_for(t, dtype))):
                # param 1 has no grad at steps 2-4; param 3 only from step 5
                p.grad = None if (k == 1 and 2 <= t <= 4) or (k == 3 and t < 5) else g
            opt.step()
        results.append((params, [opt.state[p].get("step") for p in params]))
    (expected, expected_steps), (actual, actual_steps) = results
    assert_params_close(actual, expected, dtype)
    assert [float(s) for s in actual_steps] == [float(s) for s in expected_steps] == [8, 5, 8, 3]


def test_a_param_never_given_a_grad_has_no_state():
    params = make_params(torch.float32)
    opt = ft.AdamW(params)
    frozen = params[0].detach().clone()
    for t in range(3):
        for p, g in zip(params[1:], grads_for(t, torch.float32)[1:]):
            p.grad = g
        opt.step()
    assert not opt.state.get(params[0])
    assert torch.equal(params[0].detach(), frozen)


def test_add_param_group():
    dtype = torch.float64
    results = []
    for module in (torch.optim, ft):
        params = make_params(dtype)
        opt = module.RMSprop([params[0], params[1]], lr=0.01, momentum=0.9, foreach=False)
        run(opt, params[:2], 3, dtype)
        opt.add_param_group({"params": params[2:], "lr": 0.002})
        for t in range(3, 8):
            for p, g in zip(params, grads_for(t, dtype)):
                p.grad = g
            opt.step()
        results.append(params)
    assert_params_close(results[1], results[0], dtype)


def test_mixed_dtypes_in_one_group():
    results = []
    for module in (torch.optim, ft):
        params = [torch.nn.Parameter(torch.ones(4, dtype=torch.float64)),
                  torch.nn.Parameter(torch.ones(3, dtype=torch.float32))]
        opt = module.Adam(params, lr=0.1)
        for t in range(5):
            params[0].grad = torch.full((4,), 0.5 + t, dtype=torch.float64)
            params[1].grad = torch.full((3,), -0.25 * t, dtype=torch.float32)
            opt.step()
        results.append(params)
    for a, b in zip(*results):
        torch.testing.assert_close(a.detach(), b.detach())


def test_updates_the_params_own_memory():
    params = make_params(torch.float32)
    pointers = [p.data_ptr() for p in params]
    opt = ft.Adam(params, lr=0.1)
    run(opt, params, 2, torch.float32)
    state = opt.state[params[2]]["exp_avg"]
    before = state.clone()
    with torch.no_grad():
        params[2].add_(1.0)  # a write the next step must see
    copy_of = params[2].detach().clone()
    run(opt, params, 1, torch.float32, first=2)
    assert [p.data_ptr() for p in params] == pointers
    assert not torch.equal(state, before)  # the state tensor is the live buffer
    assert not torch.equal(params[2].detach(), copy_of)


def test_deepcopy_continues_identically():
    params = make_params(torch.float32)
    opt = ft.AdamW(params, lr=0.01)
    run(opt, params, 3, torch.float32)
    twin_params = [torch.nn.Parameter(p.detach().clone()) for p in params]
    twin = ft.AdamW(twin_params, lr=0.01)
    twin.load_state_dict(copy.deepcopy(opt.state_dict()))
    run(opt, params, 3, torch.float32, first=3)
    run(twin, twin_params, 3, torch.float32, first=3)
    for a, b in zip(params, twin_params):
        assert torch.equal(a, b)


# -- low-precision params: fp32 master weights -----------------------------------------


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16], ids=["bfloat16", "float16"])
def test_low_precision_params_keep_fp32_masters(dtype):
    masters_run = make_params(torch.float32)
    low = [torch.nn.Parameter(p.detach().to(dtype)) for p in masters_run]
    exact = [torch.nn.Parameter(p.detach().to(dtype).to(torch.float32)) for p in masters_run]
    ours = ft.AdamW(low, lr=0.01)
    fp32 = ft.AdamW(exact, lr=0.01)
    for t in range(20):
        for p, q, g in zip(low, exact, grads_for(t, torch.float32)):
            p.grad = g.to(dtype)
            q.grad = g.to(dtype).to(torch.float32)  # the same grads, widened
        ours.step()
        fp32.step()
    for p, q in zip(low, exact):
        master = ours.state[p]["master_param"]
        assert master.dtype == torch.float32
        assert torch.equal(master, q.detach())  # the master is the fp32 run, bit for bit
        assert torch.equal(p.detach(), master.to(dtype))  # the param is its master, rounded to nearest even
    saved = ours.state_dict()
    assert saved["state"][2]["master_param"].dtype == torch.float32


# -- autograd, errors, imports ------------------------------------------------------------


@pytest.mark.parametrize("cls", [torch.optim.AdamW, ft.AdamW], ids=["torch", "fastopt"])
def test_a_step_between_forward_and_backward_is_caught(cls):
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.Tanh(), torch.nn.Linear(8, 1))
    opt = cls(model.parameters(), lr=0.1)
    x = torch.randn(5, 4)
    model(x).sum().backward()
    loss = model(x).sum()
    opt.step()
    with pytest.raises(RuntimeError, match="modified by an inplace operation"):
        loss.backward()


def test_bad_params_raise_clear_errors():
    with pytest.raises(ValueError, match=r"param_groups\[0\]\['params'\]\[0\] is on device 'meta'"):
        ft.Adam([torch.nn.Parameter(torch.zeros(3, device="meta"))])
    with pytest.raises(ValueError, match="complex"):
        ft.Adam([torch.nn.Parameter(torch.zeros(3, dtype=torch.complex64))])
    with pytest.raises(ValueError, match="not contiguous"):
        ft.Adam([torch.nn.Parameter(torch.zeros(4, 3).t())])
    with pytest.raises(ValueError, match="capturable=True is not supported"):
        ft.Adam([torch.nn.Parameter(torch.zeros(3))], capturable=True)
    with pytest.raises(ValueError, match="Invalid learning rate"):
        ft.AdamW([torch.nn.Parameter(torch.zeros(3))], lr=-1.0)
    with pytest.raises(ValueError, match=r"param_groups\[1\] has \{'amsgrad': True"):
        ft.Adam([{"params": [torch.nn.Parameter(torch.zeros(2))]},
                 {"params": [torch.nn.Parameter(torch.zeros(2))], "amsgrad": True}])


def test_sparse_grads_are_refused_before_anything_changes():
    dense = torch.nn.Parameter(torch.ones(4))
    sparse = torch.nn.Parameter(torch.ones(5))
    opt = ft.Adam([dense, sparse], lr=0.1)
    dense.grad = torch.ones(4)
    sparse.grad = torch.ones(5).to_sparse()
    with pytest.raises(RuntimeError, match=r"sparse gradients \(param_groups\[0\]\['params'\]\[1\]\)"):
        opt.step()
    assert torch.equal(dense.detach(), torch.ones(4))


def test_import_fastopt_does_not_import_torch():
    code = "import sys, fastopt; fastopt.AdamW(); print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_missing_torch_gives_a_clear_message():
    code = "import sys; sys.modules['torch'] = None\nimport fastopt.torch"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode != 0
    assert "fastopt.torch needs PyTorch" in out.stderr


def test_params_given_new_memory_are_followed():
    dtype = torch.float64
    results = []
    for module in (torch.optim, ft):
        params = make_params(dtype)
        opt = module.Adam(params, lr=0.01)
        run(opt, params, 3, dtype)
        with torch.no_grad():
            params[1].data = params[1].data.clone() * 2  # new memory, as module.to() does
        run(opt, params, 3, dtype, first=3)
        results.append(params)
    assert_params_close(results[1], results[0], dtype)


def test_step_hooks_run():
    params = make_params(torch.float32)
    opt = ft.SGD(params, lr=0.1)
    calls = []
    opt.register_step_pre_hook(lambda o, args, kwargs: calls.append("pre"))
    opt.register_step_post_hook(lambda o, args, kwargs: calls.append("post"))
    run(opt, params, 2, torch.float32)
    assert calls == ["pre", "post", "pre", "post"]


def test_low_precision_checkpoint_keeps_the_fp32_masters():
    def bf16_params():
        return [torch.nn.Parameter(p.detach().to(torch.bfloat16)) for p in make_params(torch.float32)]

    straight = bf16_params()
    opt = ft.AdamW(straight, lr=0.01)
    run(opt, straight, 10, torch.bfloat16)
    resumed = bf16_params()
    before = ft.AdamW(resumed, lr=0.01)
    run(before, resumed, 5, torch.bfloat16)
    saved = copy.deepcopy(before.state_dict())
    after = ft.AdamW(resumed, lr=0.01)
    after.load_state_dict(saved)
    assert after.state[resumed[2]]["master_param"].dtype == torch.float32
    run(after, resumed, 5, torch.bfloat16, first=5)
    for a, b in zip(resumed, straight):
        assert torch.equal(a, b)
        assert torch.equal(after.state[a]["master_param"], opt.state[b]["master_param"])


def test_a_bad_grad_of_one_dtype_stops_every_dtype():
    first = torch.nn.Parameter(torch.ones(4, dtype=torch.float64))
    second = torch.nn.Parameter(torch.ones(5, dtype=torch.float32))
    opt = ft.Adam([first, second], lr=0.1)
    first.grad = torch.ones(4, dtype=torch.float64)
    second.grad = torch.ones(5)
    opt.step()  # the engines exist: the check below is the per-step one
    before = first.detach().clone()
    second.grad = torch.ones(5).to_sparse()
    with pytest.raises(RuntimeError, match="sparse gradients"):
        opt.step()
    assert torch.equal(first.detach(), before)
    assert float(opt.state[first]["step"]) == 1.0


def test_low_precision_params_written_outside_the_optimizer_are_followed():
    p = torch.nn.Parameter(torch.ones(6, dtype=torch.bfloat16))
    opt = ft.SGD([p], lr=0.0)
    p.grad = torch.ones(6, dtype=torch.bfloat16)
    opt.step()
    with torch.no_grad():
        p.fill_(5.0)  # in place: the same memory
    opt.step()
    assert torch.equal(p.detach(), torch.full((6,), 5.0, dtype=torch.bfloat16))
    p.data = torch.full((6,), 7.0, dtype=torch.bfloat16)  # new memory
    p.grad = torch.ones(6, dtype=torch.bfloat16)
    opt.step()
    assert torch.equal(p.detach(), torch.full((6,), 7.0, dtype=torch.bfloat16))
    assert torch.equal(opt.state[p]["master_param"], torch.full((6,), 7.0))


def test_a_tensor_lr_filled_by_a_scheduler():
    results = []
    for module in (torch.optim, ft):
        params = make_params(torch.float64)
        opt = module.SGD(params, lr=torch.tensor(0.1))
        sched = torch.optim.lr_scheduler.StepLR(opt, step_size=1, gamma=0.1)
        for t in range(3):
            for p, g in zip(params, grads_for(t, torch.float64)):
                p.grad = g
            opt.step()
            sched.step()
        results.append(params)
    assert_params_close(results[1], results[0], torch.float64)


@pytest.mark.parametrize("option,value", [("maximize", True), ("amsgrad", True)])
def test_options_that_choose_the_kernel_cannot_change_after_the_first_step(option, value):
    params = make_params(torch.float32)
    opt = ft.Adam(params, lr=0.01)
    run(opt, params, 1, torch.float32)
    opt.param_groups[0][option] = value
    before = [p.detach().clone() for p in params]
    for _ in range(2):  # and it keeps saying so
        with pytest.raises(ValueError, match="cannot change after the first step"):
            run(opt, params, 1, torch.float32, first=1)
    assert all(torch.equal(a, b.detach()) for a, b in zip(before, params))


def test_replaced_param_lists_are_followed():
    results = []
    for module in (torch.optim, ft):
        x, y = torch.nn.Parameter(torch.zeros(3)), torch.nn.Parameter(torch.zeros(3))
        opt = module.SGD([x], lr=1.0)
        x.grad = torch.ones(3)
        opt.step()
        opt.param_groups[0]["params"] = [y]
        y.grad = torch.ones(3)
        opt.step()
        results.append((x.detach().clone(), y.detach().clone()))
    for a, b in zip(*results):
        assert torch.equal(a, b)


def test_a_refused_param_group_is_not_kept():
    opt = ft.Adam([torch.nn.Parameter(torch.zeros(2))])
    with pytest.raises(ValueError, match="must agree"):
        opt.add_param_group({"params": [torch.nn.Parameter(torch.zeros(2))], "amsgrad": True})
    assert len(opt.param_groups) == 1


def test_sgd_returns_to_one_kernel_call_after_a_late_param():
    params = make_params(torch.float32)
    opt = ft.SGD(params, lr=0.1, momentum=0.9)
    for t in range(4):
        for k, (p, g) in enumerate(zip(params, grads_for(t, torch.float32))):
            p.grad = None if (k == 0 and t < 2) else g
        opt.step()
    (engine,) = opt._engines
    assert engine.steps.uniform  # SGD only asks whether a param has stepped


def test_hooks_see_the_arguments_torch_passes():
    seen = []
    for module in (torch.optim, ft):
        params = make_params(torch.float32)
        opt = module.SGD(params, lr=0.1)
        opt.register_step_pre_hook(lambda o, args, kwargs: seen.append((len(args), dict(kwargs))))
        run(opt, params, 1, torch.float32)
    assert seen[0] == seen[1]


def test_a_state_dict_whose_groups_lack_newer_keys():
    # torch releases before decoupled_weight_decay (and fused, ...) saved no such keys
    params = make_params(torch.float32)
    opt = ft.Adam(params, lr=0.01)
    run(opt, params, 2, torch.float32)
    saved = copy.deepcopy(opt.state_dict())
    for key in ("decoupled_weight_decay", "fused", "capturable"):
        del saved["param_groups"][0][key]
    resumed = ft.Adam(params, lr=0.01)
    resumed.load_state_dict(saved)
    run(resumed, params, 2, torch.float32, first=2)
    assert float(resumed.state[params[0]]["step"]) == 4.0


@pytest.mark.parametrize("cls, rule", [("AdamW", "AdamW"), ("Adagrad", "TorchAdagrad"), ("RMSprop", "TorchRMSprop")])
def test_bfloat16_state_is_the_engines_and_loads_into_torch(cls, rule):
    """state_dtype="bfloat16": the state tensors are torch bfloat16 on the
    engine's bits, the steps are the reference's with bfloat16 state, and the
    state dict loads into torch.optim and back."""
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(20, 30), torch.nn.ReLU(), torch.nn.Linear(30, 3))
    params = list(model.parameters())
    ref_params = {f"0.{j}": p.detach().numpy().copy() for j, p in enumerate(params)}
    kwargs = {"AdamW": {}, "Adagrad": {"initial_accumulator_value": 0.1}, "RMSprop": {"centered": True}}[cls]
    opt = getattr(ft, cls)(params, lr=1e-2, state_dtype="bfloat16", **kwargs)
    ref_kwargs = {"AdamW": dict(weight_decay=1e-2, eps=1e-8), "Adagrad": dict(), "RMSprop": dict(centered=True)}[cls]
    ref = getattr(reference, rule)(lr=1e-2, state_dtype="bfloat16", **ref_kwargs)
    if cls == "Adagrad":  # torch's initial accumulator, as the engine's first stored state
        ref.store["h"] = {k: reference_bits(np.full(v.shape, 0.1, np.float32)) for k, v in ref_params.items()}
    x, y = torch.randn(64, 20), torch.randint(0, 3, (64,))
    for _ in range(8):
        opt.zero_grad()
        torch.nn.functional.cross_entropy(model(x), y).backward()
        grads = {f"0.{j}": p.grad.numpy().copy() for j, p in enumerate(params)}
        opt.step()
        ref.update(ref_params, grads)
    for j, p in enumerate(params):
        assert np.array_equal(p.detach().numpy(), ref_params[f"0.{j}"])
    name, torch_name = next(iter(opt._state_names.items()))
    state = opt.state[params[0]][torch_name]
    assert state.dtype == torch.bfloat16
    assert np.array_equal(state.view(torch.int16).numpy().view(np.uint16), ref.state[name]["0.0"])

    plain = getattr(torch.optim, cls)(params, lr=1e-2, **kwargs)
    plain.load_state_dict(opt.state_dict())
    back = getattr(ft, cls)(params, lr=1e-2, state_dtype="bfloat16", **kwargs)
    back.load_state_dict(plain.state_dict())
    back.step()  # adopts the widened state, rounded again to the same bits
    assert back.state[params[0]][torch_name].dtype == torch.bfloat16


def test_float64_state_of_float32_params_resumes_exactly():
    """torch's load_state_dict casts state to the param's dtype; float64
    moments of float32 params are put back as saved."""
    torch.manual_seed(1)
    p = torch.nn.Parameter(torch.randn(50))
    q = torch.nn.Parameter(p.detach().clone())
    grads = [torch.randn(50) for _ in range(6)]
    whole = ft.Adam([p], lr=1e-2, state_dtype="float64")
    for g in grads:
        p.grad = g.clone()
        whole.step()
    first = ft.Adam([q], lr=1e-2, state_dtype="float64")
    for g in grads[:3]:
        q.grad = g.clone()
        first.step()
    resumed = ft.Adam([q], lr=1e-2, state_dtype="float64")
    resumed.load_state_dict(first.state_dict())
    assert resumed.state[q]["exp_avg"].dtype == torch.float64
    for g in grads[3:]:
        q.grad = g.clone()
        resumed.step()
    assert torch.equal(p, q)
    assert torch.equal(whole.state[p]["exp_avg_sq"], resumed.state[q]["exp_avg_sq"])


def test_int8_state_is_refused_with_the_way_to_get_it():
    with pytest.raises(ValueError, match="int8.*fastopt.AdamW"):
        ft.AdamW([torch.nn.Parameter(torch.zeros(3))], state_dtype="int8")
    with pytest.raises(ValueError, match="state_dtype"):
        ft.AdamW([torch.nn.Parameter(torch.zeros(3))], state_dtype="float16")
