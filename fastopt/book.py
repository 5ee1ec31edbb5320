"""A minimal network in the style of "Deep Learning from Scratch", for demos and tests.

The layers hold references to the arrays in ``net.params`` - exactly the
property that makes the optimizer's in-place update matter: if ``update``
replaced an array instead of writing into it, the layers would keep training
the old one.  Everything is float64, as the book makes it.
"""

from __future__ import annotations

from collections import OrderedDict

import numpy as np


class Affine:
    def __init__(self, W, b):
        self.W, self.b = W, b
        self.x = self.dW = self.db = None

    def forward(self, x):
        self.x = x
        return x @ self.W + self.b

    def backward(self, dout):
        self.dW = self.x.T @ dout
        self.db = np.sum(dout, axis=0)
        return dout @ self.W.T


class Relu:
    def __init__(self):
        self.mask = None

    def forward(self, x):
        self.mask = x <= 0
        out = x.copy()
        out[self.mask] = 0
        return out

    def backward(self, dout):
        dout = dout.copy()
        dout[self.mask] = 0
        return dout


def softmax(x):
    x = x - x.max(axis=1, keepdims=True)
    e = np.exp(x)
    return e / e.sum(axis=1, keepdims=True)


class SoftmaxWithLoss:
    def __init__(self):
        self.y = self.t = None

    def forward(self, x, t):
        self.t = t
        self.y = softmax(x)
        n = x.shape[0]
        return -np.sum(np.log(self.y[np.arange(n), t] + 1e-7)) / n

    def backward(self):
        n = self.t.shape[0]
        dx = self.y.copy()
        dx[np.arange(n), self.t] -= 1
        return dx / n


class MultiLayerNet:
    """Affine-ReLU-...-Affine-Softmax with He initialisation (book ch. 6)."""

    def __init__(self, input_size, hidden_sizes, output_size, seed=0, weight_decay_lambda=0.0):
        rng = np.random.default_rng(seed)
        sizes = [input_size, *hidden_sizes, output_size]
        self.weight_decay_lambda = weight_decay_lambda
        self.params = {}
        for i in range(1, len(sizes)):
            scale = np.sqrt(2.0 / sizes[i - 1])
            self.params[f"W{i}"] = scale * rng.standard_normal((sizes[i - 1], sizes[i]))
            self.params[f"b{i}"] = np.zeros(sizes[i])
        self.layers = OrderedDict()
        n_affine = len(sizes) - 1
        for i in range(1, n_affine + 1):
            self.layers[f"Affine{i}"] = Affine(self.params[f"W{i}"], self.params[f"b{i}"])
            if i < n_affine:
                self.layers[f"Relu{i}"] = Relu()
        self.last_layer = SoftmaxWithLoss()
        self.n_affine = n_affine

    def predict(self, x):
        for layer in self.layers.values():
            x = layer.forward(x)
        return x

    def loss(self, x, t):
        decay = 0.0
        for i in range(1, self.n_affine + 1):
            W = self.params[f"W{i}"]
            decay += 0.5 * self.weight_decay_lambda * np.sum(W * W)
        return self.last_layer.forward(self.predict(x), t) + decay

    def accuracy(self, x, t):
        return float(np.mean(np.argmax(self.predict(x), axis=1) == t))

    def gradient(self, x, t):
        """Loss and a new grads dict (the book's backprop ``gradient``)."""
        loss = self.loss(x, t)
        dout = self.last_layer.backward()
        for layer in reversed(self.layers.values()):
            dout = layer.backward(dout)
        grads = {}
        for i in range(1, self.n_affine + 1):
            layer = self.layers[f"Affine{i}"]
            grads[f"W{i}"] = layer.dW + self.weight_decay_lambda * layer.W
            grads[f"b{i}"] = layer.db
        return loss, grads


def teacher_dataset(n_samples=2000, n_features=64, n_classes=10, seed=0):
    """Labelled data from a fixed random two-layer "teacher" network.

    Generated, never downloaded: the same seed gives the same data anywhere.
    """
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n_samples, n_features))
    w1 = rng.standard_normal((n_features, 32))
    w2 = rng.standard_normal((32, n_classes))
    t = np.argmax(np.tanh(x @ w1) @ w2, axis=1)
    return x, t
