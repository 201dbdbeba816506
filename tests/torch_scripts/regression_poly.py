# ruff: noqa: UP032, B007  (written as the original is: str.format, the loop index read after)
# Fitting a polynomial with one nn.Linear over polynomial features, in the style of the
# pytorch/examples regression script (make_features, get_batch, F.smooth_l1_loss, plain SGD
# through p.data.add_ and p.grad.data, the learned function printed). The target and the
# batches come from NumPy, so every library sees the same numbers. Runs as written under
# `import chainrule as torch`.
import numpy as np

import chainrule as torch
import chainrule.nn.functional as F

POLY_DEGREE = 4
rng = np.random.default_rng(3)
W_target = torch.from_numpy(rng.standard_normal((POLY_DEGREE, 1)).astype(np.float32)) * 0.5
b_target = torch.from_numpy(rng.standard_normal(1).astype(np.float32)) * 0.5


def make_features(x):
    """Builds features i.e. a matrix with columns [x, x^2, x^3, x^4]."""
    x = x.unsqueeze(1)
    return torch.cat([x ** i for i in range(1, POLY_DEGREE + 1)], 1)


def f(x):
    """Approximated function."""
    return x.mm(W_target) + b_target.item()


def poly_desc(W, b):
    """Creates a string description of a polynomial."""
    result = 'y = '
    for i, w in enumerate(W):
        result += '{:+.2f} x^{} '.format(w, i + 1)
    result += '{:+.2f}'.format(b[0])
    return result


def get_batch(batch_size=32):
    """Builds a batch i.e. (x, f(x)) pair."""
    random = torch.from_numpy(rng.uniform(-1, 1, batch_size).astype(np.float32))
    x = make_features(random)
    y = f(x)
    return x, y


# Define model
fc = torch.nn.Linear(W_target.size(0), 1)
with torch.no_grad():
    fc.weight.copy_(torch.from_numpy(rng.standard_normal((1, POLY_DEGREE)).astype(np.float32)))
    fc.bias.fill_(0.1)

losses = []
for batch_idx in range(1, 81):
    # Get data
    batch_x, batch_y = get_batch()

    # Reset gradients
    fc.zero_grad()

    # Forward pass
    output = F.smooth_l1_loss(fc(batch_x), batch_y)
    loss = output.item()
    losses.append(loss)

    # Backward pass
    output.backward()

    # Apply gradients
    for param in fc.parameters():
        param.data.add_(-0.1 * param.grad.data)

    # Stop criterion
    if loss < 1e-3:
        break

report = 'Loss: {:.6f} after {} batches'.format(loss, batch_idx)
line = '==> Learned function:\t' + poly_desc(fc.weight.view(-1), fc.bias)
actual = '==> Actual function:\t' + poly_desc(W_target.view(-1), b_target)
