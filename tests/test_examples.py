"""The examples run (quick mode), write their outputs, and learn something."""

from __future__ import annotations

import gzip
import json
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
sys.path.insert(0, str(EXAMPLES))
import datasets  # noqa: E402


def run_example(name, out, *extra, block_matplotlib=False):
    code = (
        "import runpy, sys\n"
        + ("sys.modules['matplotlib'] = None\n" if block_matplotlib else "")
        + f"sys.argv = [{name!r}, '--quick', '--out', {str(out)!r}, *{list(extra)!r}]\n"
        + f"sys.path.insert(0, {str(EXAMPLES)!r})\n"
        + f"runpy.run_path({str(EXAMPLES / name)!r}, run_name='__main__')\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout


def test_optimizer_paths(tmp_path):
    out = run_example("optimizer_paths.py", tmp_path)
    assert (tmp_path / "optimizer_paths.png").stat().st_size > 10_000
    summary = json.loads((tmp_path / "optimizer_paths.json").read_text())
    assert set(summary) == {"SGD", "Momentum", "Nesterov", "AdaGrad", "RMSprop", "Adam", "AdamW"}
    for rule, r in summary.items():
        assert r["f_end"] < 0.05 * r["f_start"], rule
        assert r["type"] == "float", rule  # params stayed Python floats
    assert "SGD" in out


def test_compare_optimizers(tmp_path):
    out = run_example("compare_optimizers.py", tmp_path)
    assert (tmp_path / "compare_optimizers.png").stat().st_size > 10_000
    summary = json.loads((tmp_path / "compare_optimizers.json").read_text())
    for rule, r in summary.items():
        assert r["loss_last_10"] < r["loss_first_10"], rule
        assert r["bit_identical"], rule
        assert r["fastopt_step_seconds"] > 0 and r["reference_step_seconds"] > 0
    assert "speed-up" in out


def test_weight_decay(tmp_path):
    run_example("weight_decay.py", tmp_path)
    assert (tmp_path / "weight_decay.png").stat().st_size > 10_000
    curves = json.loads((tmp_path / "weight_decay.json").read_text())
    assert len(curves) == 3
    for name, c in curves.items():
        assert c["loss_last_epoch"] < c["loss_first_epoch"], name
        assert len(c["train"]) == len(c["test"]) == 25


def test_low_precision_state(tmp_path):
    run_example("low_precision_state.py", tmp_path)
    assert (tmp_path / "low_precision_state.png").stat().st_size > 10_000
    summary = json.loads((tmp_path / "low_precision_state.json").read_text())
    assert set(summary) == {"Adam lr 0.001", "AdamW lr 0.001, weight_decay 0.01", "Lion lr 3e-4, weight_decay 0.1"}
    for rule, runs in summary.items():
        assert set(runs) == {"float32", "bfloat16", "int8"}
        for state_dtype, r in runs.items():
            assert r["finite"] and r["loss"][-1] < 0.5 * r["loss"][0], (rule, state_dtype)
            assert r["test_accuracy"] > 0.85, (rule, state_dtype)
        assert runs["int8"]["state_bytes_per_param"] < 0.26 * runs["float32"]["state_bytes_per_param"]


def test_data_parallel_on_two_ranks(tmp_path):
    from test_distributed import mpiexec

    command = [mpiexec(), "-n", "2", sys.executable, str(EXAMPLES / "data_parallel.py"), "--quick", "--out",
               str(tmp_path)]
    result = subprocess.run(command, capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stderr[-3000:]
    summary = json.loads((tmp_path / "data_parallel.json").read_text())
    assert summary["ranks"] == 2 and "MPICH" in summary["mpi"]
    assert summary["identical_on_every_rank"] and summary["equal_to_one_process"]
    assert sum(summary["state_bytes_per_rank"]) == summary["state_bytes_one_process"]
    assert max(summary["state_bytes_per_rank"]) <= summary["state_bytes_one_process"] / 2 + 2**20
    assert summary["test_accuracy"] > 0.5
    assert "equal to one process: True" in result.stdout


def test_examples_run_without_matplotlib(tmp_path):
    out = run_example("optimizer_paths.py", tmp_path, block_matplotlib=True)
    assert "no plot drawn" in out
    assert (tmp_path / "optimizer_paths.json").exists()
    assert not (tmp_path / "optimizer_paths.png").exists()


# -- the MNIST loader, on tiny generated files -------------------------------------


def write_idx(path: Path, array: np.ndarray, compress=False):
    header = bytes([0, 0, 0x08, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    data = header + array.astype(np.uint8).tobytes()
    (gzip.open if compress else open)(path, "wb").write(data)


@pytest.mark.parametrize("compress", [False, True])
def test_mnist_loader_reads_idx_folders(tmp_path, compress):
    rng = np.random.default_rng(0)
    images = {"train": rng.integers(0, 256, (5, 28, 28)), "t10k": rng.integers(0, 256, (3, 28, 28))}
    labels = {"train": rng.integers(0, 10, 5), "t10k": rng.integers(0, 10, 3)}
    suffix = ".gz" if compress else ""
    for part in ("train", "t10k"):
        write_idx(tmp_path / f"{part}-images-idx3-ubyte{suffix}", images[part], compress)
        write_idx(tmp_path / f"{part}-labels-idx1-ubyte{suffix}", labels[part], compress)
    x_train, t_train, x_test, t_test = datasets.load_mnist(tmp_path)
    assert x_train.shape == (5, 784) and x_test.shape == (3, 784)
    assert np.array_equal(x_train, images["train"].reshape(5, -1) / 255.0)
    assert np.array_equal(t_test, labels["t10k"])
    assert x_train.dtype == np.float64 and x_train.max() <= 1.0


def test_mnist_loader_reads_npz_and_rejects_bad_files(tmp_path):
    rng = np.random.default_rng(1)
    arrays = {"x_train": rng.integers(0, 256, (4, 28, 28), dtype=np.uint8),
              "y_train": np.arange(4), "x_test": rng.integers(0, 256, (2, 28, 28), dtype=np.uint8),
              "y_test": np.arange(2)}
    np.savez(tmp_path / "mnist.npz", **arrays)
    x_train, t_train, _, _ = datasets.load_mnist(tmp_path / "mnist.npz", n_train=3)
    assert x_train.shape == (3, 784) and t_train.tolist() == [0, 1, 2]

    bad = tmp_path / "bad-idx"
    bad.write_bytes(b"\x01\x02\x08\x01" + b"\x00" * 8)
    with pytest.raises(ValueError, match="magic"):
        datasets.read_idx(bad)
    truncated = tmp_path / "short-idx"
    truncated.write_bytes(bytes([0, 0, 0x08, 1]) + struct.pack(">I", 10) + b"\x00" * 4)
    with pytest.raises(ValueError, match="expected 10 bytes"):
        datasets.read_idx(truncated)
    with pytest.raises(FileNotFoundError):
        datasets.load_mnist(tmp_path / "nowhere")


def test_compare_optimizers_trains_on_local_mnist_files(tmp_path):
    rng = np.random.default_rng(2)
    arrays = {"x_train": rng.integers(0, 256, (300, 28, 28), dtype=np.uint8),
              "y_train": rng.integers(0, 10, 300), "x_test": rng.integers(0, 256, (50, 28, 28), dtype=np.uint8),
              "y_test": rng.integers(0, 10, 50)}
    np.savez(tmp_path / "mnist.npz", **arrays)
    out = run_example("compare_optimizers.py", tmp_path, "--mnist", str(tmp_path / "mnist.npz"))
    assert "300 training rows of 784 features" in out


def test_torch_cpu_training(tmp_path):
    out = run_example("torch_cpu_training.py", tmp_path)
    assert (tmp_path / "torch_cpu_training.png").stat().st_size > 10_000
    summary = json.loads((tmp_path / "torch_cpu_training.json").read_text())
    torch_run = summary["torch.optim.AdamW (fp32)"]
    fast_run = summary["fastopt.torch.AdamW (fp32)"]
    bf16_run = summary["fastopt.torch.AdamW (bf16 model)"]
    for r in (torch_run, fast_run, bf16_run):
        assert np.mean(r["losses"][-10:]) < 0.5 * np.mean(r["losses"][:10])
    # the swap changes nothing but the last bits; the bf16 model follows the fp32 curve
    assert summary["fp32_loss_gap"] < 1e-4
    assert abs(np.mean(bf16_run["losses"][-10:]) - np.mean(fast_run["losses"][-10:])) < 0.1
    assert "largest param difference" in out
