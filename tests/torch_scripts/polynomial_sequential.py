# Fitting sin(x) with a third-order polynomial, as the "Learning PyTorch with Examples"
# tutorial does: first autograd on raw tensors, then nn.Sequential with nn.Flatten, MSELoss
# and an optimizer. Runs as written under `import chainrule as torch`.
import math

import chainrule as torch

x = torch.linspace(-math.pi, math.pi, 200)
y = torch.sin(x)

# autograd: weights as tensors that require grad
a = torch.tensor(0.1, requires_grad=True)
b = torch.tensor(0.2, requires_grad=True)
c = torch.tensor(-0.1, requires_grad=True)
d = torch.tensor(0.05, requires_grad=True)
learning_rate = 1e-6
losses = []
for _t in range(20):
    y_pred = a + b * x + c * x ** 2 + d * x ** 3
    loss = (y_pred - y).pow(2).sum()
    losses.append(loss.item())
    loss.backward()
    with torch.no_grad():
        for w in (a, b, c, d):
            w -= learning_rate * w.grad
            w.grad = None

# nn.Sequential and an optimizer
p = torch.tensor([1, 2, 3])
xx = x.unsqueeze(-1).pow(p)
model = torch.nn.Sequential(torch.nn.Linear(3, 1), torch.nn.Flatten(0, 1))
with torch.no_grad():
    model[0].weight.copy_(torch.tensor([[0.3, -0.1, 0.05]]))
    model[0].bias.fill_(0.1)
loss_fn = torch.nn.MSELoss(reduction="sum")
optimizer = torch.optim.RMSprop(model.parameters(), lr=1e-3)
for t in range(30):
    y_pred = model(xx)
    loss = loss_fn(y_pred, y)
    if t % 10 == 9:
        line = f"{t} {loss.item():.4f}"
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
    losses.append(loss.item())
linear_layer = model[0]
line = (f"Result: y = {linear_layer.bias.item():.4f} + {linear_layer.weight[:, 0].item():.4f} x"
        f" + {linear_layer.weight[:, 1].item():.4f} x^2 + {linear_layer.weight[:, 2].item():.4f}"
        " x^3")
