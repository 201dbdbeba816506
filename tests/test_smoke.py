import numpy as np

import chainrule as cr


def test_tanh_layer_gradient_matches_closed_form():
    x = cr.tensor(np.array([[0.5, -1.0]]), dtype=cr.float64)
    w = cr.tensor(np.array([[0.3], [0.2]]), dtype=cr.float64, requires_grad=True)
    y = (x @ w).tanh().sum()
    y.backward()
    pre = 0.5 * 0.3 - 1.0 * 0.2
    expected = (1 - np.tanh(pre) ** 2) * x.data.T
    np.testing.assert_allclose(w.grad.numpy(), expected, rtol=1e-12)
