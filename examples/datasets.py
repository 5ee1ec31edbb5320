"""Data for the examples, never downloaded.

* :func:`load_digits`: scikit-learn's handwritten digits (1,797 8x8 images,
  shipped inside the scikit-learn package).
* :func:`load_mnist`: MNIST from local files the user already has: a folder
  with the four IDX files (``train-images-idx3-ubyte`` etc., optionally
  ``.gz``) or one ``.npz`` with ``x_train, y_train, x_test, y_test``.

Both return ``(x_train, t_train, x_test, t_test)``: float64 rows scaled to
[0, 1] and integer labels.
"""

from __future__ import annotations

import gzip
import struct
from pathlib import Path

import numpy as np

IDX_DTYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}
IDX_FILES = {
    "x_train": "train-images-idx3-ubyte",
    "y_train": "train-labels-idx1-ubyte",
    "x_test": "t10k-images-idx3-ubyte",
    "y_test": "t10k-labels-idx1-ubyte",
}


def load_digits(n_train: int | None = None, seed: int = 0):
    try:
        from sklearn.datasets import load_digits as sklearn_digits
    except ImportError:
        raise SystemExit(
            "these examples use scikit-learn's digits data set: pip install 'fastopt[examples]', "
            "or pass --mnist PATH with local MNIST files"
        ) from None
    digits = sklearn_digits()
    x = digits.data.astype(np.float64) / 16.0
    t = digits.target.astype(np.int64)
    order = np.random.default_rng(seed).permutation(len(x))
    x, t = x[order], t[order]
    n_train = n_train or int(0.8 * len(x))
    return x[:n_train], t[:n_train], x[n_train:], t[n_train:]


def read_idx(path: Path) -> np.ndarray:
    """One IDX file (http://yann.lecun.com/exdb/mnist/ format), gzipped or not."""
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as f:
        data = f.read()
    if len(data) < 4 or data[0] != 0 or data[1] != 0:
        raise ValueError(f"{path}: not an IDX file (bad magic number)")
    code, ndim = data[2], data[3]
    if code not in IDX_DTYPES:
        raise ValueError(f"{path}: unknown IDX element type 0x{code:02x}")
    shape = struct.unpack(f">{ndim}I", data[4 : 4 + 4 * ndim])
    dtype = np.dtype(IDX_DTYPES[code])
    expected = int(np.prod(shape)) * dtype.itemsize
    payload = data[4 + 4 * ndim :]
    if len(payload) != expected:
        raise ValueError(f"{path}: expected {expected} bytes of data for shape {shape}, found {len(payload)}")
    return np.frombuffer(payload, dtype=dtype).reshape(shape)


def load_mnist(path, n_train: int | None = None):
    path = Path(path)
    if path.is_file() and path.suffix == ".npz":
        with np.load(path, allow_pickle=False) as npz:
            missing = [k for k in IDX_FILES if k not in npz.files]
            if missing:
                raise ValueError(f"{path}: missing arrays {missing}")
            arrays = {k: npz[k] for k in IDX_FILES}
    elif path.is_dir():
        arrays = {}
        for key, name in IDX_FILES.items():
            candidates = [path / name, path / (name + ".gz")]
            found = next((c for c in candidates if c.exists()), None)
            if found is None:
                raise FileNotFoundError(f"{path}: no {name} or {name}.gz")
            arrays[key] = read_idx(found)
    else:
        raise FileNotFoundError(f"{path}: expected a folder of IDX files or an .npz file")
    x_train = arrays["x_train"].reshape(len(arrays["x_train"]), -1).astype(np.float64) / 255.0
    x_test = arrays["x_test"].reshape(len(arrays["x_test"]), -1).astype(np.float64) / 255.0
    t_train = arrays["y_train"].astype(np.int64)
    t_test = arrays["y_test"].astype(np.int64)
    if n_train:
        x_train, t_train = x_train[:n_train], t_train[:n_train]
    return x_train, t_train, x_test, t_test


def load(mnist_path=None, n_train=None, seed=0):
    return load_mnist(mnist_path, n_train) if mnist_path else load_digits(n_train, seed)
