"""DistributedSampler: each rank's share, padding and dropping, shuffling by seed + epoch;
against torch.utils.data.distributed where PyTorch is installed and written-out lists
otherwise."""

import pytest

from chainrule.utils.data import DataLoader, TensorDataset
from chainrule.utils.data.distributed import DistributedSampler

try:
    import torch
    from torch.utils.data.distributed import DistributedSampler as TorchSampler
except ImportError:  # pragma: no cover - torch is optional
    torch = TorchSampler = None


@pytest.mark.parametrize("n, replicas, drop_last, expected", [
    (10, 3, False, [[0, 3, 6, 9], [1, 4, 7, 0], [2, 5, 8, 1]]),
    (10, 3, True, [[0, 3, 6], [1, 4, 7], [2, 5, 8]]),
    (9, 3, False, [[0, 3, 6], [1, 4, 7], [2, 5, 8]]),
    (2, 5, False, [[0], [1], [0], [1], [0]]),  # padding repeats the list more than once
    (2, 5, True, [[], [], [], [], []]),
    (7, 1, False, [[0, 1, 2, 3, 4, 5, 6]]),
])
def test_shares_without_shuffle(n, replicas, drop_last, expected):
    data = list(range(n))
    got = [list(DistributedSampler(data, replicas, r, shuffle=False, drop_last=drop_last))
           for r in range(replicas)]
    assert got == expected
    assert all(len(DistributedSampler(data, replicas, r, shuffle=False, drop_last=drop_last))
               == len(expected[0]) for r in range(replicas))
    if torch is not None:
        theirs = [list(TorchSampler(data, replicas, r, shuffle=False, drop_last=drop_last))
                  for r in range(replicas)]
        assert theirs == expected


@pytest.mark.parametrize("n, replicas, drop_last", [(10, 3, False), (10, 3, True),
                                                      (12, 4, False)])
def test_shuffled_shares_partition_one_permutation(n, replicas, drop_last):
    data = list(range(n))
    samplers = [DistributedSampler(data, replicas, r, seed=7, drop_last=drop_last)
                for r in range(replicas)]
    shares = [list(s) for s in samplers]
    total = samplers[0].total_size
    # interleaving the shares rebuilds one padded permutation of the indices
    merged = [shares[i % replicas][i // replicas] for i in range(total)]
    distinct = merged[:min(n, total)]
    assert len(set(distinct)) == len(distinct) and set(distinct) <= set(data)
    if not drop_last:
        assert set(merged) == set(data) and merged[n:] == merged[:total - n]
    assert shares == [list(DistributedSampler(data, replicas, r, seed=7, drop_last=drop_last))
                      for r in range(replicas)]  # the same permutation every time for a seed
    for s in samplers:
        s.set_epoch(1)
    again = [list(s) for s in samplers]
    assert again != shares
    if n % replicas == 0:  # no padding or dropping: each epoch visits every index once
        assert sorted(sum(again, [])) == sorted(sum(shares, [])) == data
    other_seed = [list(DistributedSampler(data, replicas, r, seed=8, drop_last=drop_last))
                  for r in range(replicas)]
    assert other_seed != shares


def test_loader_with_a_distributed_sampler():
    import chainrule as cr

    ds = TensorDataset(cr.arange(10.0))
    s = DistributedSampler(ds, num_replicas=2, rank=1, shuffle=False)
    batches = [b[0].tolist() for b in DataLoader(ds, batch_size=2, sampler=s)]
    assert batches == [[1.0, 3.0], [5.0, 7.0], [9.0]]


def test_errors(monkeypatch):
    # (another test of this process may have left a process group initialized: the last
    # check is of the uninitialized state, so it says so)
    import sys

    dist = sys.modules.get("chainrule.distributed")
    if dist is not None:
        monkeypatch.setattr(dist, "is_initialized", lambda: False)
    with pytest.raises(ValueError, match=r"Invalid rank 3, rank should be in the interval"):
        DistributedSampler(range(5), num_replicas=3, rank=3)
    with pytest.raises(ValueError, match="num_replicas must be an integer of at least 1"):
        DistributedSampler(range(5), num_replicas=0, rank=0)
    with pytest.raises(RuntimeError, match="not initialized"):
        DistributedSampler(range(5))


def test_torch_names():
    import chainrule.utils.data as data

    assert data.DistributedSampler is DistributedSampler
