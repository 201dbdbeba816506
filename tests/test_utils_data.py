"""chainrule.utils.data: datasets, samplers, collation and the DataLoader (in the main process
and with worker processes), held against torch.utils.data where the result is fixed by
definition (orders, groupings, sizes, structures, dtypes) and against written-out values."""

from __future__ import annotations

import collections
import math
import os
import time

import numpy as np
import pytest

import chainrule as cr
from chainrule.utils import data as D


def _np(x):
    """A chainrule or torch tensor (or a nested list of them) as NumPy."""
    if isinstance(x, cr.Tensor):
        return x.detach().numpy()
    if hasattr(x, "detach"):
        return x.detach().numpy()
    return np.asarray(x)


def _torch():
    return pytest.importorskip("torch")


# -- datasets ---------------------------------------------------------------------------------
def test_tensor_dataset_indexes_rows_of_every_tensor():
    X = np.arange(12.0).reshape(4, 3)
    y = np.array([3, 1, 4, 1])
    ds = D.TensorDataset(cr.tensor(X), cr.tensor(y))
    assert len(ds) == 4
    x2, y2 = ds[2]
    np.testing.assert_array_equal(_np(x2), X[2])
    assert y2.item() == 4 and y2.ndim == 0
    xs, ys = ds[1:3]
    np.testing.assert_array_equal(_np(xs), X[1:3])
    np.testing.assert_array_equal(_np(ys), y[1:3])
    with pytest.raises(ValueError, match=r"size mismatch.*\[4, 3\]"):
        D.TensorDataset(cr.tensor(X), cr.zeros(3))


def test_tensor_dataset_matches_torch():
    torch = _torch()
    X = np.random.default_rng(0).standard_normal((6, 2, 3))
    y = np.arange(6)
    ours = D.TensorDataset(cr.tensor(X), cr.tensor(y))
    theirs = torch.utils.data.TensorDataset(torch.tensor(X), torch.tensor(y))
    assert len(ours) == len(theirs)
    for i in [0, 3, -1, slice(1, 4)]:
        for a, b in zip(ours[i], theirs[i]):
            np.testing.assert_array_equal(_np(a), _np(b))


class Squares(D.Dataset):
    def __init__(self, n):
        self.n = n

    def __len__(self):
        return self.n

    def __getitem__(self, i):
        if not 0 <= i < self.n:
            raise IndexError(i)
        return i * i


def test_concat_dataset_indexing_and_cumulative_sizes_match_torch():
    a, b, c = Squares(3), Squares(0), Squares(4)
    ds = D.ConcatDataset([a, b, c])
    assert ds.cumulative_sizes == [3, 3, 7] and len(ds) == 7
    assert [ds[i] for i in range(7)] == [0, 1, 4, 0, 1, 4, 9]
    assert ds[-1] == 9 and ds[-7] == 0
    with pytest.raises(ValueError, match="absolute value of index"):
        ds[-8]
    with pytest.raises(IndexError, match="index 7 is out of range"):
        ds[7]
    assert [(a + c)[i] for i in range(7)] == [0, 1, 4, 0, 1, 4, 9]
    with pytest.raises(ValueError, match="empty"):
        D.ConcatDataset([])
    torch = pytest.importorskip("torch")
    ours_like = torch.utils.data.ConcatDataset([a, b, c])
    assert ours_like.cumulative_sizes == ds.cumulative_sizes
    assert [ours_like[i] for i in range(-7, 7)] == [ds[i] for i in range(-7, 7)]


def test_subset_stack_and_chain_datasets():
    s = D.Subset(Squares(10), [9, 2, 5])
    assert len(s) == 3 and [s[i] for i in range(3)] == [81, 4, 25]
    assert s.__getitems__([2, 0]) == [25, 81]
    st = D.StackDataset(Squares(3), Squares(3))
    assert st[2] == (4, 4) and len(st) == 3
    assert D.StackDataset(x=Squares(2), y=Squares(2))[1] == {"x": 1, "y": 1}
    with pytest.raises(ValueError, match="size mismatch"):
        D.StackDataset(Squares(2), Squares(3))

    class Count(D.IterableDataset):
        def __init__(self, n):
            self.n = n

        def __iter__(self):
            return iter(range(self.n))

        def __len__(self):
            return self.n

    ch = Count(2) + Count(3)
    assert isinstance(ch, D.ChainDataset)
    assert list(ch) == [0, 1, 0, 1, 2] and len(ch) == 5


def test_base_classes_raise_not_implemented():
    with pytest.raises(NotImplementedError, match="__getitem__"):
        D.Dataset()[0]
    with pytest.raises(NotImplementedError, match="__iter__"):
        iter(D.IterableDataset()).__next__()
    with pytest.raises(NotImplementedError):
        iter(D.Sampler())
    assert D.Dataset[int] is not None  # subscriptable, as typed PyTorch code writes it


@pytest.mark.parametrize("n,lengths", [
    (10, [3, 7]), (10, [0.3, 0.7]), (10, [0.33, 0.33, 0.34]), (7, [0.5, 0.5]),
    (11, [0.1, 0.2, 0.3, 0.4]), (5, [1.0]), (3, [0.25, 0.25, 0.25, 0.25]), (9, [2, 3, 4]),
])
def test_random_split_sizes_match_torch_and_cover_the_dataset(n, lengths):
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        parts = D.random_split(Squares(n), lengths, generator=cr.random.Generator().manual_seed(0))
    got = [len(p) for p in parts]
    if all(isinstance(x, int) for x in lengths):
        assert got == lengths
    else:  # floor(n f), then the remainder one each to the first splits
        want = [math.floor(n * f) for f in lengths]
        for i in range(n - sum(want)):
            want[i % len(want)] += 1
        assert got == want
    indices = sorted(i for p in parts for i in p.indices)
    assert indices == list(range(n))
    torch = pytest.importorskip("torch")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        theirs = torch.utils.data.random_split(range(n), lengths)
    assert got == [len(p) for p in theirs]


def test_random_split_is_reproducible_and_checks_lengths():
    g = cr.random.Generator()
    a = [p.indices for p in D.random_split(range(20), [5, 15], generator=g.manual_seed(3))]
    b = [p.indices for p in D.random_split(range(20), [5, 15], generator=g.manual_seed(3))]
    assert a == b
    cr.manual_seed(5)
    c = [p.indices for p in D.random_split(range(20), [0.5, 0.5])]
    cr.manual_seed(5)
    d = [p.indices for p in D.random_split(range(20), [0.5, 0.5])]
    assert c == d
    np_gen = np.random.default_rng(1)
    assert sorted(sum((p.indices for p in D.random_split(range(6), [3, 3],
                                                         generator=np_gen)), [])) == list(range(6))
    with pytest.raises(ValueError, match="Sum of input lengths"):
        D.random_split(range(10), [3, 3])
    with pytest.raises(ValueError, match="fraction at index 0"):
        D.random_split(range(10), [1.5, -0.5])
    with pytest.warns(UserWarning, match="Length of split at index 1 is 0"):
        D.random_split(range(2), [0.9, 0.1])
    with pytest.raises(TypeError, match="random_split: generator must be"):
        D.random_split(range(4), [2, 2], generator=42)


# -- samplers ---------------------------------------------------------------------------------
def test_sequential_sampler():
    s = D.SequentialSampler(range(5))
    assert list(s) == [0, 1, 2, 3, 4] and len(s) == 5


def test_random_sampler_permutations_and_num_samples():
    g = cr.random.Generator().manual_seed(1)
    s = D.RandomSampler(range(7), generator=g)
    e1, e2 = list(s), list(s)
    assert sorted(e1) == list(range(7)) and sorted(e2) == list(range(7)) and e1 != e2
    s = D.RandomSampler(range(5), num_samples=12, generator=g)
    out = list(s)
    assert len(out) == 12 == len(s)
    assert sorted(out[:5]) == sorted(out[5:10]) == list(range(5))  # whole permutations first
    assert len(set(out[10:])) == 2
    s = D.RandomSampler(range(4), replacement=True, num_samples=100, generator=g)
    out = list(s)
    assert len(out) == 100 and set(out) <= {0, 1, 2, 3} and len(set(out)) == 4
    assert all(isinstance(i, int) for i in out)


def test_random_sampler_draws_from_the_default_generator_under_manual_seed():
    cr.manual_seed(11)
    a = list(D.RandomSampler(range(30)))
    b = list(D.RandomSampler(range(30)))
    cr.manual_seed(11)
    assert list(D.RandomSampler(range(30))) == a
    assert list(D.RandomSampler(range(30))) == b
    assert a != b


def test_random_sampler_errors_as_pytorch():
    with pytest.raises(TypeError, match="replacement should be a boolean"):
        D.RandomSampler(range(3), replacement=1)
    with pytest.raises(ValueError, match="num_samples should be a positive integer"):
        D.RandomSampler(range(3), num_samples=0)
    with pytest.raises(ValueError, match="num_samples should be a positive integer"):
        D.RandomSampler([])
    with pytest.raises(TypeError, match="RandomSampler: generator must be"):
        D.RandomSampler(range(3), generator="seed")


def test_subset_random_sampler():
    s = D.SubsetRandomSampler([10, 20, 30, 40], generator=np.random.default_rng(0))
    out = list(s)
    assert sorted(out) == [10, 20, 30, 40] and len(s) == 4


def test_weighted_random_sampler_frequencies_follow_the_weights():
    w = [1.0, 0.0, 3.0, 6.0]
    s = D.WeightedRandomSampler(w, 40000, generator=cr.random.Generator().manual_seed(2))
    out = np.array(list(s))
    assert len(out) == 40000 == len(s)
    freq = np.bincount(out, minlength=4) / len(out)
    np.testing.assert_allclose(freq, np.array(w) / 10, atol=0.01)
    assert freq[1] == 0
    s = D.WeightedRandomSampler(cr.tensor(w), 3, replacement=False,
                                generator=np.random.default_rng(0))
    out = list(s)
    assert sorted(out) == [0, 2, 3]
    with pytest.raises(RuntimeError, match="without replacement from 3 non-zero"):
        list(D.WeightedRandomSampler(w, 4, replacement=False))
    with pytest.raises(ValueError, match="weights should be a 1d sequence"):
        D.WeightedRandomSampler([[1.0, 2.0]], 2)
    with pytest.raises(ValueError, match="non-negative"):
        D.WeightedRandomSampler([1.0, -2.0], 2)
    with pytest.raises(ValueError, match="num_samples should be a positive integer"):
        D.WeightedRandomSampler(w, 0)


@pytest.mark.parametrize("n,bs,drop_last", [(10, 3, False), (10, 3, True), (9, 3, True),
                                            (9, 3, False), (2, 5, False), (2, 5, True),
                                            (0, 2, False), (7, 1, True)])
def test_batch_sampler_groups_and_lengths_match_torch(n, bs, drop_last):
    got = list(D.BatchSampler(D.SequentialSampler(range(n)), bs, drop_last))
    want = [list(range(i, min(i + bs, n))) for i in range(0, n, bs)]
    if drop_last:
        want = [b for b in want if len(b) == bs]
    assert got == want
    assert len(D.BatchSampler(range(n), bs, drop_last)) == len(want)
    torch = pytest.importorskip("torch")
    theirs = torch.utils.data.BatchSampler(range(n), bs, drop_last)
    assert list(theirs) == got and len(theirs) == len(got)


def test_batch_sampler_errors_as_pytorch():
    with pytest.raises(ValueError, match="batch_size should be a positive integer"):
        D.BatchSampler(range(3), 0, False)
    with pytest.raises(ValueError, match="batch_size should be a positive integer"):
        D.BatchSampler(range(3), True, False)
    with pytest.raises(ValueError, match="drop_last should be a boolean"):
        D.BatchSampler(range(3), 2, 0)


# -- collation --------------------------------------------------------------------------------
Point = collections.namedtuple("Point", ["x", "y"])


def _same_structure(ours, theirs):
    """Equal structure, types of containers, values and dtypes (by name)."""
    torch = _torch()
    if isinstance(theirs, torch.Tensor):
        assert isinstance(ours, cr.Tensor), type(ours)
        assert str(theirs.dtype).replace("torch.", "") == str(ours.dtype), (ours.dtype,
                                                                             theirs.dtype)
        assert tuple(ours.shape) == tuple(theirs.shape)
        np.testing.assert_array_equal(_np(ours), theirs.numpy())
    elif isinstance(theirs, dict):
        assert type(ours) is type(theirs) and list(ours) == list(theirs)
        for k in theirs:
            _same_structure(ours[k], theirs[k])
    elif isinstance(theirs, (list, tuple)):
        assert type(ours) is type(theirs), (type(ours), type(theirs))
        assert len(ours) == len(theirs)
        for a, b in zip(ours, theirs):
            _same_structure(a, b)
    else:
        assert ours == theirs


def _batches():
    rng = np.random.default_rng(0)
    return {
        "ints": [1, 2, 3],
        "floats": [0.5, 1.5],
        "bools": [True, False],
        "strings": ["a", "bc"],
        "float32 arrays": [rng.standard_normal(3).astype(np.float32) for _ in range(2)],
        "int32 arrays": [np.arange(4, dtype=np.int32).reshape(2, 2) for _ in range(3)],
        "numpy scalars": [np.float64(1.5), np.float64(2.0)],
        "numpy int scalars": [np.int16(1), np.int16(7)],
        "tuples": [(np.ones(2), 1), (np.zeros(2), 0)],
        "lists": [[1, 2.0], [3, 4.0]],
        "dicts": [{"x": np.ones(2, np.float32), "label": 3, "name": "p"},
                  {"x": np.zeros(2, np.float32), "label": 4, "name": "q"}],
        "nested": [{"a": (1, [2.0, np.int64(3)])}, {"a": (4, [5.0, np.int64(6)])}],
        "namedtuples": [Point(1.0, np.arange(2)), Point(2.0, np.arange(2))],
    }


@pytest.mark.parametrize("name", list(_batches()))
def test_default_collate_matches_torch(name):
    torch = _torch()
    batch = _batches()[name]
    theirs = torch.utils.data.default_collate(batch)
    ours = D.default_collate(batch)
    if name == "namedtuples":
        assert type(ours) is Point
    _same_structure(ours, theirs)


def test_default_collate_of_tensors_stacks_and_keeps_dtype():
    a, b = cr.tensor([1.0, 2.0], dtype=cr.float64), cr.tensor([3.0, 4.0], dtype=cr.float64)
    out = D.default_collate([a, b])
    np.testing.assert_array_equal(_np(out), [[1.0, 2.0], [3.0, 4.0]])
    assert out.dtype == cr.float64
    out = D.default_collate([(a, 0), (b, 1)])
    assert isinstance(out, list) and _np(out[1]).tolist() == [0, 1]
    assert out[1].dtype == cr.int64
    assert D.default_collate([0.5, 1.0]).dtype == cr.float64


def test_default_collate_errors():
    with pytest.raises(RuntimeError, match="each element in list of batch should be of equal"):
        D.default_collate([[1, 2], [3]])
    with pytest.raises(TypeError, match="default_collate: batch must contain tensors"):
        D.default_collate([object(), object()])
    with pytest.raises(TypeError, match="batch must contain"):
        D.default_collate([np.array(["a"]), np.array(["b"])])
    with pytest.raises(RuntimeError, match=r"differ in shape.*\(2,\), \(3,\)"):
        D.default_collate([cr.zeros(2), cr.zeros(3)])


def test_default_convert_matches_torch():
    torch = _torch()
    sample = {"x": np.arange(3.0), "y": (np.int32(2), "s"), "z": [np.ones((1, 2))]}
    _same_structure(D.default_convert(sample), torch.utils.data.default_convert(sample))
    t = cr.ones(2)
    assert D.default_convert(t) is t


def test_collate_with_a_custom_map():
    from chainrule.utils.data._utils.collate import collate, default_collate_fn_map

    custom = {**default_collate_fn_map, str: lambda b, *, collate_fn_map=None: "|".join(b)}
    assert collate([("a", 1), ("b", 2)], collate_fn_map=custom)[0] == "a|b"


# -- the DataLoader ---------------------------------------------------------------------------
N = 11
XS = np.arange(N * 2, dtype=np.float32).reshape(N, 2)
YS = np.arange(N) % 3


def _tensor_ds():
    return D.TensorDataset(cr.tensor(XS), cr.tensor(YS))


@pytest.mark.parametrize("bs,drop_last", [(1, False), (4, False), (4, True), (11, True),
                                          (20, False), (20, True), (3, True)])
def test_loader_batches_and_len_match_torch(bs, drop_last):
    dl = D.DataLoader(_tensor_ds(), batch_size=bs, drop_last=drop_last)
    got = [(_np(x), _np(y)) for x, y in dl]
    starts = range(0, N - (N % bs if drop_last else 0), bs)
    assert len(got) == len(starts) == len(dl)
    for (x, y), s in zip(got, starts):
        np.testing.assert_array_equal(x, XS[s:s + bs])
        np.testing.assert_array_equal(y, YS[s:s + bs])
    torch = pytest.importorskip("torch")
    tdl = torch.utils.data.DataLoader(
        torch.utils.data.TensorDataset(torch.tensor(XS), torch.tensor(YS)), batch_size=bs,
        drop_last=drop_last)
    assert len(tdl) == len(dl)
    for (x, y), (tx, ty) in zip(got, tdl):
        np.testing.assert_array_equal(x, tx.numpy())
        np.testing.assert_array_equal(y, ty.numpy())


def test_shuffle_visits_every_sample_once_per_epoch_reproducibly():
    cr.manual_seed(0)
    dl = D.DataLoader(_tensor_ds(), batch_size=4, shuffle=True)
    epochs = [np.concatenate([_np(y) for _, y in dl]) for _ in range(2)]
    rows = [np.concatenate([_np(x)[:, 0] for x, _ in dl]) for _ in range(1)]
    assert sorted(rows[0] // 2) == list(range(N))
    for e in epochs:
        assert sorted(e.tolist()) == sorted(YS.tolist())
    cr.manual_seed(0)
    again = [np.concatenate([_np(y) for _, y in dl]) for _ in range(2)]
    for a, b in zip(epochs, again):
        np.testing.assert_array_equal(a, b)
    g = cr.random.Generator()
    orders = []
    for _ in range(2):
        g.manual_seed(7)
        dl = D.DataLoader(_tensor_ds(), batch_size=3, shuffle=True, generator=g)
        orders.append(np.concatenate([_np(x)[:, 0] for x, _ in dl]))
    np.testing.assert_array_equal(orders[0], orders[1])
    assert sorted((orders[0] // 2).astype(int).tolist()) == list(range(N))
    assert not np.array_equal(orders[0], XS[:, 0])


def test_sampler_batch_sampler_and_unbatched_loading():
    ds = Squares(6)
    dl = D.DataLoader(ds, batch_size=2, sampler=[5, 0, 3, 1])
    assert [_np(b).tolist() for b in dl] == [[25, 0], [9, 1]] and len(dl) == 2
    dl = D.DataLoader(ds, batch_sampler=[[1, 2, 3], [0]])
    assert [_np(b).tolist() for b in dl] == [[1, 4, 9], [0]]
    assert dl.batch_size is None and dl.drop_last is False
    dl = D.DataLoader(ds, batch_size=None)
    out = list(dl)
    assert out == [0, 1, 4, 9, 16, 25] and len(dl) == 6
    dl = D.DataLoader(ds, batch_size=3, collate_fn=lambda b: sum(b))
    assert list(dl) == [5, 50]


class DictDataset(D.Dataset):
    """A PyTorch-tutorial-style dataset: a dict of a NumPy image and a label."""

    def __len__(self):
        return 5

    def __getitem__(self, i):
        return {"image": np.full((2, 2), i, np.float32), "label": i, "id": f"s{i}"}


def test_dict_samples_collate_into_a_dict_of_batches():
    batches = list(D.DataLoader(DictDataset(), batch_size=2))
    assert len(batches) == 3
    b = batches[0]
    assert set(b) == {"image", "label", "id"}
    assert tuple(b["image"].shape) == (2, 2, 2) and b["image"].dtype == cr.float32
    assert _np(b["label"]).tolist() == [0, 1] and b["label"].dtype == cr.int64
    assert b["id"] == ["s0", "s1"]


class Stream(D.IterableDataset):
    """0 .. n-1, split between workers by get_worker_info (the pattern of PyTorch's docs)."""

    def __init__(self, n):
        self.n = n

    def __iter__(self):
        info = D.get_worker_info()
        if info is None:
            return iter(range(self.n))
        per = int(math.ceil(self.n / info.num_workers))
        start = info.id * per
        return iter(range(start, min(start + per, self.n)))

    def __len__(self):
        return self.n


def test_iterable_dataset_batches_drop_last_and_len():
    dl = D.DataLoader(Stream(7), batch_size=3)
    assert [_np(b).tolist() for b in dl] == [[0, 1, 2], [3, 4, 5], [6]] and len(dl) == 3
    dl = D.DataLoader(Stream(7), batch_size=3, drop_last=True)
    assert [_np(b).tolist() for b in dl] == [[0, 1, 2], [3, 4, 5]] and len(dl) == 2
    assert list(D.DataLoader(Stream(3), batch_size=None)) == [0, 1, 2]


@pytest.mark.parametrize("make,match", [
    (lambda: D.DataLoader(Squares(3), shuffle=True, sampler=[0]),
     "mutually exclusive with shuffle"),
    (lambda: D.DataLoader(Squares(3), batch_size=2, batch_sampler=[[0]]),
     "batch_sampler option is mutually exclusive"),
    (lambda: D.DataLoader(Squares(3), batch_size=None, drop_last=True), "batch_size=None"),
    (lambda: D.DataLoader(Stream(3), shuffle=True), "expected unspecified shuffle"),
    (lambda: D.DataLoader(Stream(3), sampler=[0]), "expected unspecified sampler"),
    (lambda: D.DataLoader(Squares(3), num_workers=-1), "num_workers option should be"),
    (lambda: D.DataLoader(Squares(3), prefetch_factor=2), "prefetch_factor"),
    (lambda: D.DataLoader(Squares(3), persistent_workers=True), "persistent_workers"),
    (lambda: D.DataLoader(Squares(3), timeout=-1), "timeout"),
    (lambda: D.DataLoader(Squares(3), batch_size=0), "batch_size should be a positive"),
    (lambda: D.DataLoader(Squares(3), num_workers=1, multiprocessing_context="nope"),
     "valid start method"),
])
def test_loader_rejects_what_pytorch_rejects(make, match):
    with pytest.raises(ValueError, match=match):
        make()


def test_loader_options_pytorch_code_passes_are_accepted():
    dl = D.DataLoader(_tensor_ds(), batch_size=4, pin_memory=True, timeout=0,
                      pin_memory_device="", in_order=True, worker_init_fn=None)
    assert len(list(dl)) == 3
    with pytest.raises(ValueError, match="batch_size attribute should not be set"):
        dl.batch_size = 5
    dl.num_workers = 0  # not guarded, as in PyTorch


def test_a_tutorial_training_loop_matches_torch():
    """A Dataset subclass, a shuffled-off DataLoader, nn.MSELoss and SGD, written once and run
    under chainrule and under torch."""

    def run(torch):
        torch.manual_seed(0)
        rng = np.random.default_rng(0)
        X = rng.standard_normal((20, 3)).astype(np.float32)
        w = np.array([[1.0], [-2.0], [0.5]], np.float32)
        Y = X @ w + 0.1

        class Pairs(torch.utils.data.Dataset):
            def __len__(self):
                return len(X)

            def __getitem__(self, i):
                return X[i], Y[i]

        model = torch.nn.Linear(3, 1)
        with torch.no_grad():
            model.weight.copy_(torch.tensor([[0.1, 0.2, 0.3]]))
            model.bias.fill_(0.0)
        opt = torch.optim.SGD(model.parameters(), lr=0.1)
        loss_fn = torch.nn.MSELoss()
        losses = []
        for _ in range(3):
            for xb, yb in torch.utils.data.DataLoader(Pairs(), batch_size=8):
                opt.zero_grad()
                loss = loss_fn(model(xb), yb)
                loss.backward()
                opt.step()
                losses.append(loss.item())
        return losses

    ours = run(cr)
    assert len(ours) == 9 and ours[-1] < ours[0]
    torch = pytest.importorskip("torch")
    np.testing.assert_allclose(ours, run(torch), rtol=1e-5)


# -- worker processes -------------------------------------------------------------------------
class WhoLoads(D.Dataset):
    """Returns (index, loading process id, worker id or -1, a random draw)."""

    def __len__(self):
        return 8

    def __getitem__(self, i):
        info = D.get_worker_info()
        return i, os.getpid(), -1 if info is None else info.id, float(cr.rand(1).item())


def test_workers_give_the_batches_of_the_main_process_in_order():
    ds = _tensor_ds()
    cr.manual_seed(3)
    main = [(_np(x), _np(y)) for x, y in D.DataLoader(ds, batch_size=3, shuffle=True)]
    cr.manual_seed(3)
    dl = D.DataLoader(ds, batch_size=3, shuffle=True, num_workers=2)
    workers = [(_np(x), _np(y)) for x, y in dl]
    assert len(main) == len(workers) == len(dl) == 4
    for (a, b), (c, d) in zip(main, workers):
        np.testing.assert_array_equal(a, c)
        np.testing.assert_array_equal(b, d)


def test_get_worker_info_in_workers_and_none_in_the_main_process():
    assert D.get_worker_info() is None
    rows = [b for b in D.DataLoader(WhoLoads(), batch_size=2, num_workers=2)]
    idx = np.concatenate([_np(r[0]) for r in rows])
    pids = np.concatenate([_np(r[1]) for r in rows])
    wid = np.concatenate([_np(r[2]) for r in rows])
    assert idx.tolist() == list(range(8))
    assert wid.tolist() == [0, 0, 1, 1, 0, 0, 1, 1]  # batches dealt to the workers in turn
    assert os.getpid() not in pids.tolist() and len(set(pids.tolist())) == 2
    main = next(iter(D.DataLoader(WhoLoads(), batch_size=8)))
    assert set(_np(main[2]).tolist()) == {-1} and set(_np(main[1]).tolist()) == {os.getpid()}


def test_worker_random_streams_differ_between_workers_and_repeat_under_manual_seed():
    def draws():
        cr.manual_seed(1)
        rows = list(D.DataLoader(WhoLoads(), batch_size=2, num_workers=2))
        return np.concatenate([_np(r[3]) for r in rows])

    a, b = draws(), draws()
    np.testing.assert_array_equal(a, b)
    assert len(set(a.tolist())) == 8


def test_iterable_dataset_split_by_worker_info_matches_torch_interleaving():
    got = [_np(b).tolist() for b in D.DataLoader(Stream(10), batch_size=2, num_workers=2)]
    # worker 0 has 0..4, worker 1 has 5..9; their batches alternate
    assert got == [[0, 1], [5, 6], [2, 3], [7, 8], [4], [9]]
    torch = pytest.importorskip("torch")

    class TStream(torch.utils.data.IterableDataset):
        def __iter__(self):
            info = torch.utils.data.get_worker_info()
            per = int(math.ceil(10 / info.num_workers))
            return iter(range(info.id * per, min(info.id * per + per, 10)))

    theirs = [b.tolist() for b in torch.utils.data.DataLoader(TStream(), batch_size=2,
                                                              num_workers=2)]
    assert got == theirs


def test_worker_init_fn_runs_in_each_worker():
    class Tagged(D.Dataset):
        def __len__(self):
            return 4

        def __getitem__(self, i):
            return D.get_worker_info().dataset.tag

    def init(worker_id):
        D.get_worker_info().dataset.tag = 100 + worker_id

    out = [_np(b).tolist() for b in D.DataLoader(Tagged(), batch_size=1, num_workers=2,
                                                 worker_init_fn=init)]
    assert out == [[100], [101], [100], [101]]


class Failing(D.Dataset):
    def __len__(self):
        return 6

    def __getitem__(self, i):
        if i == 3:
            raise ValueError(f"sample {i} is corrupt")
        return i


def test_an_error_in_a_worker_is_raised_in_the_main_process_with_its_traceback():
    dl = D.DataLoader(Failing(), batch_size=2, num_workers=2)
    it = iter(dl)
    assert _np(next(it)).tolist() == [0, 1]
    with pytest.raises(ValueError, match=r"(?s)Caught ValueError in DataLoader worker process "
                                         r"1.*sample 3 is corrupt"):
        next(it)


def test_unpicklable_batches_come_back_as_an_error():
    dl = D.DataLoader(Squares(2), batch_size=1, num_workers=1,
                      collate_fn=lambda b: (lambda: b))
    with pytest.raises(Exception, match="batches must be picklable"):
        list(dl)


def test_timeout_raises_when_a_worker_is_too_slow():
    class Slow(D.Dataset):
        def __len__(self):
            return 2

        def __getitem__(self, i):
            time.sleep(1.5)
            return i

    it = iter(D.DataLoader(Slow(), batch_size=1, num_workers=1, timeout=0.3))
    t0 = time.monotonic()
    with pytest.raises(RuntimeError, match="DataLoader timed out after 0.3 seconds"):
        next(it)
    assert time.monotonic() - t0 < 1.2
    del it


def test_persistent_workers_are_reused_across_epochs_and_after_an_early_break():
    dl = D.DataLoader(WhoLoads(), batch_size=2, num_workers=2, persistent_workers=True)
    first = list(dl)
    it = iter(dl)
    next(it)  # leave the epoch early: its batches in flight are dropped at the next epoch
    second = list(dl)
    for epoch in (first, second):
        assert np.concatenate([_np(r[0]) for r in epoch]).tolist() == list(range(8))
    pids = {p for epoch in (first, second) for r in epoch for p in _np(r[1]).tolist()}
    assert len(pids) == 2
    del it, dl


def test_persistent_workers_restart_an_iterable_stream_each_epoch():
    dl = D.DataLoader(Stream(6), batch_size=2, num_workers=2, persistent_workers=True)
    want = [[0, 1], [3, 4], [2], [5]]
    assert [_np(b).tolist() for b in dl] == want
    assert [_np(b).tolist() for b in dl] == want


def test_a_loader_iterator_collected_in_a_reference_cycle_stops_its_workers_promptly():
    import gc

    it = iter(D.DataLoader(WhoLoads(), batch_size=1, num_workers=2))
    next(it)
    workers = list(it._workers)
    it.cycle = it  # only the cycle collector frees it, after finalising its queues
    del it
    gc.collect()
    for w in workers:  # a finaliser that waited out its 5 s queue timeout leaves them alive
        w.join(timeout=4)
    assert not any(w.is_alive() for w in workers)


def test_plain_sequences_are_map_style_datasets():
    assert [_np(b).tolist() for b in D.DataLoader([1, 2, 3], batch_size=2)] == [[1, 2], [3]]
    batches = list(D.DataLoader(range(5), batch_size=2, shuffle=True,
                                generator=cr.random.Generator().manual_seed(0)))
    assert sorted(sum((_np(b).tolist() for b in batches), [])) == list(range(5))
