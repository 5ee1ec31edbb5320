"""Adafactor's own behaviour: factored state shapes and size, eps1=None, empty keys.

Its equivalence with the reference (every option, serial and parallel, 1-4
threads) and with torch (golden trajectories) runs in the registry-driven
suites like every other rule's.
"""

import numpy as np
import pytest

import fastopt
from fastopt.errors import HyperparameterTypeError


def _grads(params, rng):
    return {k: rng.standard_normal(np.shape(v)).astype(np.asarray(v).dtype) for k, v in params.items()}


def test_state_shapes_are_torchs_row_and_column_factors():
    rng = np.random.default_rng(0)
    params = {"s": np.array(0.5), "v": rng.standard_normal(7), "W": rng.standard_normal((5, 3)),
              "T": rng.standard_normal((2, 3, 4)), "e": np.zeros((0, 3))}
    opt = fastopt.Adafactor()
    opt.update(params, _grads(params, rng))
    shapes = {n: {k: a.shape for k, a in opt.state[n].items()} for n in opt.state_names}
    assert shapes == {
        # torch.optim.Adafactor keeps row_var (..., n, 1) and col_var (..., 1, m)
        # for 2+ dims, variance for the rest; the unused entries are empty.
        "row_var": {"s": (0,), "v": (0,), "W": (5, 1), "T": (2, 3, 1), "e": (0, 1)},
        "col_var": {"s": (0,), "v": (0,), "W": (1, 3), "T": (2, 1, 4), "e": (1, 3)},
        "variance": {"s": (), "v": (7,), "W": (0,), "T": (0,), "e": (0,)},
    }


def test_first_step_factors_are_the_mean_squared_grads():
    # t = 1: the weight t**beta2_decay is 1, so the factors are the means.
    rng = np.random.default_rng(1)
    params = {"W": rng.standard_normal((4, 6))}
    grads = _grads(params, rng)
    opt = fastopt.Adafactor()
    opt.update(params, grads)
    g2 = grads["W"] ** 2
    np.testing.assert_allclose(opt.row_var["W"], g2.mean(axis=-1, keepdims=True), rtol=1e-15)
    np.testing.assert_allclose(opt.col_var["W"], g2.mean(axis=-2, keepdims=True), rtol=1e-15)


def test_state_of_a_4096_square_matrix_is_under_one_percent_of_adams():
    params = {"W": np.zeros((4096, 4096), np.float32)}
    adafactor, adam = fastopt.Adafactor(), fastopt.Adam()
    adafactor.init(params)
    adam.init(params)
    factored = sum(b.nbytes for b in adafactor.optimizer_state.buffers.values())
    full = sum(b.nbytes for b in adam.optimizer_state.buffers.values())
    assert factored == (4096 + 4096) * 4
    assert factored <= 0.01 * full, (factored, full)


@pytest.mark.parametrize("state_dtype", [None, "float64"])
def test_eps1_none_is_the_machine_epsilon_of_the_params_dtype(state_dtype):
    # float32 params: torch takes finfo(param.dtype).eps, also when the
    # arithmetic is float64 (float64 state).
    rng = np.random.default_rng(2)
    params = {"W": (1e-3 * rng.standard_normal((6, 5))).astype(np.float32),
              "b": np.zeros(5, np.float32)}
    results = []
    for eps1 in (None, float(np.finfo(np.float32).eps)):
        opt = fastopt.Adafactor(eps1=eps1, state_dtype=state_dtype)
        p = {k: v.copy() for k, v in params.items()}
        grads_rng = np.random.default_rng(3)
        for _ in range(5):
            opt.update(p, {k: (1e-4 * grads_rng.standard_normal(v.shape)).astype(np.float32) for k, v in p.items()})
        results.append(p)
    for k in params:
        assert results[0][k].tobytes() == results[1][k].tobytes()
    # ... and not float64's: the mean row factor (~1e-8) is below float32's epsilon, so its floor acts.
    opt = fastopt.Adafactor(eps1=float(np.finfo(np.float64).eps), state_dtype=state_dtype)
    p = {k: v.copy() for k, v in params.items()}
    grads_rng = np.random.default_rng(3)
    for _ in range(5):
        opt.update(p, {k: (1e-4 * grads_rng.standard_normal(v.shape)).astype(np.float32) for k, v in p.items()})
    assert p["W"].tobytes() != results[0]["W"].tobytes()


def test_eps1_takes_none_a_number_or_a_schedule():
    opt = fastopt.Adafactor(eps1=1e-3)
    opt.eps1 = None
    assert opt.eps1 is None
    opt.eps1 = fastopt.schedules.constant(1e-4)
    with pytest.raises(HyperparameterTypeError, match="Adafactor.eps1: expected a real number, None or a schedule"):
        opt.eps1 = "small"
    with pytest.raises(HyperparameterTypeError, match="Adafactor.lr: expected a real number or a schedule"):
        fastopt.Adafactor(lr=None)


def test_a_key_with_no_elements_is_left_alone():
    rng = np.random.default_rng(4)
    params = {"e": np.zeros((0, 3)), "W": rng.standard_normal((3, 3))}
    before = params["W"].copy()
    opt = fastopt.Adafactor()
    opt.update(params, _grads(params, rng))
    assert params["e"].shape == (0, 3)
    assert np.array_equal(opt.col_var["e"], np.zeros((1, 3)))  # torch: nan (0 / 0)
    assert not np.array_equal(params["W"], before)


def test_checkpoint_keeps_the_factored_state_and_eps1_none(tmp_path):
    rng = np.random.default_rng(5)
    params = {"W": rng.standard_normal((5, 4)), "b": rng.standard_normal(4)}
    grads = [_grads(params, rng) for _ in range(6)]
    straight, resumed = fastopt.Adafactor(), fastopt.Adafactor(eps1=0.5)
    p_straight = {k: v.copy() for k, v in params.items()}
    for g in grads:
        straight.update(p_straight, g)
    p_resumed = {k: v.copy() for k, v in params.items()}
    first = fastopt.Adafactor()
    for g in grads[:3]:
        first.update(p_resumed, g)
    first.save(tmp_path / "adafactor.npz")
    resumed.load(tmp_path / "adafactor.npz")
    assert resumed.eps1 is None
    for g in grads[3:]:
        resumed.update(p_resumed, g)
    for k in params:
        assert p_resumed[k].tobytes() == p_straight[k].tobytes()
