"""Compile (or load from the cache) kernels before the first step."""

from __future__ import annotations

import numpy as np


def warmup(rules=None, dtypes=("float32", "float64"), parallel: bool = True) -> None:
    """Compile the kernels of ``rules`` (names; default all) for ``dtypes``.

    With a writable cache directory this loads earlier compilations from disk;
    otherwise it compiles in memory.  ``parallel=False`` skips the parallel
    variants, which take longest to compile.
    """
    from .errors import HyperparameterError
    from .registry import BY_NAME, RULES

    if rules is None:
        chosen = RULES
    else:
        unknown = [name for name in rules if name not in BY_NAME]
        if unknown:
            raise HyperparameterError(f"warmup(rules=...): unknown rules {unknown}; known: {list(BY_NAME)}")
        chosen = [BY_NAME[name] for name in rules]
    for rule in chosen:
        for dtype in dtypes:
            opt = rule.fast()
            params = {"w": np.zeros(1, dtype)}
            grads = {"w": np.zeros(1, dtype)}
            opt.parallel_min_size = 0
            opt.parallel = False
            opt.update(params, grads)
            if parallel:
                opt.parallel = True
                opt.update(params, grads)
