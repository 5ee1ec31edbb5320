#!/usr/bin/env python
"""Time AdamW steps: fastopt.torch.AdamW vs torch.optim.AdamW(fused=True) vs DeepSpeedCPUAdam.

An anchor for fastopt.torch (DeepSpeed is never a fastopt dependency).  In a
dev venv of its own:

    python -m venv /tmp/dsvenv && /tmp/dsvenv/bin/pip install torch==2.13.0 numpy numba ninja "deepspeed==0.19.*"
    /tmp/dsvenv/bin/pip install --no-deps -e .
    DS_ACCELERATOR=cpu /tmp/dsvenv/bin/python tools/deepspeed_anchor.py --n 1e7 --rounds 9 --cases a,b,c,d

The first DeepSpeedCPUAdam builds its C++ extension with g++ and ninja (about
1.5 minutes here, then cached in ~/.cache/torch_extensions).

Hyperparameters for all: lr 1e-3, betas (0.9, 0.999), eps 1e-8, weight_decay 0.01, decoupled (AdamW).
Each implementation has its own params and grads (same initial values); grads are set once and kept.

Cases
  a      one fp32 tensor of N elements
  b      a 48-tensor fp32 model (12 layers x [qkv 3u, proj 1u, fc1 4u, fc2 4u]) with N elements in total
  c      the 48-tensor model in bf16 (bf16 params, bf16 grads):
           fastopt   fastopt.torch.AdamW on the bf16 params (fp32 masters kept inside)
           torch/ds  ZeRO-Offload style: fp32 master params; each step m.grad.copy_(p16.grad),
                     opt.step() on the masters, p16.copy_(m)
  d      as c, but one bf16 tensor of N elements
With --ds-bf16-direct, cases c/d also time DeepSpeedCPUAdam on the bf16 params directly (no fp32
masters: bf16 params, fp32 states; NOT the same math, informative only).

Timing: --rounds interleaved rounds; in each round every implementation runs --reps steps, in an
order rotated by one each round; the per-round time per step is recorded and the median over rounds
is reported.  --warmup steps per implementation come first (numba JIT, state allocation, DS build).
After timing, each implementation's params are compared with fastopt's (all took the same steps).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

os.environ.setdefault("DS_ACCELERATOR", "cpu")

import torch  # noqa: E402

import fastopt  # noqa: E402
import fastopt.torch as fot  # noqa: E402

LR, BETAS, EPS, WD = 1e-3, (0.9, 0.999), 1e-8, 0.01


def model_sizes(n: int, layers: int = 12) -> list[int]:
    units = [3, 1, 4, 4] * layers          # 48 tensors
    total = sum(units)
    sizes = [max(1, n * u // total) for u in units]
    sizes[-1] += n - sum(sizes)            # exact total N
    return sizes


def make_tensors(sizes, dtype, seed=0):
    g = torch.Generator().manual_seed(seed)
    params = [torch.randn(s, generator=g, dtype=torch.float32).mul_(0.02).to(dtype) for s in sizes]
    grads = [torch.randn(s, generator=g, dtype=torch.float32).mul_(1e-3).to(dtype) for s in sizes]
    return params, grads


def fresh_params(base_params, base_grads):
    ps = []
    for p0, g0 in zip(base_params, base_grads):
        p = torch.nn.Parameter(p0.clone())
        p.grad = g0.clone()
        ps.append(p)
    return ps


# -- implementations: each returns (step_fn, params_to_compare) --------------------------------

def impl_fastopt(base_p, base_g):
    ps = fresh_params(base_p, base_g)
    opt = fot.AdamW(ps, lr=LR, betas=BETAS, eps=EPS, weight_decay=WD)
    return opt.step, ps


def _master_wrapped(make_opt, base_p, base_g):
    """fp32 optimizer on fp32 masters of low-precision params (ZeRO-Offload style)."""
    p16 = fresh_params(base_p, base_g)
    masters = []
    for p in p16:
        m = torch.nn.Parameter(p.detach().float().clone())
        m.grad = torch.empty_like(m)
        masters.append(m)
    opt = make_opt(masters)

    @torch.no_grad()
    def step():
        for m, p in zip(masters, p16):
            m.grad.copy_(p.grad)
        opt.step()
        for m, p in zip(masters, p16):
            p.copy_(m)

    return step, p16


def _torch_fused(ps):
    return torch.optim.AdamW(ps, lr=LR, betas=BETAS, eps=EPS, weight_decay=WD, fused=True)


def _ds(ps):
    from deepspeed.ops.adam import DeepSpeedCPUAdam
    return DeepSpeedCPUAdam(ps, lr=LR, betas=BETAS, eps=EPS, weight_decay=WD, adamw_mode=True)


def impl_torch(base_p, base_g):
    if base_p[0].dtype == torch.float32:
        ps = fresh_params(base_p, base_g)
        return _torch_fused(ps).step, ps
    return _master_wrapped(_torch_fused, base_p, base_g)


def impl_ds(base_p, base_g):
    if base_p[0].dtype == torch.float32:
        ps = fresh_params(base_p, base_g)
        return _ds(ps).step, ps
    return _master_wrapped(_ds, base_p, base_g)


def impl_ds_direct(base_p, base_g):
    ps = fresh_params(base_p, base_g)
    return _ds(ps).step, ps


# -- timing -----------------------------------------------------------------------------------

def run_case(name, sizes, dtype, args):
    base_p, base_g = make_tensors(sizes, dtype)
    impls = [("fastopt", impl_fastopt), ("torch_fused", impl_torch), ("deepspeed", impl_ds)]
    if args.ds_bf16_direct and dtype != torch.float32:
        impls.append(("ds_bf16_direct", impl_ds_direct))
    built = {}
    for label, make in impls:
        try:
            step, ps = make(base_p, base_g)
            for _ in range(args.warmup):
                step()
            built[label] = (step, ps)
        except Exception as exc:  # report and go on with the others
            print(f"  [{name}] {label}: FAILED to set up/warm up: {type(exc).__name__}: {exc}",
                  file=sys.stderr)
    labels = list(built)
    times = {lb: [] for lb in labels}
    for r in range(args.rounds):
        k = r % len(labels)
        for lb in labels[k:] + labels[:k]:
            step = built[lb][0]
            t0 = time.perf_counter()
            for _ in range(args.reps):
                step()
            times[lb].append((time.perf_counter() - t0) / args.reps)
    med = {lb: statistics.median(v) * 1e3 for lb, v in times.items()}
    # all implementations took warmup + rounds*reps steps from the same start: compare params
    diffs = {}
    if "fastopt" in built:
        ref = [p.detach().float() for p in built["fastopt"][1]]
        for lb in labels:
            other = [p.detach().float() for p in built[lb][1]]
            diffs[lb] = max((a - b).abs().max().item() for a, b in zip(ref, other))
    return med, diffs, times


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=float, default=1e7, help="elements per case (total for multi-tensor cases)")
    ap.add_argument("--rounds", type=int, default=15, help="interleaved timing rounds")
    ap.add_argument("--reps", type=int, default=3, help="steps per implementation per round")
    ap.add_argument("--warmup", type=int, default=2, help="untimed steps per implementation first")
    ap.add_argument("--cases", default="a,b,c", help="comma list from a,b,c,d")
    ap.add_argument("--threads", type=int, default=2, help="torch.set_num_threads (also DS's OpenMP)")
    ap.add_argument("--ds-bf16-direct", action="store_true",
                    help="also time DeepSpeedCPUAdam directly on bf16 params in cases c/d")
    args = ap.parse_args()
    n = int(args.n)

    torch.set_num_threads(args.threads)
    import numba
    import deepspeed
    print(f"torch {torch.__version__} (threads {torch.get_num_threads()}), deepspeed {deepspeed.__version__}, "
          f"fastopt {fastopt.__version__}, numba {numba.__version__} (threads {numba.get_num_threads()}), "
          f"OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS')}, NUMBA_NUM_THREADS="
          f"{os.environ.get('NUMBA_NUM_THREADS')}, DS_ACCELERATOR={os.environ.get('DS_ACCELERATOR')}")
    print(f"N={n:,}  rounds={args.rounds}  reps/round={args.reps}  warmup={args.warmup}")

    cases = {
        "a": ("a: 1 x fp32", [n], torch.float32),
        "b": ("b: 48 x fp32", model_sizes(n), torch.float32),
        "c": ("c: 48 x bf16", model_sizes(n), torch.bfloat16),
        "d": ("d: 1 x bf16", [n], torch.bfloat16),
    }
    rows = []
    for key in [c.strip() for c in args.cases.split(",") if c.strip()]:
        name, sizes, dtype = cases[key]
        t0 = time.perf_counter()
        med, diffs, _ = run_case(name, sizes, dtype, args)
        rows.append((name, med, diffs))
        print(f"  {name}: done in {time.perf_counter() - t0:.1f} s", file=sys.stderr)

    labels = ["fastopt", "torch_fused", "deepspeed", "ds_bf16_direct"]
    used = [lb for lb in labels if any(lb in m for _, m, _ in rows)]
    head = f"{'case':<14}" + "".join(f"{lb + ' ms':>19}" for lb in used) \
        + "".join(f"{lb + '/fastopt':>24}" for lb in used if lb != "fastopt")
    print("\nmedian ms per step (ratio > 1: fastopt faster)")
    print(head)
    for name, med, _ in rows:
        line = f"{name:<14}" + "".join(f"{med[lb]:>19.3f}" if lb in med else f"{'-':>19}" for lb in used)
        for lb in used:
            if lb == "fastopt":
                continue
            ok = lb in med and "fastopt" in med
            line += f"{med[lb] / med['fastopt']:>24.2f}" if ok else f"{'-':>24}"
        print(line)
    print("\nmax |param - fastopt param| after the same steps")
    for name, _, diffs in rows:
        print(f"{name:<14}" + "  ".join(f"{lb}={d:.3g}" for lb, d in diffs.items() if lb != "fastopt"))


if __name__ == "__main__":
    main()
