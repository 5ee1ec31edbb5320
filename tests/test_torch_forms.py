"""The PyTorch forms behind fastopt.torch (TorchAdam, TorchAdagrad,
TorchRMSprop) match their NumPy references bit for bit, with the engine's
options, in both dtypes and both kernel variants.  No torch needed."""

from __future__ import annotations

import numpy as np
import pytest

from fastopt import reference
from fastopt.rules.torch_adagrad import TorchAdagrad
from fastopt.rules.torch_adam import TorchAdam
from fastopt.rules.torch_rmsprop import TorchRMSprop

from conftest import DTYPES, PARALLEL, SERIAL, assert_same, assert_same_state, use_kernel

FORMS = {
    "TorchAdam": (TorchAdam, reference.TorchAdam, dict(lr=0.01, weight_decay=0.1)),
    "TorchAdam-amsgrad": (TorchAdam, reference.TorchAdam, dict(lr=0.01, amsgrad=True)),
    "TorchAdagrad": (TorchAdagrad, reference.TorchAdagrad, dict(lr=0.1, lr_decay=0.05, weight_decay=0.01)),
    "TorchRMSprop": (TorchRMSprop, reference.TorchRMSprop, dict(lr=0.01, weight_decay=0.01)),
    "TorchRMSprop-centered": (TorchRMSprop, reference.TorchRMSprop, dict(lr=0.01, centered=True)),
    "TorchRMSprop-momentum": (TorchRMSprop, reference.TorchRMSprop, dict(lr=0.01, momentum=0.9)),
    "TorchRMSprop-both": (TorchRMSprop, reference.TorchRMSprop, dict(lr=0.01, centered=True, momentum=0.5,
                                                                      alpha=0.9)),
}
OPTIONS = {
    "plain": {},
    "clip-maximize": dict(clip_norm=0.5, clip_value=1.5, maximize=True),
    "groups": dict(groups={"b*": {"lr": 0.003, "weight_decay": 0.0}}),
    "float64-state": dict(state_dtype="float64"),
}


@pytest.mark.parametrize("variant", [SERIAL, PARALLEL])
@pytest.mark.parametrize("dtype", DTYPES, ids=["float32", "float64"])
@pytest.mark.parametrize("option", list(OPTIONS))
@pytest.mark.parametrize("form", list(FORMS))
def test_form_matches_reference(form, option, dtype, variant):
    fast_class, reference_class, config = FORMS[form]
    fast, ref = fast_class(**config, **OPTIONS[option]), reference_class(**config, **OPTIONS[option])
    use_kernel(fast, variant)
    rng = np.random.default_rng(7)
    shapes = {"W1": (64, 33), "b1": (33,), "W2": (33, 5), "b2": (5,), "s": ()}
    p_fast = {k: rng.standard_normal(s).astype(dtype) for k, s in shapes.items()}
    p_ref = {k: v.copy() for k, v in p_fast.items()}
    for _ in range(30):
        grads = {k: (rng.standard_normal(s) * 2).astype(dtype) for k, s in shapes.items()}
        fast.update(p_fast, grads)
        ref.update(p_ref, grads)
    assert_same(p_fast, p_ref)
    assert_same_state(fast, ref)


def test_rmsprop_without_a_buffer_refuses_momentum_later():
    from fastopt.errors import HyperparameterError

    opt = TorchRMSprop(lr=0.01)
    opt.momentum = 0.9
    with pytest.raises(HyperparameterError, match="momentum"):
        opt.update({"w": np.ones(3)}, {"w": np.ones(3)})
