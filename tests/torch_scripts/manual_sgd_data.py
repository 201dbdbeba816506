# Plain SGD written through `.data`, as older PyTorch scripts do. Runs as written under
# `import chainrule as torch`.
import numpy as np

import chainrule as torch

rng = np.random.default_rng(1)
X = torch.FloatTensor(rng.standard_normal((32, 5)).astype(np.float32))
Y = torch.FloatTensor(rng.standard_normal((32, 1)).astype(np.float32))
model = torch.nn.Linear(5, 1)
model.weight.data = torch.tensor(rng.standard_normal((1, 5)).astype(np.float32))
model.bias.data.zero_()
lr = 0.05
losses = []
for _step in range(20):
    loss = torch.nn.functional.mse_loss(model(X), Y)
    model.zero_grad()
    loss.backward()
    for p in model.parameters():
        p.data.add_(p.grad.data, alpha=-lr)
    losses.append(float(loss))
n_out = model.weight.data.size(0)
