# ruff: noqa: UP008  (written as the original is: super(VAE, self))
# A variational autoencoder in the style of the pytorch/examples vae script: a Linear encoder
# to mu and logvar, the reparameterization trick with torch.randn_like, a sigmoid decoder,
# the summed binary cross-entropy plus the KL divergence, Adam, and decoding samples drawn
# with torch.randn. The data are synthetic 8x8 "images" in [0, 1]; the weights and the
# training noise come from NumPy, so every library computes the same losses (the two
# libraries' random streams differ). Runs as written under `import chainrule as torch`.
import numpy as np

import chainrule as torch
import chainrule.nn.functional as F
from chainrule import nn, optim
from chainrule.utils.data import DataLoader, TensorDataset

rng = np.random.default_rng(5)
torch.manual_seed(1)
device = torch.device("cpu")
D, H, Z = 64, 32, 4


class VAE(nn.Module):
    def __init__(self):
        super(VAE, self).__init__()

        self.fc1 = nn.Linear(D, H)
        self.fc21 = nn.Linear(H, Z)
        self.fc22 = nn.Linear(H, Z)
        self.fc3 = nn.Linear(Z, H)
        self.fc4 = nn.Linear(H, D)

    def encode(self, x):
        h1 = F.relu(self.fc1(x))
        return self.fc21(h1), self.fc22(h1)

    def reparameterize(self, mu, logvar, eps=None):
        std = torch.exp(0.5 * logvar)
        if eps is None:
            eps = torch.randn_like(std)
        return mu + eps * std

    def decode(self, z):
        h3 = F.relu(self.fc3(z))
        return torch.sigmoid(self.fc4(h3))

    def forward(self, x, eps=None):
        mu, logvar = self.encode(x.view(-1, D))
        z = self.reparameterize(mu, logvar, eps)
        return self.decode(z), mu, logvar


# Reconstruction + KL divergence losses summed over all elements and batch
def loss_function(recon_x, x, mu, logvar):
    BCE = F.binary_cross_entropy(recon_x, x.view(-1, D), reduction='sum')

    # see Appendix B from VAE paper:
    # Kingma and Welling. Auto-Encoding Variational Bayes. ICLR, 2014
    # 0.5 * sum(1 + log(sigma^2) - mu^2 - sigma^2)
    KLD = -0.5 * torch.sum(1 + logvar - mu.pow(2) - logvar.exp())

    return BCE + KLD


# two kinds of images: bright left half or bright top half, with noise, clipped to [0, 1]
kind = rng.integers(0, 2, 64)
images = np.zeros((64, 1, 8, 8), np.float32)
images[kind == 0, :, :, :4] = 0.9
images[kind == 1, :, :4, :] = 0.9
images = np.clip(images + 0.1 * rng.random(images.shape), 0, 1).astype(np.float32)
train_loader = DataLoader(TensorDataset(torch.from_numpy(images), torch.from_numpy(kind)),
                          batch_size=16, shuffle=False)

model = VAE().to(device)
with torch.no_grad():
    for p in model.parameters():
        p.copy_(torch.from_numpy(rng.standard_normal(tuple(p.shape)).astype(np.float32) * 0.2))
optimizer = optim.Adam(model.parameters(), lr=1e-2)
noise = rng.standard_normal((3, 4, 16, Z)).astype(np.float32)  # epoch, batch, sample, z


def train(epoch):
    model.train()
    train_loss = 0
    for batch_idx, (data, _) in enumerate(train_loader):
        data = data.to(device)
        optimizer.zero_grad()
        eps = torch.from_numpy(noise[epoch - 1, batch_idx])
        recon_batch, mu, logvar = model(data, eps)
        loss = loss_function(recon_batch, data, mu, logvar)
        loss.backward()
        train_loss += loss.item()
        optimizer.step()
        losses.append(loss.item() / len(data))
    return train_loss / len(train_loader.dataset)


losses = []
epoch_losses = [train(epoch) for epoch in range(1, 4)]

# with torch.randn_like's own noise, and decoding samples from the prior
with torch.no_grad():
    recon, mu, logvar = model(torch.from_numpy(images[:8]))
    sampled_loss = loss_function(recon, torch.from_numpy(images[:8]), mu, logvar).item()
    sample = torch.randn(64, Z).to(device)
    sample = model.decode(sample).cpu()
    assert np.isfinite(sampled_loss) and float(sample.min()) >= 0 and float(sample.max()) <= 1
n_out = list(sample.view(64, 1, 8, 8).shape)
