# A small convolutional classifier in the style of the pytorch/examples mnist script (Conv2d,
# Dropout, max_pool2d, log_softmax, nll_loss, Adadelta with StepLR, a test pass summing the
# loss), on synthetic 12x12 "digits". Runs as written under `import chainrule as torch`.
import numpy as np

import chainrule as torch
import chainrule.nn as nn
import chainrule.nn.functional as F
import chainrule.optim as optim
from chainrule.optim.lr_scheduler import StepLR
from chainrule.utils.data import DataLoader, TensorDataset

rng = np.random.default_rng(0)


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 4, 3, 1)
        self.conv2 = nn.Conv2d(4, 8, 3, 1)
        self.dropout1 = nn.Dropout(0.25)
        self.dropout2 = nn.Dropout(0.5)
        self.fc1 = nn.Linear(8 * 4 * 4, 16)
        self.fc2 = nn.Linear(16, 3)

    def forward(self, x):
        x = self.conv1(x)
        x = F.relu(x)
        x = self.conv2(x)
        x = F.relu(x)
        x = F.max_pool2d(x, 2)
        x = self.dropout1(x)
        x = torch.flatten(x, 1)
        x = self.fc1(x)
        x = F.relu(x)
        x = self.dropout2(x)
        x = self.fc2(x)
        output = F.log_softmax(x, dim=1)
        return output


images = rng.standard_normal((48, 1, 12, 12)).astype(np.float32)
labels = rng.integers(0, 3, 48)
images[np.arange(48), 0, labels * 4, :] += 3.0  # the class is a bright row
device = torch.device("cpu")
model = Net().to(device)
with torch.no_grad():  # the same starting point for every library
    for p in model.parameters():
        p.copy_(torch.tensor(rng.standard_normal(tuple(p.shape)).astype(np.float32) * 0.2))
train_loader = DataLoader(TensorDataset(torch.tensor(images), torch.tensor(labels)),
                          batch_size=16)
optimizer = optim.Adadelta(model.parameters(), lr=1.0)
scheduler = StepLR(optimizer, step_size=1, gamma=0.7)
losses = []
for _epoch in range(1, 4):
    model.eval()  # dropout draws differ between libraries: train with it off, as in eval
    for data, target in train_loader:
        data, target = data.to(device), target.to(device)
        optimizer.zero_grad()
        output = model(data)
        loss = F.nll_loss(output, target)
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    scheduler.step()
model.eval()
test_loss, correct = 0, 0
with torch.no_grad():
    for data, target in train_loader:
        output = model(data)
        test_loss += F.nll_loss(output, target, reduction="sum").item()
        pred = output.argmax(dim=1, keepdim=True)
        correct += pred.eq(target.view_as(pred)).sum().item()
test_loss /= len(train_loader.dataset)
line = f"Test set: Average loss: {test_loss:.4f}, Accuracy: {correct}/{len(train_loader.dataset)}"
