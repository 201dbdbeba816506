# A character-level model in the style of makemore: bigram counts normalized into a table,
# sampling with torch.multinomial from a seeded torch.Generator, then an MLP over a context of
# embeddings trained with F.cross_entropy on minibatches. Runs as written under
# `import chainrule as torch`.
import numpy as np

import chainrule as torch
import chainrule.nn.functional as F

words = ["emma", "olivia", "ava", "isabella", "sophia", "mia", "amelia", "harper", "evelyn",
         "abigail", "emily", "ella", "elizabeth", "camila", "luna", "sofia", "avery", "mila"]
chars = sorted(set("".join(words)))
stoi = {s: i + 1 for i, s in enumerate(chars)}
stoi["."] = 0
itos = {i: s for s, i in stoi.items()}
V = len(stoi)

# bigrams: counts, smoothed probabilities, the average negative log likelihood
N = torch.zeros((V, V), dtype=torch.int32)
for w in words:
    cs = ["."] + list(w) + ["."]
    for ch1, ch2 in zip(cs, cs[1:]):
        N[stoi[ch1], stoi[ch2]] += 1
P = (N + 1).float()
P /= P.sum(1, keepdim=True)
log_likelihood, n = 0.0, 0
for w in words:
    cs = ["."] + list(w) + ["."]
    for ch1, ch2 in zip(cs, cs[1:]):
        log_likelihood += torch.log(P[stoi[ch1], stoi[ch2]]).item()
        n += 1
nll = -log_likelihood / n
g = torch.Generator().manual_seed(2147483647)
ix = torch.multinomial(P[0], num_samples=5, replacement=True, generator=g)
n_out = tuple(ix.shape)

# an MLP over three characters of context
block_size = 3
X, Y = [], []
for w in words:
    context = [0] * block_size
    for ch in w + ".":
        X.append(context)
        Y.append(stoi[ch])
        context = context[1:] + [stoi[ch]]
X, Y = torch.tensor(X), torch.tensor(Y)
rng = np.random.default_rng(0)
C = torch.tensor(rng.standard_normal((V, 4)).astype(np.float32))
W1 = torch.tensor(rng.standard_normal((block_size * 4, 32)).astype(np.float32) * 0.3)
b1 = torch.tensor(np.zeros(32, np.float32))
W2 = torch.tensor(rng.standard_normal((32, V)).astype(np.float32) * 0.1)
b2 = torch.tensor(np.zeros(V, np.float32))
parameters = [C, W1, b1, W2, b2]
for p in parameters:
    p.requires_grad = True
batches = rng.integers(0, X.shape[0], (40, 16))
losses = [nll]
for i in range(40):
    idx = torch.tensor(batches[i])
    emb = C[X[idx]]  # (16, 3, 4)
    h = torch.tanh(emb.view(-1, block_size * 4) @ W1 + b1)
    logits = h @ W2 + b2
    loss = F.cross_entropy(logits, Y[idx])
    for p in parameters:
        p.grad = None
    loss.backward()
    lr = 0.5 if i < 30 else 0.05
    for p in parameters:
        p.data += -lr * p.grad
    losses.append(loss.item())
n_params = sum(p.nelement() for p in parameters)
line = f"bigram nll {nll:.4f}, last minibatch loss {losses[-1]:.4f}, params {n_params}"
