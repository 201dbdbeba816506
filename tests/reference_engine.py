"""A reference reverse-mode engine in about a hundred lines, for reading and for testing.

It has the semantics of chainrule's engine with none of its speed work: every value is a
NumPy float64 array, every op records a closure that maps the output's gradient to its inputs'
gradients, and ``backward`` visits the graph in reverse topological order (found by a
depth-first search, recursive: fine for the small graphs of the tests), summing the gradients
that reach each node. Broadcasting is undone in one place (``_unbroadcast``), as in the real
engine. ``tests/test_reference_engine.py`` holds chainrule equal to it on random graphs.
"""

from __future__ import annotations

import numpy as np


class Value:
    """An array, the gradient backward leaves in it, and how it was made."""

    def __init__(self, data, parents=(), vjp=None):
        self.data = np.asarray(data, dtype=np.float64)
        self.grad = np.zeros_like(self.data)
        self.parents = parents  # the Values this one was computed from
        self.vjp = vjp  # g -> one gradient per parent (the chain rule for this op)

    # -- ops: forward value and vector-Jacobian product side by side -----------------------
    def __add__(self, other):
        return Value(self.data + other.data, (self, other), lambda g: (g, g))

    def __mul__(self, other):
        return Value(self.data * other.data, (self, other),
                     lambda g: (g * other.data, g * self.data))

    def __sub__(self, other):
        return Value(self.data - other.data, (self, other), lambda g: (g, -g))

    def __truediv__(self, other):
        a, b = self.data, other.data
        return Value(a / b, (self, other), lambda g: (g / b, -g * a / (b * b)))

    def __matmul__(self, other):
        a, b = self.data, other.data
        return Value(a @ b, (self, other), lambda g: (g @ b.T, a.T @ g))

    def tanh(self):
        y = np.tanh(self.data)
        return Value(y, (self,), lambda g: (g * (1 - y * y),))

    def exp(self):
        y = np.exp(self.data)
        return Value(y, (self,), lambda g: (g * y,))

    def sigmoid(self):
        y = 1 / (1 + np.exp(-self.data))
        return Value(y, (self,), lambda g: (g * y * (1 - y),))

    def relu(self):
        x = self.data
        return Value(np.maximum(x, 0), (self,), lambda g: (g * (x > 0),))

    def sum(self, axis=None, keepdims=False):
        shape = self.data.shape

        def vjp(g):
            if axis is not None and not keepdims:
                g = np.expand_dims(g, axis)
            return (np.broadcast_to(g, shape),)

        return Value(self.data.sum(axis=axis, keepdims=keepdims), (self,), vjp)

    def mean(self):
        n = self.data.size
        return Value(self.data.mean(), (self,),
                     lambda g: (np.broadcast_to(g / n, self.data.shape),))

    # -- the backward pass ------------------------------------------------------------------
    def backward(self):
        """Add d(self)/d(v) into ``v.grad`` for every Value v that self depends on."""
        order, seen = [], set()

        def visit(v):  # depth first: a node is placed after everything it was made from
            if id(v) not in seen:
                seen.add(id(v))
                for p in v.parents:
                    visit(p)
                order.append(v)

        visit(self)
        grads = {id(self): np.ones_like(self.data)}
        for v in reversed(order):  # consumers first: each node's gradient is complete here
            g = grads.pop(id(v), None)
            if g is None:
                continue
            if not v.parents:  # a leaf: accumulate, as .grad does across backward calls
                v.grad = v.grad + g
                continue
            for p, gp in zip(v.parents, v.vjp(g)):
                gp = _unbroadcast(gp, p.data.shape)
                grads[id(p)] = grads[id(p)] + gp if id(p) in grads else gp


def _unbroadcast(g, shape):
    """Sum g over the dims broadcasting added or stretched, so that it has ``shape``."""
    while g.ndim > len(shape):
        g = g.sum(axis=0)
    for i, n in enumerate(shape):
        if n == 1 and g.shape[i] != 1:
            g = g.sum(axis=i, keepdims=True)
    return g
