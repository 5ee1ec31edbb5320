"""state_dict / load_state_dict and save / load."""

from __future__ import annotations

import json
import os
import zipfile

import numpy as np
import pytest

import fastopt
from fastopt import _checkpoint
from fastopt.registry import RULES

from conftest import DTYPES, assert_same, assert_same_state, copy_params, make_params, random_grads

rules = pytest.mark.parametrize("rule", RULES, ids=lambda r: r.name)


def train(opt, params, rng, steps):
    for _ in range(steps):
        opt.update(params, random_grads(params, rng))


@pytest.mark.parametrize("dtype", DTYPES, ids=["f32", "f64"])
@rules
def test_save_load_then_continue_equals_uninterrupted(rule, dtype, tmp_path):
    kwargs = next(iter(c for n, c in rule.configs.items() if n != "default"), {})
    params = make_params("several", dtype, np.random.default_rng(0))

    straight, straight_params = rule.fast(**kwargs), copy_params(params)
    train(straight, straight_params, np.random.default_rng(1), 200)

    first, resumed_params = rule.fast(**kwargs), copy_params(params)
    rng = np.random.default_rng(1)
    train(first, resumed_params, rng, 100)
    path = tmp_path / "opt.npz"
    first.save(path)

    second = rule.fast()  # default hyperparameters: load must restore them
    second.load(path)
    assert second.hyperparameters() == first.hyperparameters()
    assert second.step_count == 100
    train(second, resumed_params, rng, 100)

    assert_same(resumed_params, straight_params)
    assert_same_state(second, straight)
    assert second.step_count == straight.step_count == 200


@rules
def test_state_dict_round_trip_is_a_copy_keyed_by_name(rule):
    params = make_params("several", np.float32, np.random.default_rng(0))
    opt = rule.fast()
    train(opt, params, np.random.default_rng(1), 3)
    sd = opt.state_dict()
    assert sd["rule"] == rule.name and sd["step"] == 3
    assert sd["dtype"] == ("float32" if opt.state_names else None)  # stateless: no layout
    assert sd["keys"] == (list(params) if opt.state_names else [])
    assert sd["hyperparameters"] == opt.hyperparameters()
    assert set(sd["state"]) == set(opt.state_names)
    for name, per_key in sd["state"].items():
        assert set(per_key) == set(params)
        assert_same(per_key, opt.state[name])
    train(opt, params, np.random.default_rng(2), 1)  # the dict must not follow
    other = rule.fast()
    other.load_state_dict(sd)
    assert other.step_count == 3
    for name, per_key in sd["state"].items():
        assert_same(other.state[name], per_key)


def test_load_accepts_keys_in_another_order():
    params = {"a": np.ones(2), "b": np.ones(3)}
    opt = fastopt.Adam()
    train(opt, params, np.random.default_rng(0), 2)
    sd = opt.state_dict()
    sd["keys"] = ["b", "a"]
    fresh = fastopt.Adam()
    fresh.update({"a": np.ones(2), "b": np.ones(3)}, {"a": np.zeros(2), "b": np.zeros(3)})
    fresh.load_state_dict(sd)
    assert_same(fresh.state["m"], opt.state["m"])


def test_state_of_an_optimizer_that_never_stepped_round_trips(tmp_path):
    opt = fastopt.Momentum(lr=0.2)
    opt.save(tmp_path / "empty.npz")
    other = fastopt.Momentum()
    other.load(tmp_path / "empty.npz")
    assert other.lr == 0.2 and other.layout is None and other.step_count == 0


def stepped_adam():
    params = {"W": np.ones((2, 3), np.float32), "b": np.ones(3, np.float32)}
    opt = fastopt.Adam(lr=0.01)
    train(opt, params, np.random.default_rng(0), 5)
    return opt, params


def mutated(sd, **changes):
    out = dict(sd)
    out.update(changes)
    return out


BAD_STATES = {
    "another rule": lambda sd: mutated(sd, rule="AdamW"),
    "another format": lambda sd: mutated(sd, format="torch"),
    "a newer version": lambda sd: mutated(sd, version=3),
    "negative step": lambda sd: mutated(sd, step=-1),
    "missing hyperparameter": lambda sd: mutated(sd, hyperparameters={"lr": 0.1}),
    "invalid hyperparameter": lambda sd: mutated(sd, hyperparameters=dict(sd["hyperparameters"], beta1=1.5)),
    "another key": lambda sd: mutated(
        sd,
        keys=["W", "c"],
        shapes={"W": (2, 3), "c": (3,)},
        state={n: {"W": v["W"], "c": v["b"]} for n, v in sd["state"].items()},
    ),
    "another shape": lambda sd: mutated(
        sd,
        shapes={"W": (3, 2), "b": (3,)},
        state={n: {"W": v["W"].reshape(3, 2), "b": v["b"]} for n, v in sd["state"].items()},
    ),
    "another dtype": lambda sd: mutated(
        sd,
        dtype="float64",
        state={n: {k: a.astype(np.float64) for k, a in v.items()} for n, v in sd["state"].items()},
    ),
    "a missing state buffer": lambda sd: mutated(sd, state={"m": sd["state"]["m"]}),
    "an array of the wrong shape": lambda sd: mutated(
        sd, state=dict(sd["state"], v={"W": np.zeros((2, 3), np.float32), "b": np.zeros(4, np.float32)})
    ),
    "a list instead of an array": lambda sd: mutated(
        sd, state=dict(sd["state"], v={"W": np.zeros((2, 3), np.float32), "b": [0.0, 0.0, 0.0]})
    ),
}


@pytest.mark.parametrize("case", list(BAD_STATES))
def test_load_state_dict_rejects_mismatches_and_changes_nothing(case):
    opt, params = stepped_adam()
    bad = BAD_STATES[case](opt.state_dict())
    before = opt.state_dict()
    with pytest.raises(fastopt.StateFileError):
        opt.load_state_dict(bad)
    after = opt.state_dict()
    assert after["step"] == before["step"] and after["hyperparameters"] == before["hyperparameters"]
    for name in before["state"]:
        assert_same(after["state"][name], before["state"][name])


def test_saved_file_is_npz_without_pickles(tmp_path):
    opt, _ = stepped_adam()
    path = tmp_path / "adam.npz"
    opt.save(path)
    with np.load(path, allow_pickle=False) as npz:
        assert set(npz.files) == {"header", "state.m", "state.v"}
        header = json.loads(npz["header"].tobytes())
    assert header["format"] == "fastopt.state" and header["version"] == 2 and header["rule"] == "Adam"
    assert len(header["sha256"]) == 64


def test_save_replaces_atomically_and_leaves_no_temp_files(tmp_path, monkeypatch):
    opt, params = stepped_adam()
    path = tmp_path / "ckpt.npz"
    opt.save(path)
    good = path.read_bytes()
    train(opt, params, np.random.default_rng(9), 1)

    def crash(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(os, "fsync", crash)
    with pytest.raises(OSError, match="disk full"):
        opt.save(path)
    assert path.read_bytes() == good
    assert os.listdir(tmp_path) == ["ckpt.npz"]
    monkeypatch.undo()
    opt.save(path)
    assert path.read_bytes() != good and os.listdir(tmp_path) == ["ckpt.npz"]


def _assert_load_fails_cleanly(path, match):
    opt = fastopt.Adam()
    params = {"W": np.ones((2, 3), np.float32), "b": np.ones(3, np.float32)}
    opt.update(params, {k: np.ones_like(v) for k, v in params.items()})
    before = opt.state_dict()
    with pytest.raises(fastopt.StateFileError, match=match):
        opt.load(path)
    assert opt.step_count == before["step"]
    assert_same(opt.state["m"], before["state"]["m"])


@pytest.mark.parametrize("keep", [0, 10, 100, 0.5, 0.9])
def test_truncated_file_is_rejected(tmp_path, keep):
    opt, _ = stepped_adam()
    path = tmp_path / "ckpt.npz"
    opt.save(path)
    data = path.read_bytes()
    n = int(len(data) * keep) if isinstance(keep, float) else keep
    path.write_bytes(data[:n])
    _assert_load_fails_cleanly(path, "truncated|not a fastopt checkpoint|corrupt")


def test_corrupted_payload_is_rejected_by_the_checksum(tmp_path):
    opt, _ = stepped_adam()
    path = tmp_path / "ckpt.npz"
    opt.save(path)
    # Rewrite one state array inside the zip with a flipped bit, keeping the
    # zip itself valid, so only the checksum can catch it.
    with np.load(path) as npz:
        arrays = {k: npz[k].copy() for k in npz.files}
    arrays["state.v"].view(np.uint32)[2] ^= 1 << 3
    np.savez(path, **arrays)
    _assert_load_fails_cleanly(path, "checksum")


def test_flipped_byte_anywhere_is_rejected(tmp_path):
    opt, _ = stepped_adam()
    path = tmp_path / "ckpt.npz"
    opt.save(path)
    data = bytearray(path.read_bytes())
    rng = np.random.default_rng(0)
    for i in rng.choice(len(data), 25, replace=False):
        corrupt = bytearray(data)
        corrupt[i] ^= 0xFF
        path.write_bytes(bytes(corrupt))
        try:
            fresh = fastopt.Adam()
            fresh.load(path)
        except fastopt.StateFileError:
            continue
        # A flip in bytes no reader looks at (zip padding, unused header
        # fields) may load; then the result must equal the original.
        assert fresh.state_dict()["step"] == 5
        assert_same(fresh.state["v"], opt.state["v"])


def test_version_and_rule_mismatch_in_files(tmp_path):
    opt, _ = stepped_adam()
    path = tmp_path / "ckpt.npz"
    opt.save(path)
    with pytest.raises(fastopt.StateFileError, match="'Adam', not 'AdamW'"):
        fastopt.AdamW().load(path)
    with np.load(path) as npz:
        arrays = {k: npz[k].copy() for k in npz.files}
    header = json.loads(arrays["header"].tobytes())
    header.pop("sha256")
    header["version"] = 99
    payload = {k: v for k, v in arrays.items() if k != "header"}
    header["sha256"] = _checkpoint._digest(header, payload)
    arrays["header"] = np.frombuffer(json.dumps(header).encode(), np.uint8)
    np.savez(path, **arrays)
    _assert_load_fails_cleanly(path, "version 99")


def test_not_an_npz_file(tmp_path):
    path = tmp_path / "junk.npz"
    path.write_bytes(b"definitely not a zip file" * 10)
    _assert_load_fails_cleanly(path, "not a fastopt checkpoint")
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("other.npy", b"")
    _assert_load_fails_cleanly(path, "header|member")
