"""Module system: discovery, traversal, state dicts, modes, hooks, errors naming module paths."""

from __future__ import annotations

import numpy as np
import pytest

import chainrule as cr
import chainrule.nn.functional as F
from chainrule import nn


class Attn(nn.Module):
    def __init__(self, d):
        super().__init__()
        self.qkv = nn.Linear(d, 3 * d)
        self.proj = nn.Linear(d, d)

    def forward(self, x):
        q, k, v = self.qkv(x).split(x.shape[-1], dim=-1)
        return self.proj(F.scaled_dot_product_attention(q, k, v, is_causal=True))


class Block(nn.Module):
    def __init__(self, d):
        super().__init__()
        self.ln = nn.LayerNorm(d)
        self.attn = Attn(d)

    def forward(self, x):
        return x + self.attn(self.ln(x))


class Tiny(nn.Module):
    def __init__(self, d=8, n=3, vocab=11):
        super().__init__()
        self.wte = nn.Embedding(vocab, d)
        self.blocks = nn.ModuleList([Block(d) for _ in range(n)])
        self.head = nn.Linear(d, vocab, bias=False)
        self.head.weight = self.wte.weight  # tied
        self.register_buffer("mask", cr.ones(4))
        self.register_buffer("scratch", cr.zeros(2), persistent=False)

    def forward(self, idx):
        x = self.wte(idx)
        for b in self.blocks:
            x = b(x)
        return self.head(x)


def test_named_parameters_are_dotted_paths_in_registration_order_with_tied_weights_once():
    names = [n for n, _ in Tiny(n=2).named_parameters()]
    assert names == [
        "wte.weight",
        "blocks.0.ln.weight", "blocks.0.ln.bias",
        "blocks.0.attn.qkv.weight", "blocks.0.attn.qkv.bias",
        "blocks.0.attn.proj.weight", "blocks.0.attn.proj.bias",
        "blocks.1.ln.weight", "blocks.1.ln.bias",
        "blocks.1.attn.qkv.weight", "blocks.1.attn.qkv.bias",
        "blocks.1.attn.proj.weight", "blocks.1.attn.proj.bias",
    ]
    m = Tiny(n=2)
    assert m.head.weight is m.wte.weight
    assert len(list(m.parameters())) == 13


def test_modules_children_and_buffers_are_discovered():
    m = Tiny(n=2)
    assert [n for n, _ in m.named_children()] == ["wte", "blocks", "head"]
    mods = [n for n, _ in m.named_modules()]
    assert mods[:4] == ["", "wte", "blocks", "blocks.0"]
    assert "blocks.1.attn.qkv" in mods and len(mods) == len(list(m.modules()))
    assert [n for n, _ in m.named_buffers()] == ["mask", "scratch"]
    assert m.get_submodule("blocks.1.attn.qkv") is m.blocks[1].attn.qkv
    assert m.blocks[1].attn.qkv.path == "blocks.1.attn.qkv"


def test_state_dict_holds_parameters_and_persistent_buffers_and_round_trips():
    cr.manual_seed(0)
    a = Tiny()
    cr.manual_seed(1)
    b = Tiny()
    sd = a.state_dict()
    assert "mask" in sd and "scratch" not in sd and "head.weight" in sd
    idx = cr.tensor([[1, 2, 3, 4]])
    assert not np.allclose(a(idx)._data, b(idx)._data)
    res = b.load_state_dict(sd)
    assert res.missing_keys == [] and res.unexpected_keys == []
    np.testing.assert_array_equal(a(idx)._data, b(idx)._data)


def test_load_state_dict_reports_every_missing_unexpected_and_misshaped_key_in_one_error():
    m = Tiny(n=2)
    sd = m.state_dict()
    del sd["blocks.0.ln.bias"], sd["mask"]
    sd["blocks.9.extra"] = cr.zeros(3)
    sd["blocks.1.attn.proj.weight"] = cr.zeros(8, 7)
    with pytest.raises(ValueError) as e:
        m.load_state_dict(sd)
    msg = str(e.value)
    for key in ("blocks.0.ln.bias", "mask", "blocks.9.extra", "blocks.1.attn.proj.weight",
                "(8, 7)", "(8, 8)"):
        assert key in msg
    assert isinstance(e.value, RuntimeError)  # as PyTorch's


def test_load_state_dict_non_strict_returns_the_keys_and_loads_the_rest():
    m = nn.Linear(3, 2)
    w = np.arange(6, dtype=np.float32).reshape(2, 3)
    res = m.load_state_dict({"weight": w, "other": cr.zeros(1)}, strict=False)
    assert res.missing_keys == ["bias"] and res.unexpected_keys == ["other"]
    np.testing.assert_array_equal(m.weight._data, w)



def test_load_state_dict_assign_puts_the_given_arrays_in_place_without_copying():
    m = nn.Linear(3, 2)
    m.bias.requires_grad_(False)
    old_w, old_b = m.weight, m.bias
    before = old_w._data.copy()
    w = np.arange(6, dtype=np.float64).reshape(2, 3)  # a raw array, float64 into float32
    b = cr.tensor([5.0, 6.0], dtype=np.float64)
    res = m.load_state_dict({"weight": w, "bias": b}, assign=True)
    assert res.missing_keys == [] and res.unexpected_keys == []
    assert isinstance(m.weight, nn.Parameter) and isinstance(m.bias, nn.Parameter)
    assert m.weight is not old_w and m.bias is not old_b
    assert m.weight._data is w and m.weight.dtype == np.float64  # no copy, dtype kept
    assert np.shares_memory(m.bias._data, b._data)
    assert m.weight.requires_grad and not m.bias.requires_grad  # the old requires_grad
    np.testing.assert_array_equal(old_w._data, before)  # the old parameter is left as it was
    params = list(m.parameters())
    assert params[0] is m.weight and params[1] is m.bias
    # an optimizer built afterwards updates the given array itself
    m(cr.ones(1, 3, dtype=np.float64)).sum().backward()
    cr.optim.SGD(m.parameters(), lr=0.5).step()
    np.testing.assert_array_equal(w, np.arange(6).reshape(2, 3) - 0.5)
    assert old_w.grad is None


def test_load_state_dict_assign_uses_a_given_parameter_itself_and_replaces_buffers():
    m = Tiny(n=1)
    m.wte.weight.requires_grad_(False)
    sd = m.state_dict()
    p = nn.Parameter(cr.randn(11, 8))  # requires_grad=True; takes the old parameter's False
    sd["wte.weight"] = sd["head.weight"] = p
    mask = cr.tensor([1.0, 0.0, 1.0, 0.0])
    sd["mask"] = mask
    m.load_state_dict(sd, assign=True)
    assert m.wte.weight is p and m.head.weight is p and not p.requires_grad  # still tied
    assert m.mask is mask and "mask" in dict(m.named_buffers())
    # a plain tensor for each of two tied slots gives two Parameters (as PyTorch)
    sd["wte.weight"], sd["head.weight"] = cr.zeros(11, 8), cr.ones(11, 8)
    m.load_state_dict(sd, assign=True)
    assert m.wte.weight is not m.head.weight and float(m.head.weight.sum()) == 88.0


def test_load_state_dict_assign_checks_shapes_and_keys_all_at_once_and_assigns_nothing():
    m = nn.Linear(3, 2)
    old_w, old_b = m.weight, m.bias
    with pytest.raises(ValueError) as e:
        m.load_state_dict({"weight": np.zeros((3, 2), np.float32), "extra": np.zeros(1)},
                          assign=True)
    msg = str(e.value)
    assert "'weight': checkpoint has shape (3, 2), the model expects (2, 3)" in msg
    assert "missing keys (1): 'bias'" in msg and "unexpected keys (1): 'extra'" in msg
    assert m.weight is old_w and m.bias is old_b
    res = m.load_state_dict({"weight": np.ones((2, 3), np.float32)}, strict=False, assign=True)
    assert res.missing_keys == ["bias"] and m.bias is old_b and m.weight is not old_w


def test_load_state_dict_assign_matches_pytorch():
    torch = pytest.importorskip("torch")

    class TorchTied(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.wte = torch.nn.Embedding(11, 8)
            self.head = torch.nn.Linear(8, 11, bias=False)
            self.head.weight = self.wte.weight
            self.register_buffer("mask", torch.ones(4))

    rng = np.random.default_rng(3)
    arrays = {"wte.weight": rng.standard_normal((11, 8)),  # float64
              "head.weight": rng.standard_normal((11, 8)).astype(np.float32),
              "mask": np.array([1.0, 0.0, 1.0, 0.0], np.float32)}
    t = TorchTied()
    t.wte.weight.requires_grad_(False)
    tsd = {k: torch.from_numpy(v) for k, v in arrays.items()}
    t.load_state_dict(tsd, assign=True)
    m = Tiny(n=0)
    m.wte.weight.requires_grad_(False)
    m.load_state_dict(arrays, assign=True)
    tps, cps = list(t.named_parameters()), list(m.named_parameters())
    assert [n for n, _ in tps] == [n for n, _ in cps] == ["wte.weight", "head.weight"]
    for (_, tp), (_, cp) in zip(tps, cps):
        assert type(tp) is torch.nn.Parameter and isinstance(cp, nn.Parameter)
        assert str(tp.dtype).removeprefix("torch.") == str(cp.dtype)
        assert tp.requires_grad == cp.requires_grad
        np.testing.assert_array_equal(tp.detach().numpy(), cp._data)
    assert (t.wte.weight is t.head.weight) == (m.wte.weight is m.head.weight) is False
    # both slots held the one frozen parameter: each new Parameter takes its requires_grad
    assert t.head.weight.requires_grad == m.head.weight.requires_grad is False
    assert t.mask is tsd["mask"] and m.mask._data is arrays["mask"]
    assert t.head.weight.data_ptr() == tsd["head.weight"].data_ptr()
    assert m.head.weight._data is arrays["head.weight"]
    # PyTorch checks shapes with assign=True too; the one error names the key
    with pytest.raises(RuntimeError, match="size mismatch for mask"):
        t.load_state_dict({**tsd, "mask": torch.ones(5)}, assign=True)
    with pytest.raises(RuntimeError, match="'mask': checkpoint has shape"):
        m.load_state_dict({**arrays, "mask": np.ones(5)}, assign=True)
    # torch tensors are accepted as values, and assigned without a copy
    lin = nn.Linear(2, 2)
    tw = torch.randn(2, 2, dtype=torch.float64)
    lin.load_state_dict({"weight": tw, "bias": torch.zeros(2)}, assign=True)
    assert lin.weight.dtype == np.float64 and np.shares_memory(lin.weight._data, tw.numpy())


def test_train_eval_set_the_flag_on_every_module_and_dropout_follows_it():
    m = nn.Sequential(nn.Linear(4, 4), nn.Dropout(0.5))
    m.eval()
    assert all(not x.training for x in m.modules())
    x = cr.randn(8, 4)
    np.testing.assert_array_equal(m(x)._data, m[0](x)._data)
    m.train()
    assert all(x.training for x in m.modules())
    assert (m(x)._data == 0).any()


def test_zero_grad_sets_to_none_or_zero_and_requires_grad_toggles_all():
    m = nn.Linear(3, 2)
    m(cr.randn(4, 3)).sum().backward()
    m.zero_grad(set_to_none=False)
    assert np.all(m.weight.grad._data == 0)
    m.zero_grad()
    assert m.weight.grad is None and m.bias.grad is None
    m.requires_grad_(False)
    assert not any(p.requires_grad for p in m.parameters())
    assert not m(cr.randn(4, 3)).requires_grad


def test_apply_visits_children_before_parent_and_to_changes_dtype_keeping_parameters():
    m = nn.Sequential(nn.Linear(3, 2), nn.Sequential(nn.ReLU(), nn.Linear(2, 2)))
    seen = []
    m.apply(lambda mod: seen.append(type(mod).__name__))
    assert seen == ["Linear", "ReLU", "Linear", "Sequential", "Sequential"]
    w = m[0].weight
    m.to(cr.float64)
    assert m[0].weight is w and w.dtype == np.float64
    assert m(cr.randn(2, 3, dtype=cr.float64)).dtype == np.float64


def test_forward_pre_and_post_hooks_can_replace_input_and_output_and_be_removed():
    m = nn.Linear(2, 2)
    x = cr.randn(3, 2)
    h1 = m.register_forward_pre_hook(lambda mod, args: (args[0] * 0,))
    np.testing.assert_allclose(m(x)._data, np.broadcast_to(m.bias._data, (3, 2)))
    h1.remove()
    h2 = m.register_forward_hook(lambda mod, args, out: out * 2)
    ref = x._data @ m.weight._data.T + m.bias._data
    np.testing.assert_allclose(m(x)._data, 2 * ref, rtol=1e-6)
    h2.remove()
    np.testing.assert_allclose(m(x)._data, ref, rtol=1e-6)


def test_full_backward_hook_sees_the_gradients_of_the_module_output_and_input():
    m = nn.Linear(3, 2).double()
    x = cr.randn(4, 3, dtype=cr.float64, requires_grad=True)
    c = np.random.default_rng(0).standard_normal((4, 2))
    got = {}

    def hook(mod, grad_input, grad_output):
        got["in"], got["out"] = grad_input, grad_output

    m.register_full_backward_hook(hook)
    (m(x) * cr.tensor(c)).sum().backward()
    np.testing.assert_allclose(got["out"][0]._data, c)
    np.testing.assert_allclose(got["in"][0]._data, c @ m.weight._data)
    np.testing.assert_allclose(x.grad._data, c @ m.weight._data)


def test_full_backward_hook_fires_with_none_grad_input_when_input_needs_no_grad():
    m = nn.Linear(3, 2)
    got = {}
    m.register_full_backward_hook(lambda mod, gi, go: got.update(gi=gi, go=go))
    m(cr.randn(4, 3)).sum().backward()
    assert got["gi"] == (None,)
    np.testing.assert_array_equal(got["go"][0]._data, np.ones((4, 2)))


def test_repr_shows_the_tree_with_layer_arguments():
    r = repr(nn.Sequential(nn.Linear(3, 2), nn.ReLU()))
    assert r == ("Sequential(\n  (0): Linear(in_features=3, out_features=2, bias=True)\n"
                 "  (1): ReLU()\n)")


def test_containers_index_slice_and_mutate():
    s = nn.Sequential(nn.Linear(2, 3), nn.ReLU(), nn.Linear(3, 1))
    assert isinstance(s[-1], nn.Linear) and len(s[1:]) == 2
    assert [n for n, _ in s[1:].named_children()] == ["1", "2"]
    ml = nn.ModuleList([nn.ReLU()])
    ml.append(nn.Tanh())
    ml.insert(0, nn.Linear(1, 1))
    assert [type(m).__name__ for m in ml] == ["Linear", "ReLU", "Tanh"]
    del ml[0]
    assert [n for n, _ in ml.named_children()] == ["0", "1"]
    md = nn.ModuleDict({"a": nn.Linear(1, 2)})
    md["b"] = nn.ReLU()
    assert list(md.keys()) == ["a", "b"] and [n for n, _ in md.named_parameters()] == [
        "a.weight", "a.bias"]


def test_parameter_is_a_leaf_tensor_requiring_grad_and_arithmetic_reaches_it():
    p = nn.Parameter(cr.tensor([1.0, 2.0]))
    assert isinstance(p, cr.Tensor) and p.requires_grad and p.is_leaf
    (p * 3 + p * p).sum().backward()
    np.testing.assert_allclose(p.grad._data, [5.0, 7.0])


# ----------------------------------------------------------------------------- bad input


def test_wrong_shape_names_the_module_path_the_shape_received_and_expected():
    m = Tiny(n=3)
    m.blocks[2].attn.qkv = nn.Linear(5, 24)  # a mistake three levels down
    with pytest.raises(ValueError) as e:
        m(cr.tensor([[1, 2, 3]]))
    msg = str(e.value)
    assert "blocks.2.attn.qkv" in msg and "(1, 3, 8)" in msg and "(*, 5)" in msg


def test_wrong_shape_in_a_sequential_names_its_index():
    net = nn.Module()
    net.features = nn.Sequential(nn.Linear(4, 6), nn.ReLU(), nn.Linear(6, 6), nn.Linear(7, 2))
    with pytest.raises(ValueError, match=r"features\.3.*\(2, 6\).*\(\*, 7\)"):
        net.features(cr.randn(2, 4))


def test_wrong_dtype_names_the_module_and_both_dtypes():
    m = nn.Sequential(nn.Linear(3, 2))
    with pytest.raises(TypeError, match=r"Linear '0'.*float64.*float32"):
        m(cr.randn(2, 3, dtype=cr.float64))
    emb = nn.Sequential(nn.Embedding(5, 2))
    with pytest.raises(TypeError, match=r"Embedding '0'.*float32.*integer"):
        emb(cr.randn(2, 3))
    with pytest.raises(IndexError, match=r"Embedding '0'.*index 7"):
        emb(cr.tensor([7]))


def test_an_error_inside_a_custom_forward_is_prefixed_with_that_modules_path():
    class Bad(nn.Module):
        def forward(self, x):
            return x @ cr.ones(5, 2)

    m = nn.Sequential(nn.Linear(3, 4), Bad())
    with pytest.raises(ValueError, match=r"^Bad '1': matmul"):
        m(cr.randn(2, 3))


def test_layer_norm_with_the_wrong_trailing_shape_says_what_it_expects():
    m = nn.ModuleDict({"ln": nn.LayerNorm(8)})
    with pytest.raises(ValueError, match=r"LayerNorm 'ln'.*\(2, 7\).*\(\*, 8\)"):
        m["ln"](cr.randn(2, 7))


def test_deepcopy_gives_independent_parameters_and_keeps_paths():
    import copy

    m = Tiny(n=2)
    c = copy.deepcopy(m)
    assert c.blocks[1].attn.qkv.path == "blocks.1.attn.qkv"
    assert c.head.weight is c.wte.weight and c.wte.weight is not m.wte.weight
    np.testing.assert_array_equal(c.wte.weight._data, m.wte.weight._data)
    c.wte.weight._data[...] = 0
    assert np.abs(m.wte.weight._data).sum() > 0
    assert [n for n, _ in c.named_parameters()] == [n for n, _ in m.named_parameters()]


def test_conv2d_given_the_wrong_channels_names_its_path_and_both_shapes():
    net = nn.Module()
    net.features = nn.Sequential(nn.Conv2d(1, 8, 3), nn.ReLU(), nn.MaxPool2d(2),
                                 nn.Conv2d(4, 8, 3))
    with pytest.raises(ValueError, match=r"Conv2d 'features\.3'.*\(2, 8, 13, 13\).*\(N, 4, H, W\)"):
        net.features(cr.randn(2, 1, 28, 28))
    with pytest.raises(TypeError, match=r"Conv2d 'features\.0'.*float64.*float32"):
        net.features(cr.randn(2, 1, 28, 28, dtype=cr.float64))


def test_multihead_attention_with_the_wrong_embed_dim_names_its_path():
    m = nn.ModuleDict({"attn": nn.MultiheadAttention(8, 2, batch_first=True)})
    with pytest.raises(ValueError, match=r"MultiheadAttention 'attn'.*\(2, 3, 6\).*E = embed_dim"):
        x = cr.randn(2, 3, 6)
        m["attn"](x, x, x)


def test_clip_grad_value_and_parameter_vectors_round_trip():
    m = nn.Linear(3, 2)
    m.weight.grad = cr.tensor(np.linspace(-2, 2, 6).reshape(2, 3).astype(np.float32))
    nn.utils.clip_grad_value_(m.parameters(), 0.5)
    assert m.weight.grad._data.max() == 0.5 and m.weight.grad._data.min() == -0.5
    v = nn.utils.parameters_to_vector(m.parameters())
    np.testing.assert_array_equal(v._data, np.concatenate([m.weight._data.ravel(), m.bias._data]))
    nn.utils.vector_to_parameters(v * 2, m.parameters())
    np.testing.assert_array_equal(m.bias._data, 2 * v._data[6:])


def test_embedding_from_pretrained_shares_the_table_and_freezes_it():
    table = cr.tensor(np.arange(12.0).reshape(4, 3))
    emb = nn.Embedding.from_pretrained(table)
    assert emb.weight._data is table._data and not emb.weight.requires_grad
    np.testing.assert_array_equal(emb(cr.tensor([3, 1]))._data, table._data[[3, 1]])
    assert nn.Embedding.from_pretrained(table, freeze=False).weight.requires_grad


def test_sequential_insert_and_pop_renumber_children():
    s = nn.Sequential(nn.ReLU(), nn.Tanh())
    s.insert(1, nn.Sigmoid())
    assert [type(m).__name__ for m in s] == ["ReLU", "Sigmoid", "Tanh"]
    assert isinstance(s.pop(0), nn.ReLU)
    assert [n for n, _ in s.named_children()] == ["0", "1"]
    assert [type(m).__name__ for m in s] == ["Sigmoid", "Tanh"]
