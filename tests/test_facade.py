"""What ``update(params, grads)`` promises about the dicts it is given."""

from __future__ import annotations

import numpy as np
import pytest

import fastopt
from fastopt._jit import LENGTH, Kernel, array_at, forget_timings
from fastopt._plan import N_ROWS, TABLE, TABLE_WIDTH, Plan
from fastopt._validate import validate
from fastopt.book import Affine
from fastopt.registry import RULES

from conftest import PARALLEL, SERIAL, assert_same, assert_same_state, copy_params, use_kernel

rules = pytest.mark.parametrize("rule", RULES, ids=lambda r: r.name)


def _table(first):
    """The segment table of a kernel call: its first argument (Adafactor's
    kernel) or where its block says (every other rule's)."""
    if first.ndim == 2:
        return first
    return array_at(first[TABLE], first[N_ROWS] * first[TABLE_WIDTH], first).reshape(first[N_ROWS], first[TABLE_WIDTH])


class CountingKernel:
    """Wraps a rule's kernel to record which variant ran on how many elements."""

    def __init__(self, kernel: Kernel):
        self.calls = []
        self.kernel = Kernel(kernel.name, kernel.py_func, self._wrap("serial", kernel.serial),
                             self._wrap("parallel", kernel.parallel), kernel.norms)

    def _wrap(self, name, dispatcher):
        def call(first, *args):
            self.calls.append((name, int(_table(first)[:, LENGTH].sum())))
            return dispatcher(first, *args)

        return call


def count_calls(opt):
    counter = CountingKernel(opt.kernel)
    opt.kernel = counter.kernel
    return counter


@rules
def test_arrays_are_updated_in_place_and_layers_see_it(rule):
    rng = np.random.default_rng(0)
    W, b = rng.standard_normal((4, 3)), rng.standard_normal(3)
    params = {"W": W, "b": b}
    layer = Affine(params["W"], params["b"])
    before = W.copy()
    opt = rule.fast(lr=0.1)
    opt.update(params, {"W": np.ones((4, 3)), "b": np.ones(3)})
    assert params["W"] is W and params["b"] is b
    assert layer.W is W and not np.array_equal(layer.W, before)


@rules
def test_python_floats_are_written_back_as_python_floats(rule):
    params = {"x": -7.0, "y": 2.0}
    opt, ref = rule.fast(lr=0.1), rule.reference(lr=0.1)
    ref_params = dict(params)
    for _ in range(3):
        grads = {"x": params["x"] / 10.0, "y": 2.0 * params["y"]}
        opt.update(params, grads)
        ref.update(ref_params, {"x": ref_params["x"] / 10.0, "y": 2.0 * ref_params["y"]})
    assert type(params["x"]) is float and type(params["y"]) is float
    assert params["x"] != -7.0
    assert_same(params, ref_params)
    assert_same_state(opt, ref)


@pytest.mark.parametrize("scalar_type", [np.float32, np.float64])
@rules
def test_numpy_scalars_keep_their_type(rule, scalar_type):
    params = {"w": scalar_type(1.5)}
    opt = rule.fast(lr=0.1)
    opt.update(params, {"w": scalar_type(0.25)})
    assert type(params["w"]) is scalar_type
    assert params["w"] != scalar_type(1.5)


@rules
def test_zero_d_arrays_are_updated_in_place(rule):
    w = np.array(1.5)
    params = {"w": w}
    rule.fast(lr=0.1).update(params, {"w": np.array(0.5)})
    assert params["w"] is w and w.shape == () and float(w) != 1.5


def test_book_2d_example_runs_unchanged():
    # optimizer_compare_naive.py from the book, with fastopt swapped in.
    def df(x, y):
        return x / 10.0, 2.0 * y

    for rule, lr in [("SGD", 0.95), ("Momentum", 0.1), ("AdaGrad", 1.5), ("Adam", 0.3)]:
        histories = []
        for module in (fastopt, fastopt.reference):
            optimizer = getattr(module, rule)(lr=lr)
            params, grads = {"x": -7.0, "y": 2.0}, {"x": 0, "y": 0}
            x_history, y_history = [], []
            for _ in range(30):
                x_history.append(params["x"])
                y_history.append(params["y"])
                grads["x"], grads["y"] = df(params["x"], params["y"])
                optimizer.update(params, grads)
            histories.append((x_history, y_history))
        assert histories[0] == histories[1], rule
        assert abs(histories[0][0][-1]) < 7.0, rule  # it moved towards the minimum


@rules
def test_state_is_one_flat_buffer_per_name_with_a_view_per_key(rule):
    params = {"W": np.ones((3, 2), np.float32), "b": np.ones(2, np.float32), "s": np.float32(1)}
    opt = rule.fast()
    assert opt.layout is None and all(v == {} for v in opt.state.values())
    opt.update(params, {k: np.ones_like(v) if isinstance(v, np.ndarray) else np.float32(1) for k, v in params.items()})
    if not opt.state_names:  # a stateless rule fixes no layout
        assert opt.layout is None and opt.state == {}
        return
    assert opt.layout.keys == ("W", "b", "s")
    assert opt.layout.shapes == ((3, 2), (2,), ())
    assert opt.layout.dtype == np.float32
    # Shaped like the params, unless the rule shapes its state (Adafactor's factors).
    shape_of = rule.math.state_shape or (lambda name, shape: shape)
    for name in opt.state_names:
        views = opt.state[name]
        expected = {k: shape_of(name, s) for k, s in zip(opt.layout.keys, opt.layout.shapes)}
        assert {k: v.shape for k, v in views.items()} == expected
        assert views["W"].base is views["b"].base is views["s"].base
        flat = opt.optimizer_state.buffers[name]
        assert flat.size == sum(int(np.prod(s)) for s in expected.values()) and flat.flags.c_contiguous
        assert all(np.shares_memory(v, flat) for v in views.values() if v.size)


@rules
def test_arena_update_is_one_kernel_call(rule):
    rng = np.random.default_rng(1)
    params = fastopt.flatten({"W1": rng.standard_normal((5, 4)), "b1": np.zeros(4), "W2": rng.standard_normal((4, 2))})
    grads = fastopt.zeros_like(params)
    opt = rule.fast()
    counter = count_calls(opt)
    for _ in range(3):
        for g in grads.values():
            g[...] = rng.standard_normal(g.shape)
        opt.update(params, grads)
    assert counter.calls == [("serial", 5 * 4 + 4 + 4 * 2)] * 3


@rules
def test_plain_dict_update_is_one_kernel_call_too(rule):
    params = {"W1": np.ones((5, 4)), "b1": np.zeros(4), "W2": np.ones((4, 2)), "s": 1.0}
    opt = rule.fast()
    counter = count_calls(opt)
    for _ in range(2):
        grads = {k: np.full_like(v, 0.5) if isinstance(v, np.ndarray) else 0.5 for k, v in params.items()}
        opt.update(params, grads)
    assert counter.calls == [("serial", 33)] * 2


def test_kernel_variant_follows_parallel_min_size_and_parallel():
    opt = fastopt.Adam()
    counter = count_calls(opt)
    params, grads = {"a": np.ones(4), "b": np.ones(5)}, {"a": np.ones(4), "b": np.ones(5)}
    opt.parallel = True
    opt.parallel_min_size = 10  # total 9: below, so serial even when parallel is True
    opt.update(params, grads)
    opt.parallel_min_size = 9
    opt.update(params, grads)
    opt.parallel = False
    opt.update(params, grads)
    forget_timings()
    opt.parallel = None  # timed: three calls of each first, serial first
    for _ in range(6):
        opt.update(params, grads)
    assert counter.calls == [("serial", 9), ("parallel", 9), ("serial", 9)] + [("serial", 9)] * 3 + [("parallel", 9)] * 3
    with pytest.raises(ValueError, match="parallel"):
        opt.parallel = "yes"


def test_faster_of_runs_the_faster_kernel_and_keeps_probing():
    import time

    from fastopt._jit import FasterOf

    calls = []
    durations = {"serial": 0.004, "parallel": 0.001}

    def kernel(name):
        def run():
            calls.append(name)
            time.sleep(durations[name])
        return run

    runner = FasterOf(kernel("serial"), lambda: kernel("parallel"), key=("test", object()))
    for _ in range(120):
        runner()
    assert calls[:6] == ["serial"] * 3 + ["parallel"] * 3  # both timed first
    assert calls[6:38] == ["parallel"] * 32  # then the faster one
    assert calls[38:41] == ["serial"] * 3  # the other re-timed after PROBE_EVERY calls
    assert calls[41:105] == ["parallel"] * 64  # confirmed: the next wait doubles
    assert calls[105:108] == ["serial"] * 3
    durations.update(serial=0.0005, parallel=0.004)  # the machine got busy
    for _ in range(300):
        runner()
    assert calls[-20:].count("serial") >= 19


def test_segment_table_gives_each_thread_an_equal_share():
    # Keys of very different sizes; 3 shares of 34 elements (the last 33).
    params = {"big": np.zeros(70, np.float32), "none": np.zeros(0, np.float32),
              "small": np.zeros(3, np.float32), "mid": np.zeros(28, np.float32)}
    grads = {k: np.ones_like(v) for k, v in params.items()}
    opt = fastopt.Momentum()
    opt.update(params, grads)
    plan = Plan(validate(params, grads, opt.layout, {}), opt.optimizer_state, [0] * 4, parts=3)
    table, row_key = plan.table, plan.row_key
    assert row_key[table[:, 0] > 0].tolist() == [0, 0, 0, 2, 3]
    assert table.shape[1] == 5  # length, group, p, g, v
    rows_per_share = len(table) // 3
    shares = [table[i * rows_per_share:(i + 1) * rows_per_share, 0].sum() for i in range(3)]
    assert shares == [34, 34, 33] and len(table) % 3 == 0
    # big is cut at 34 and 68; every row starts where the previous ended
    assert table[table[:, 0] > 0, 0].tolist() == [34, 34, 2, 3, 28]
    live = table[table[:, 0] > 0]
    big = params["big"].ctypes.data
    assert live[:3, 2].tolist() == [big, big + 34 * 4, big + 68 * 4]
    assert live[3, 2] == params["small"].ctypes.data


@rules
def test_non_contiguous_and_read_only_grads_are_accepted(rule):
    rng = np.random.default_rng(2)
    params = {"W": rng.standard_normal((4, 3))}
    ref_params = copy_params(params)
    opt, ref = rule.fast(), rule.reference()
    for _ in range(3):
        g = rng.standard_normal((3, 4)).T  # F-ordered view
        frozen = rng.standard_normal((4, 3))
        frozen.flags.writeable = False
        for grads in ({"W": g}, {"W": frozen}):
            opt.update(params, grads)
            ref.update(ref_params, grads)
    assert_same(params, ref_params)
    assert_same_state(opt, ref)


def test_flatten_copies_values_into_views_of_one_buffer():
    original = {"W": np.arange(6.0).reshape(2, 3), "b": np.array([7.0]), "s": 2.5}
    flat = fastopt.flatten(original)
    assert list(flat) == ["W", "b", "s"]
    assert flat["W"].base is flat["b"].base is flat["s"].base
    assert flat["W"].base.shape == (8,)
    assert flat["s"].shape == () and float(flat["s"]) == 2.5
    assert np.array_equal(flat["W"], original["W"]) and flat["W"] is not original["W"]
    flat["W"][0, 0] = 99.0
    assert original["W"][0, 0] == 0.0


def test_flatten_dtype_conversion_and_mixed_dtypes():
    mixed = {"a": np.ones(2, np.float32), "b": np.ones(2)}
    with pytest.raises(fastopt.DTypeMismatchError, match="dtype="):
        fastopt.flatten(mixed)
    flat = fastopt.flatten(mixed, dtype=np.float32)
    assert all(v.dtype == np.float32 for v in flat.values())
    grads = fastopt.zeros_like(flat)
    assert grads.keys() == flat.keys() and grads["a"].base is grads["b"].base
    assert not np.shares_memory(grads["a"].base, flat["a"].base)
    assert all(not g.any() for g in grads.values())


@rules
def test_step_count_counts_updates(rule):
    opt = rule.fast()
    params = {"w": np.ones(2)}
    for i in range(4):
        opt.update(params, {"w": np.ones(2)})
    assert opt.step_count == 4


@rules
def test_signature_and_defaults_match_the_design_table(rule):
    import inspect

    expected = {
        "SGD": {"lr": 0.01, "weight_decay": 0.0, "momentum": 0.0, "dampening": 0.0},
        "Momentum": {"lr": 0.01, "momentum": 0.9, "weight_decay": 0.0},
        "Nesterov": {"lr": 0.01, "momentum": 0.9, "weight_decay": 0.0},
        "AdaGrad": {"lr": 0.01, "eps": 1e-7, "weight_decay": 0.0},
        "RMSprop": {"lr": 0.01, "decay_rate": 0.99, "eps": 1e-7, "weight_decay": 0.0},
        "Adam": {"lr": 0.001, "beta1": 0.9, "beta2": 0.999, "eps": 1e-7, "weight_decay": 0.0},
        "AdamW": {"lr": 0.001, "beta1": 0.9, "beta2": 0.999, "eps": 1e-8, "weight_decay": 0.01},
        # The catalogue: torch.optim's and optax's defaults (DESIGN section 1).
        "NAdam": {"lr": 0.002, "beta1": 0.9, "beta2": 0.999, "eps": 1e-8, "weight_decay": 0.0,
                  "momentum_decay": 0.004},
        "RAdam": {"lr": 0.001, "beta1": 0.9, "beta2": 0.999, "eps": 1e-8, "weight_decay": 0.0},
        "Adamax": {"lr": 0.002, "beta1": 0.9, "beta2": 0.999, "eps": 1e-8, "weight_decay": 0.0},
        "Adadelta": {"lr": 1.0, "rho": 0.9, "eps": 1e-6, "weight_decay": 0.0},
        "Rprop": {"lr": 0.01, "eta_minus": 0.5, "eta_plus": 1.2, "step_min": 1e-6, "step_max": 50.0},
        "AdaBelief": {"lr": 0.001, "beta1": 0.9, "beta2": 0.999, "eps": 1e-16, "eps_root": 1e-16,
                      "weight_decay": 0.0},
        "Lion": {"lr": 1e-4, "beta1": 0.9, "beta2": 0.99, "weight_decay": 1e-3},
        "LAMB": {"lr": 0.001, "beta1": 0.9, "beta2": 0.999, "eps": 1e-6, "eps_root": 0.0, "weight_decay": 0.0},
        "LARS": {"lr": 1.0, "momentum": 0.9, "trust_coefficient": 0.001, "eps": 0.0, "weight_decay": 0.0},
        "Adafactor": {"lr": 0.01, "beta2_decay": -0.8, "eps1": None, "eps2": 1e-3, "d": 1.0, "weight_decay": 0.0},
    }[rule.name]
    for cls in (rule.fast, rule.reference):
        sig = inspect.signature(cls)
        positional = {n: p.default for n, p in sig.parameters.items() if p.kind is not p.KEYWORD_ONLY}
        assert positional == expected
        assert cls().hyperparameters() == expected
    assert rule.fast.__doc__ and "Reference" in rule.fast.__doc__
    assert inspect.signature(rule.fast).parameters["nonfinite"].default == "propagate"


def test_positional_hyperparameters_follow_the_constructor_order():
    opt = fastopt.Adam(0.01, 0.8)
    assert (opt.lr, opt.beta1, opt.beta2) == (0.01, 0.8, 0.999)
    with pytest.raises(TypeError, match="Adam"):
        fastopt.Adam(0.01, 0.8, 0.9, 1e-8, 0.0, 1.0)
    with pytest.raises(TypeError, match="momentum"):
        fastopt.Adam(momentum=0.9)


@rules
def test_replayed_steps_with_reused_grads_follow_hyperparameter_changes(rule):
    # Reusing the same grad arrays (filled in place) makes every call after the
    # first a replay of the validated plan; it must see every change.
    rng = np.random.default_rng(4)
    params = {"W": rng.standard_normal((6, 5)), "b": rng.standard_normal(5)}
    ref_params = copy_params(params)
    grads = {k: np.empty_like(v) for k, v in params.items()}
    opt, ref = rule.fast(), rule.reference()
    for i in range(40):
        for k in grads:
            grads[k][...] = rng.standard_normal(grads[k].shape)
        if i % 7 == 3:
            for o in (opt, ref):
                o.lr = 0.001 * (i + 1)
        if i % 5 == 2:
            use_kernel(opt, SERIAL if opt.parallel else PARALLEL)
        opt.update(params, grads)
        ref.update(ref_params, grads)
    assert_same(params, ref_params)
    assert_same_state(opt, ref)


def _replaying_optimizer():
    params = {"W": np.ones((3, 4), np.float32), "b": np.ones(4, np.float32)}
    grads = {k: np.full_like(v, 0.5) for k, v in params.items()}
    opt = fastopt.Adam()
    opt.update(params, grads)
    opt.update(params, grads)
    return opt, params, grads


@pytest.mark.parametrize(
    "change, error",
    [
        (lambda p, g: setattr(g["b"], "shape", (2, 2)), fastopt.ShapeMismatchError),
        (lambda p, g: setattr(p["W"], "shape", (4, 3)), fastopt.ShapeMismatchError),
        (lambda p, g: setattr(p["b"], "dtype", np.int32), fastopt.DTypeMismatchError),
        (lambda p, g: setattr(g["W"], "dtype", np.int32), fastopt.DTypeMismatchError),
        (lambda p, g: p["b"].flags.__setattr__("writeable", False), fastopt.LayoutError),
        (lambda p, g: g.__setitem__("b", p["b"]), fastopt.AliasingError),
        (lambda p, g: g.__setitem__("extra", np.ones(1, np.float32)), fastopt.KeyMismatchError),
        (lambda p, g: p.__setitem__("W", np.ones((3, 4))), fastopt.DTypeMismatchError),
    ],
    ids=["grad reshaped", "param reshaped", "param dtype", "grad dtype", "read-only",
         "grad aliases param", "extra key", "param replaced"],
)
def test_in_place_changes_to_replayed_arrays_are_caught(change, error):
    opt, params, grads = _replaying_optimizer()
    before = opt.state_dict()
    change(params, grads)
    with pytest.raises(error):
        opt.update(params, grads)
    assert opt.step_count == before["step"]
    for name in before["state"]:
        assert_same(opt.state[name], before["state"][name])


def test_parallel_min_size_is_validated():
    opt = fastopt.SGD()
    assert opt.parallel_min_size == 100_000 and fastopt.Adam().parallel_min_size == 30_000
    for bad in (-1, 1.5, True, "10"):
        with pytest.raises(ValueError, match="parallel_min_size"):
            opt.parallel_min_size = bad


def test_memoryview_float32_assignment_rounds_like_numpy():
    # The facade writes per-step scalars through a float32 memoryview; this
    # pins that the interpreter's cast rounds exactly as np.float32 does,
    # beyond float32's range included.
    rng = np.random.default_rng(0)
    values = rng.uniform(-1, 1, 20000) * 10.0 ** rng.uniform(-50, 40, 20000)
    values = np.concatenate([values, [0.0, -0.0, 1e-46, -1e-46, 3.4028235e38, 3.4028236e38, 1e39, -1e39]])
    buffer = np.zeros(1, np.float32)
    view = memoryview(buffer)
    with np.errstate(over="ignore"):
        expected = values.astype(np.float32)
    for x, e in zip(values.tolist(), expected):
        view[0] = x
        assert buffer.tobytes() == e.tobytes(), x


def test_shares_of_layouts_beyond_2_to_the_31_elements():
    # The arithmetic only: no memory is allocated.
    from fastopt._layout import Layout
    from fastopt._plan import split_into_shares

    shapes = [(50_000, 50_000), (3,), (2**31 + 7,)]
    layout = Layout.from_shapes(["a", "b", "c"], shapes, np.float32)
    assert layout.offsets == (0, 2_500_000_000, 2_500_000_003)
    assert layout.total == 2_500_000_003 + 2**31 + 7 > 2**32
    rows = split_into_shares(layout.sizes, 4)
    per_share = len(rows) // 4
    shares = [sum(length for _, _, length in rows[i * per_share:(i + 1) * per_share]) for i in range(4)]
    assert sum(shares) == layout.total and max(shares) - min(shares) < 4  # ceil(total / 4) each, the last less
    # rows cover every element of every run exactly once, in order
    covered = {}
    for run, start, length in rows:
        if length:
            assert start == covered.get(run, 0)
            covered[run] = start + length
    assert covered == {0: 2_500_000_000, 1: 3, 2: 2**31 + 7}
    # the byte offsets of the last row fit the int64 table
    last_run, last_start, _ = [r for r in rows if r[2]][-1]
    assert np.int64(last_start * 4) == last_start * 4 > 2**31
