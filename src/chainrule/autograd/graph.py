"""The one walk of the graph: how many consumers each node has, and a topological order.

A node is an :class:`~chainrule.autograd.op.Op` (its ``parents`` are its inputs' nodes: an Op,
a leaf Tensor, or None for a constant) or a leaf Tensor. The backward pass, ``grad()``'s
pruning and the graph pictures of ``chainrule.diagnostics`` all walk the graph with these two
functions. Both are iterative, so a chain of 100,000 ops is fine.
"""

from __future__ import annotations

from .op import Op


def count_consumers(roots) -> dict:
    """``{node: n}`` for every op and leaf reachable from ``roots`` (ops or leaves) through
    ``parents``, except the roots no other reachable op consumes: ``n`` is how many edges of
    the reachable graph point at the node (an op that takes ``x`` twice counts twice)."""
    counts: dict = {}
    stack = [r for r in roots if isinstance(r, Op)]
    seen = set(stack)
    while stack:
        op = stack.pop()
        for p in op.parents:
            if p is None:
                continue
            n = counts.get(p)
            counts[p] = 1 if n is None else n + 1
            if n is None and p not in seen and isinstance(p, Op):
                seen.add(p)
                stack.append(p)
    return counts


def topological_order(roots, counts=None) -> list:
    """Every node reachable from ``roots``, each one before the nodes that made its inputs
    (consumers first: the order in which backward visits them). ``counts`` is
    :func:`count_consumers` of ``roots``, when the caller has it already."""
    pending = dict(count_consumers(roots) if counts is None else counts)
    ready = [r for r in dict.fromkeys(roots) if r not in pending]
    order = []
    while ready:
        node = ready.pop()
        order.append(node)
        if isinstance(node, Op):
            for p in node.parents:
                if p is not None:
                    n = pending[p] - 1
                    pending[p] = n
                    if n == 0:
                        ready.append(p)
    return order
