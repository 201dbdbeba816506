# A classifier trained from a Dataset subclass through a DataLoader, in the style of the
# public PyTorch examples. Runs as written under `import chainrule as torch`.
import numpy as np

import chainrule as torch
import chainrule.nn as nn
import chainrule.nn.functional as F
import chainrule.nn.parallel  # noqa: F401  (imported at the top of many scripts)
from chainrule.utils.data import DataLoader, Dataset

device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
torch.backends.cudnn.benchmark = True
rng = np.random.default_rng(0)


class Blobs(Dataset):
    def __init__(self, n):
        self.x = rng.standard_normal((n, 4)).astype(np.float32)
        self.y = (self.x[:, 0] + self.x[:, 1] > 0).astype(np.int64)

    def __len__(self):
        return len(self.x)

    def __getitem__(self, i):
        return torch.tensor(self.x[i]), torch.tensor(self.y[i])


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1 = nn.Linear(4, 8)
        self.fc2 = nn.Linear(8, 2)

    def forward(self, x):
        return F.log_softmax(self.fc2(F.relu(self.fc1(x))), dim=1)


model = Net().to(device)
with torch.no_grad():  # the same starting point for every library
    for p in model.parameters():
        p.copy_(torch.tensor(rng.standard_normal(tuple(p.shape)).astype(np.float32) * 0.5))
loader = DataLoader(Blobs(64), batch_size=16, shuffle=False)
optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
losses = []
for epoch in range(2):
    model.train()
    for batch_idx, (data, target) in enumerate(loader):
        data, target = data.to(device), target.to(device)
        optimizer.zero_grad()
        loss = F.nll_loss(model(data), target)
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
        line = f"epoch {epoch} [{batch_idx * len(data)}/{len(loader.dataset)}] loss {loss:.4f}"
model.eval()
with torch.inference_mode():
    correct = sum(int((model(d).argmax(dim=1) == t).sum()) for d, t in loader)
