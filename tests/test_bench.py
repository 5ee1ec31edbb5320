"""The benchmark harness (``fastopt_bench``, beside the package): its cases
come from the registry and its capabilities, it runs on the engine, and its
book-style baselines are the book's math: the book's-loop case on a tiny
net, the book classes against fastopt bit for bit (float64, fresh grads
every step), the CLI and its entry point."""

from __future__ import annotations

import math
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from fastopt.registry import BY_NAME, RULES
from fastopt_bench import book as bench_book
from fastopt_bench import cases, cli, measure, report

TINY_NET = (12, (8, 6), 4)
STEPS = 50


def test_book_loop_gives_finite_positive_ratios_for_every_rule():
    results = measure.book_loop(RULES, nets=[TINY_NET], rounds=2, progress=False, batch_seconds=0.001)
    assert [r.case for r in results] == bench_book.book_cases()
    for r in results:
        assert r.net == "12-8-6-4" and r.rounds == 2
        assert r.n_params == 12 * 8 + 8 + 8 * 6 + 6 + 6 * 4 + 4
        for seconds in (r.fastopt_seconds, r.baseline_seconds, r.ratio):
            assert math.isfinite(seconds) and seconds > 0, r
        book = r.case in bench_book.BOOK_CLASSES or r.case == bench_book.SHARED_SGD
        assert r.baseline == ("book" if book else "fastopt.reference"), r
        for faults in (r.fastopt_faults, r.baseline_faults):
            assert faults is None or faults >= 0
    text = "\n".join(report.book_loop_report(results))
    markdown = report.book_loop_markdown(results, report.environment())
    for rule in RULES:
        assert rule.name in text and f"| {rule.name} |" in markdown
    assert markdown.count("\n|") == 2 + len(results)  # header, its rule, a row per case (one net)


def _fresh_grad_stream(params, seed):
    rng = np.random.default_rng(seed)
    for _ in range(STEPS):
        # a new dict of new arrays every step, as network.gradient returns
        yield {k: rng.standard_normal(p.shape) * 0.1 for k, p in params.items()}


def _train_both(rule_name):
    fast_params = bench_book.book_net_params(TINY_NET, seed=3)
    book_params = {k: v.copy() for k, v in fast_params.items()}
    fast, book = BY_NAME[rule_name].fast(), bench_book.BOOK_CLASSES[rule_name]()
    for grads in _fresh_grad_stream(fast_params, seed=4):
        fast.update(fast_params, grads)
        book.update(book_params, {k: g.copy() for k, g in grads.items()})
    for k in fast_params:
        assert fast_params[k].dtype == np.float64
    return fast_params, book_params


@pytest.mark.parametrize("rule_name", ["SGD", "Momentum", "Nesterov", "AdaGrad", "RMSprop"])
def test_book_classes_are_bit_identical_to_fastopt(rule_name):
    fast_params, book_params = _train_both(rule_name)
    initial = bench_book.book_net_params(TINY_NET, seed=3)
    for k in fast_params:
        assert fast_params[k].tobytes() == book_params[k].tobytes(), (rule_name, k)
        assert not np.array_equal(fast_params[k], initial[k]), k  # the steps did something


def test_book_adam_agrees_with_fastopt():
    # Close, not bit-identical by contract: the book squares with grads**2 and
    # keeps lr_t a NumPy float64 from np.sqrt, where fastopt's kernel squares
    # by g * g and computes lr_t in Python floats rounded to the arithmetic
    # dtype.  In float64 with current NumPy the two happen to round alike
    # (x**2 is computed as x*x), but fastopt only promises bit-identity with
    # fastopt.reference.Adam, so this checks closeness.
    fast_params, book_params = _train_both("Adam")
    for k in fast_params:
        np.testing.assert_allclose(fast_params[k], book_params[k], rtol=1e-12, atol=1e-15, err_msg=k)


def test_shared_sgd_is_bit_identical_to_the_books():
    # One fastopt SGD stepping three networks in turn (weight_init_compare.py).
    fast_nets = [bench_book.book_net_params(TINY_NET, seed=i) for i in range(3)]
    book_nets = [{k: v.copy() for k, v in p.items()} for p in fast_nets]
    fast, book = BY_NAME["SGD"].fast(), bench_book.BookSGD()
    streams = [_fresh_grad_stream(p, seed=10 + i) for i, p in enumerate(fast_nets)]
    for _ in range(STEPS):
        for fast_params, book_params, stream in zip(fast_nets, book_nets, streams):
            grads = next(stream)
            fast.update(fast_params, grads)
            book.update(book_params, {k: g.copy() for k, g in grads.items()})
    for fast_params, book_params in zip(fast_nets, book_nets):
        for k in fast_params:
            assert fast_params[k].tobytes() == book_params[k].tobytes(), k


def test_book_baselines_cover_the_registry():
    book_rules = {"SGD", "Momentum", "Nesterov", "AdaGrad", "RMSprop", "Adam"}
    assert set(bench_book.BOOK_CLASSES) == book_rules
    for rule in RULES:
        label, cls = bench_book.book_baseline(rule)
        assert (label, cls) == (("book", bench_book.BOOK_CLASSES[rule.name]) if rule.name in book_rules
                                else ("fastopt.reference", rule.reference))


def test_book_loop_step_times_only_the_update_with_fresh_grads():
    seen = []

    class Recorder:
        def update(self, params, grads):
            seen.append(grads)

    params = bench_book.book_net_params(TINY_NET)
    base = bench_book.base_grads(params)
    step = bench_book.BookLoopStep(Recorder(), [(params, base), (params, base)])
    assert step() >= 0 and step() >= 0
    assert step.calls == 2 and step.faults >= 0
    step.reset_counters()
    assert step.calls == step.faults == 0
    assert len(seen) == 4 and len({id(g) for g in seen}) == 4
    for grads in seen:
        assert grads.keys() == base.keys()
        for k, g in grads.items():
            assert g is not base[k] and np.array_equal(g, base[k])


def test_throughput_run_and_roofs_on_the_engine():
    results = measure.throughput([BY_NAME["Adam"], BY_NAME["SGD"]], [1000], ["one"], rounds=1, progress=False, mlp=False)
    by = {(r.rule, r.impl): r for r in results}
    # torch is in the test extra: its implementations join the table
    torch_impls = {"torch-forloop", "torch-foreach", "torch-fused"}
    assert {impl for _, impl in by} == {"fastopt", "reference", "roof"} | torch_impls
    for r in results:
        assert r.seconds > 0 and r.gb_per_s > 0
    assert by[("Adam", "roof")].gb_per_s == pytest.approx(1000 * 28 / by[("Adam", "roof")].seconds / 1e9)


def test_cli_book_case_only(tmp_path, capsys):
    markdown = tmp_path / "summary.md"
    assert cli.main(["--rules", "SGD,Adam", "--cases", "book", "--book-rounds", "1",
                       "--markdown", str(markdown)]) == 0
    out = capsys.readouterr().out
    assert "the book's loop" in out and "throughput" not in out
    table = markdown.read_text()
    for case in ("SGD", "Adam", bench_book.SHARED_SGD):
        assert f"| {case} | book |" in table
    assert "Momentum" not in table


def test_cli_rejects_unknown_rules_and_cases():
    with pytest.raises(SystemExit):
        cli.main(["--rules", "SGD,NoSuchRule"])
    with pytest.raises(SystemExit):
        cli.main(["--cases", "books"])


def test_torch_adapter_case_runs():
    todo = (("1 tensor", (1000,), "float32"), ("3 tensors bf16", (10, 20, 30), "bfloat16"))
    results = measure.torch_adapter(rounds=1, todo=todo, progress=False)
    assert [(r.case, r.n, r.dtype) for r in results] == [("1 tensor", 1000, "float32"),
                                                       ("3 tensors bf16", 60, "bfloat16")]
    assert all(r.seconds > 0 and r.x_fused > 0 and r.x_default > 0 for r in results)
    text = "\n".join(report.torch_adapter_report(results, report.environment()))
    assert "x fused" in text and "3 tensors bf16" in text


def test_cli_state_case(capsys):
    assert cli.main(["--cases", "state", "--sizes", "3000", "--rounds", "1", "--rules", "AdamW"]) == 0
    out = capsys.readouterr().out
    assert "state formats" in out and "throughput" not in out
    rows = [line.split() for line in out.splitlines() if line.startswith("AdamW ")]
    assert [r[3] for r in rows] == ["plain", "state=bfloat16", "state=int8"]
    per_element = {r[3]: float(r[-2]) for r in rows}
    per_param = {r[3]: float(r[-1]) for r in rows}
    assert per_element == {"plain": 28.0, "state=bfloat16": 20.0, "state=int8": 16.1}
    assert per_param["plain"] == 8.0 and per_param["state=bfloat16"] == 4.0 and per_param["state=int8"] <= 2.1


def test_cases_follow_the_registry_and_its_capabilities():
    assert cases.rule_names() == [rule.name for rule in RULES]
    for rule in RULES:
        offered = cases.options(rule)
        assert offered[:5] == ("plain", "clip_norm", "groups", "maximize", "schedule")
        assert offered[5:] == tuple(f"state={f}" for f in rule.state_dtypes[1:])
        for state_format in ("bfloat16", "int8"):
            accepted = True
            try:
                rule.fast(state_dtype=state_format)
            except Exception:
                accepted = False
            assert (f"state={state_format}" in offered) == (accepted and bool(rule.math.state_names)), rule.name
    assert cases.options(BY_NAME["Adafactor"]) == ("plain", "clip_norm", "groups", "maximize", "schedule")
    assert "state=int8" not in cases.options(BY_NAME["LAMB"]) and "state=int8" in cases.options(BY_NAME["Lion"])


def test_bytes_per_element_per_case():
    adam, lamb = BY_NAME["Adam"], BY_NAME["LAMB"]
    assert cases.bytes_per_element(adam) == adam.bytes_per_element(4) == 28
    assert cases.bytes_per_element(adam, "clip_norm") == 32  # the norm reads the grads once more
    assert cases.bytes_per_element(adam, "state=bfloat16") == 20
    assert cases.bytes_per_element(adam, "state=int8") == 12 + 4 * (1 + 4 / 256)
    assert cases.bytes_per_element(lamb) == lamb.bytes_per_element(4) == 44
    assert cases.bytes_per_element(lamb, "state=bfloat16") == 44 - 6 * 2  # m, v read twice, written once
    assert cases.bytes_per_element(BY_NAME["Adafactor"]) == 24
    for option in cases.SAME_TRAFFIC:  # the per-update Python differs, not the traffic
        assert cases.bytes_per_element(adam, option) == 28 and cases.traffic_of(option) == "plain"


def test_option_cases_run_with_their_roofs():
    results = measure.option_cases([BY_NAME["Lion"], BY_NAME["SGD"]], [3000], "arena", rounds=1, progress=False)
    assert [(r.rule, r.option) for r in results] == (
        [("Lion", o) for o in cases.options(BY_NAME["Lion"])] + [("SGD", o) for o in cases.options(BY_NAME["SGD"])])
    for r in results:
        assert r.seconds > 0 and r.x_plain > 0 and r.pct_of_roof > 0, r
    by = {(r.rule, r.option): r for r in results}
    assert by[("Lion", "state=int8")].state_bytes_per_param < 1.1 < by[("Lion", "plain")].state_bytes_per_param
    assert by[("SGD", "plain")].state_bytes_per_param == 0
    assert len(cases.option_config(BY_NAME["SGD"], "groups")["groups"]) == 3  # three groups besides the defaults
    with pytest.raises(NotImplementedError):
        cases.make_step("fastopt", BY_NAME["Adam"], 1000, "one", "groups")  # one key: no second group
    # ... which the option cases leave out rather than fail
    one = measure.option_case(BY_NAME["SGD"], 1000, "one", ["groups", "schedule"], rounds=1)
    assert [r.option for r in one] == ["plain", "schedule"]


def test_bench_entry_point_without_a_checkout_says_where_the_harness_is(tmp_path):
    # An installed wheel has fastopt but no fastopt_bench beside it.
    shutil.copytree(Path(cli.__file__).resolve().parents[1] / "fastopt", tmp_path / "site" / "fastopt",
                    ignore=shutil.ignore_patterns("__pycache__"))
    import numba

    # -S: no site-packages .pth files (an editable install's would put the
    # checkout on the path); numpy and numba from where they are installed.
    path = [str(tmp_path / "site"), *{str(Path(m.__file__).resolve().parents[1]) for m in (np, numba)}]
    run = subprocess.run([sys.executable, "-S", "-m", "fastopt", "bench", "--help"], cwd=tmp_path,
                         env={"PYTHONPATH": ":".join(path), "PATH": "/usr/bin:/bin"},
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 2, run.stderr
    assert "fastopt_bench/" in run.stderr and "clone" in run.stderr


def test_book_loop_runs_the_2d_example_with_python_floats():
    results = measure.book_loop([BY_NAME["SGD"], BY_NAME["Adam"]], nets=[bench_book.TWO_D], rounds=2,
                                progress=False, batch_seconds=0.001)
    assert [r.case for r in results] == ["SGD", "Adam", bench_book.SHARED_SGD]
    for r in results:
        assert r.net == bench_book.TWO_D and r.n_params == 2 and r.floor == bench_book.TWO_D_FLOOR
        assert math.isfinite(r.ratio) and r.ratio > 0
    assert bench_book.book_floor("SGD", TINY_NET) == bench_book.BOOK_FLOOR


@pytest.mark.parametrize("rule_name", ["SGD", "Momentum", "Nesterov", "AdaGrad", "RMSprop"])
def test_the_books_2d_example_bit_for_bit(rule_name):
    # optimizer_compare_naive.py: f(x, y) = x**2 / 20 + y**2 from (-7, 2),
    # params and grads Python floats, 30 steps (SGD, Momentum and Nesterov
    # step in the interpreter, the others in the kernel).
    lr = {"SGD": 0.95, "Momentum": 0.1, "Nesterov": 0.1, "AdaGrad": 1.5, "RMSprop": 0.1}[rule_name]
    fast, book = BY_NAME[rule_name].fast(lr=lr), bench_book.BOOK_CLASSES[rule_name](lr=lr)
    fast_params, book_params = {"x": -7.0, "y": 2.0}, {"x": -7.0, "y": 2.0}
    for _ in range(bench_book.TWO_D_STEPS):
        fast.update(fast_params, bench_book.base_grads(fast_params))
        book.update(book_params, bench_book.base_grads(book_params))
    for key in fast_params:
        assert type(fast_params[key]) is float
        assert np.float64(fast_params[key]).tobytes() == np.float64(book_params[key]).tobytes(), key
    assert fast_params != {"x": -7.0, "y": 2.0}
