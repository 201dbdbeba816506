"""Graph drawing (DOT) and the step-by-step backward trace."""

import re
import shutil

import numpy as np
import pytest

import chainrule as cr
from chainrule.diagnostics import draw_graph, explain_backward, render


def _abc():
    a = cr.tensor([0.5, -1.0], dtype=cr.float64, requires_grad=True)
    b = cr.tensor([2.0, 0.25], dtype=cr.float64, requires_grad=True)
    c = cr.tensor(0.1, dtype=cr.float64, requires_grad=True)
    a.name, b.name, c.name = "a", "b", "c"
    return a, b, c


def _labels(dot):
    return re.findall(r'^\s+(n\d+) \[.*label="([^"]*)"', dot, flags=re.M)


def test_draw_graph_of_tanh_of_a_times_b_plus_c_names_every_node():
    a, b, c = _abc()
    dot = draw_graph((a * b + c).tanh())
    labels = [lab.split("\\n")[0] for _, lab in _labels(dot)]
    assert sorted(labels) == ["Add", "Mul", "Tanh", "a", "b", "c"]
    assert dot.startswith("digraph") and dot.rstrip().endswith("}")
    assert len(re.findall(r"n\d+ -> n\d+", dot)) == 5  # a,b->Mul; Mul,c->Add; Add->Tanh
    assert 'label="Tanh\\nvalue (2,)"' in dot and 'label="c\\nvalue scalar"' in dot


def test_draw_graph_shows_gradient_shapes_once_computed_and_unnamed_leaves_as_leaf():
    x = cr.tensor(np.ones((3, 4)), requires_grad=True)
    w = cr.tensor(np.ones((4, 2)), requires_grad=True)
    y = (x @ w).sum()
    y.backward()
    dot = draw_graph(y)
    labels = dict(_labels(dot))
    leaf_labels = [lab for lab in labels.values() if lab.startswith("leaf")]
    assert sorted(leaf_labels) == ["leaf\\nvalue (3, 4)\\ngrad (3, 4)",
                                   "leaf\\nvalue (4, 2)\\ngrad (4, 2)"]
    assert "Matmul\\nvalue (3, 2)" in dot and "Sum\\nvalue scalar" in dot


def test_draw_graph_marks_constants():
    x = cr.tensor([1.0, 2.0], requires_grad=True)
    dot = draw_graph(x * cr.tensor([3.0, 4.0]))  # the constant's shape is not recorded
    assert dot.count('label="constant"') == 1 and "c0 -> n0" in dot


def test_render_needs_graphviz_or_says_so(tmp_path):
    a, b, c = _abc()
    dot = draw_graph((a * b + c).tanh())
    if shutil.which("dot") is None:
        with pytest.raises(RuntimeError, match="Graphviz 'dot' program is not installed"):
            render(dot, tmp_path / "g.svg")
    else:
        out = render(dot, tmp_path / "g.png")
        assert open(out, "rb").read(8) == b"\x89PNG\r\n\x1a\n"
    with pytest.raises(ValueError, match="format must be svg, png or pdf"):
        render(dot, tmp_path / "g.jpg")


def _grad_in(text, leaf):
    m = re.search(rf"^leaf {leaf}: gradient = (.*)$", text, flags=re.M)
    return np.array(eval(m.group(1).split("  (")[0]))  # a printed list or number


def test_explain_backward_gives_closed_form_gradients_and_leaves_grad_untouched():
    a, b, c = _abc()
    y = (a * b + c).tanh().sum()
    text = explain_backward(y, file=False)
    u = a.data * b.data + c.data
    d = 1 - np.tanh(u) ** 2
    np.testing.assert_allclose(_grad_in(text, "a"), d * b.data, rtol=1e-3)
    np.testing.assert_allclose(_grad_in(text, "b"), d * a.data, rtol=1e-3)
    np.testing.assert_allclose(_grad_in(text, "c"), d.sum(), rtol=1e-3)
    # the local derivative of tanh is printed as 1 - tanh(u)^2, elementwise
    m = re.search(r"local derivative d out/d \[\d\] Add = (.*) \(elementwise\)", text)
    np.testing.assert_allclose(np.array(eval(m.group(1))), d, rtol=1e-3)
    assert "rule: y = tanh(x)" in text and "receives g = [1., 1.]" in text
    assert a.grad is None
    y.backward()  # the graph is intact
    np.testing.assert_allclose(a.grad.numpy(), d * b.data, rtol=1e-12)


def test_explain_backward_sums_contributions_of_a_reused_input():
    x = cr.tensor(3.0, dtype=cr.float64, requires_grad=True)
    x.name = "x"
    text = explain_backward(x * x + x, file=False)
    assert float(_grad_in(text, "x")) == pytest.approx(2 * 3.0 + 1)
    assert "sum of 3 contributions: [1] Add, [2] Mul, [2] Mul" in text


def test_explain_backward_prints_full_jacobian_for_matmul():
    a = cr.tensor([[1.0, 2.0]], requires_grad=True)
    w = cr.tensor([[3.0], [4.0]], requires_grad=True)
    a.name, w.name = "a", "w"
    text = explain_backward(a @ w, file=False)
    assert "d out/d a (Jacobian 1x2) = [[3., 4.]]" in text
    assert "d out/d w (Jacobian 1x2) = [[1., 2.]]" in text
