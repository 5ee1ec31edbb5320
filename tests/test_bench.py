"""The bench harness runs on the engine, and its book-style baselines are the
book's math: the book's-loop case on a tiny net, the book classes against
fastopt bit for bit (float64, fresh grads every step), the CLI."""

from __future__ import annotations

import math

import numpy as np
import pytest

from fastopt import bench
from fastopt.registry import BY_NAME, RULES

TINY_NET = (12, (8, 6), 4)
STEPS = 50


def test_book_loop_gives_finite_positive_ratios_for_every_rule():
    results = bench.book_loop(RULES, nets=[TINY_NET], rounds=2, progress=False, batch_seconds=0.001)
    cases = [r.case for r in results]
    assert cases == [rule.name for rule in RULES] + [bench.SHARED_SGD]
    for r in results:
        assert r.net == "12-8-6-4" and r.rounds == 2
        assert r.n_params == 12 * 8 + 8 + 8 * 6 + 6 + 6 * 4 + 4
        for seconds in (r.fastopt_seconds, r.baseline_seconds, r.ratio):
            assert math.isfinite(seconds) and seconds > 0, r
        book = r.case in bench.BOOK_CLASSES or r.case == bench.SHARED_SGD
        assert r.baseline == ("book" if book else "fastopt.reference"), r
        for faults in (r.fastopt_faults, r.baseline_faults):
            assert faults is None or faults >= 0
    text = "\n".join(bench.book_loop_report(results))
    markdown = bench.book_loop_markdown(results, bench.environment())
    for rule in RULES:
        assert rule.name in text and f"| {rule.name} |" in markdown
    assert markdown.count("\n|") == 2 + len(results)  # header, its rule, a row per case (one net)


def _fresh_grad_stream(params, seed):
    rng = np.random.default_rng(seed)
    for _ in range(STEPS):
        # a new dict of new arrays every step, as network.gradient returns
        yield {k: rng.standard_normal(p.shape) * 0.1 for k, p in params.items()}


def _train_both(rule_name):
    fast_params = bench.book_net_params(TINY_NET, seed=3)
    book_params = {k: v.copy() for k, v in fast_params.items()}
    fast, book = BY_NAME[rule_name].fast(), bench.BOOK_CLASSES[rule_name]()
    for grads in _fresh_grad_stream(fast_params, seed=4):
        fast.update(fast_params, grads)
        book.update(book_params, {k: g.copy() for k, g in grads.items()})
    for k in fast_params:
        assert fast_params[k].dtype == np.float64
    return fast_params, book_params


@pytest.mark.parametrize("rule_name", ["SGD", "Momentum", "Nesterov", "AdaGrad", "RMSprop"])
def test_book_classes_are_bit_identical_to_fastopt(rule_name):
    fast_params, book_params = _train_both(rule_name)
    initial = bench.book_net_params(TINY_NET, seed=3)
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
    fast_nets = [bench.book_net_params(TINY_NET, seed=i) for i in range(3)]
    book_nets = [{k: v.copy() for k, v in p.items()} for p in fast_nets]
    fast, book = BY_NAME["SGD"].fast(), bench.BookSGD()
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
    assert set(bench.BOOK_CLASSES) == book_rules
    for rule in RULES:
        label, cls = bench.book_baseline(rule)
        assert (label, cls) == (("book", bench.BOOK_CLASSES[rule.name]) if rule.name in book_rules
                                else ("fastopt.reference", rule.reference))


def test_book_loop_step_times_only_the_update_with_fresh_grads():
    seen = []

    class Recorder:
        def update(self, params, grads):
            seen.append(grads)

    params = bench.book_net_params(TINY_NET)
    base = bench.base_grads(params)
    step = bench.book_loop_step(Recorder(), [(params, base), (params, base)])
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
    results = bench.run([BY_NAME["Adam"], BY_NAME["SGD"]], [1000], ["one"], rounds=1, progress=False, mlp=False)
    by = {(r.rule, r.impl): r for r in results}
    # torch is in the test extra: its implementations join the table
    torch_impls = {"torch-forloop", "torch-foreach", "torch-fused"}
    assert {impl for _, impl in by} == {"fastopt", "reference", "roof"} | torch_impls
    for r in results:
        assert r.seconds > 0 and r.gb_per_s > 0
    assert by[("Adam", "roof")].gb_per_s == pytest.approx(1000 * 28 / by[("Adam", "roof")].seconds / 1e9)


def test_cli_book_case_only(tmp_path, capsys):
    markdown = tmp_path / "summary.md"
    assert bench.main(["--rules", "SGD,Adam", "--cases", "book", "--book-rounds", "1",
                       "--markdown", str(markdown)]) == 0
    out = capsys.readouterr().out
    assert "the book's loop" in out and "throughput" not in out
    table = markdown.read_text()
    for case in ("SGD", "Adam", bench.SHARED_SGD):
        assert f"| {case} | book |" in table
    assert "Momentum" not in table


def test_cli_rejects_unknown_rules_and_cases():
    with pytest.raises(SystemExit):
        bench.main(["--rules", "SGD,NoSuchRule"])
    with pytest.raises(SystemExit):
        bench.main(["--cases", "books"])


def test_torch_adapter_case_runs():
    cases = (("1 tensor", (1000,), "float32"), ("3 tensors bf16", (10, 20, 30), "bfloat16"))
    results = bench.torch_adapter(rounds=1, cases=cases, progress=False)
    assert [(r.case, r.n, r.dtype) for r in results] == [("1 tensor", 1000, "float32"),
                                                       ("3 tensors bf16", 60, "bfloat16")]
    assert all(r.seconds > 0 and r.x_fused > 0 and r.x_default > 0 for r in results)
    text = "\n".join(bench.torch_adapter_report(results, bench.environment()))
    assert "x fused" in text and "3 tensors bf16" in text


def test_cli_state_case(capsys):
    assert bench.main(["--cases", "state", "--sizes", "3000", "--rounds", "1", "--rules", "AdamW"]) == 0
    out = capsys.readouterr().out
    assert "low-precision state" in out and "throughput" not in out
    rows = [line.split() for line in out.splitlines() if line.startswith("AdamW ")]
    assert [r[2] for r in rows] == ["float32", "bfloat16", "int8"]
    per_element = {r[2]: float(r[-2]) for r in rows}
    per_param = {r[2]: float(r[-1]) for r in rows}
    assert per_element == {"float32": 28.0, "bfloat16": 20.0, "int8": 16.1}
    assert per_param["float32"] == 8.0 and per_param["bfloat16"] == 4.0 and per_param["int8"] <= 2.1
