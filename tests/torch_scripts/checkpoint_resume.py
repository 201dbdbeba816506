# Train, save a checkpoint dict to a file object, load it with map_location and resume; the
# resumed run must equal the uninterrupted one. Runs as written under `import chainrule as torch`.
import io

import numpy as np

import chainrule as torch
import chainrule.nn as nn

rng = np.random.default_rng(2)
X = torch.tensor(rng.standard_normal((24, 3)).astype(np.float32))
Y = torch.tensor(rng.standard_normal((24, 2)).astype(np.float32))
W = rng.standard_normal((2, 3)).astype(np.float32)


def make():
    m = nn.Linear(3, 2)
    with torch.no_grad():
        m.weight.copy_(torch.tensor(W))
        m.bias.zero_()
    return m, torch.optim.Adam(m.parameters(), lr=0.05)


def run(model, opt, steps):
    out = []
    for _ in range(steps):
        opt.zero_grad()
        loss = nn.MSELoss()(model(X), Y)
        loss.backward()
        opt.step()
        out.append(loss.item())
    return out


model, opt = make()
losses = run(model, opt, 6)

model, opt = make()
first = run(model, opt, 3)
buf = io.BytesIO()
torch.save({"epoch": 3, "model_state_dict": model.state_dict(),
            "optimizer_state_dict": opt.state_dict(), "loss": first[-1]}, buf)
buf.seek(0)
ck = torch.load(buf, map_location=torch.device("cpu"), weights_only=True)
model, opt = make()
model.load_state_dict(ck["model_state_dict"])
opt.load_state_dict(ck["optimizer_state_dict"])
resumed = first + run(model, opt, 3)
