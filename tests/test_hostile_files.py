"""Hostile and broken files: every reader (chainrule checkpoints, safetensors weights in a
Hugging Face folder, GGUF) gives a clear ValueError naming the file or a correct load, never
another exception, never more than a bounded amount of memory, never a hang."""

import json
import os
import struct
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import chainrule as cr
from chainrule.serialization import CheckpointError

pytest.importorskip("safetensors")


# ----------------------------------------------------------------------------- checkpoints


def _ckpt(path):
    cr.save({"step": 3, "w": cr.arange(12.0).reshape(3, 4), "b": np.arange(5, dtype=np.int64),
             "nested": {"x": [1.5, float("nan"), (2, "s")]}}, path)


def _header(path):
    raw = open(path, "rb").read()
    (n,) = struct.unpack("<Q", raw[:8])
    return json.loads(raw[8:8 + n]), raw[8 + n:]


def _write(path, header, data):
    h = json.dumps(header).encode()
    h += b" " * (-len(h) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)) + h + data)


@pytest.mark.parametrize("edit", ["deep", "huge_shape", "negative_offset", "overlap",
                                  "bad_dtype", "float_shape", "offsets_past_end", "not_dict",
                                  "deep_meta", "meta_list"])
def test_malformed_safetensors_headers_are_checkpoint_errors(tmp_path, edit):
    path = tmp_path / "c.safetensors"
    _ckpt(path)
    header, data = _header(path)
    name = next(k for k in header if k != "__metadata__")
    t = header[name]
    if edit == "deep":
        raw = b"[" * 200000 + b"]" * 200000
        with open(path, "wb") as f:
            f.write(struct.pack("<Q", len(raw)) + raw)
    elif edit == "huge_shape":
        t["shape"] = [2**40, 2**40]
    elif edit == "negative_offset":
        t["data_offsets"] = [-8, t["data_offsets"][1]]
    elif edit == "overlap":
        for k in header:
            if k != "__metadata__":
                header[k]["data_offsets"] = [0, header[k]["data_offsets"][1] -
                                             header[k]["data_offsets"][0]]
    elif edit == "bad_dtype":
        t["dtype"] = "Q99"
    elif edit == "float_shape":
        t["shape"] = [1.5]
    elif edit == "offsets_past_end":
        t["data_offsets"] = [0, 2**62]
    elif edit == "not_dict":
        header[name] = [1, 2]
    elif edit == "deep_meta":
        text = "[" * 100000 + "]" * 100000
        import zlib

        header["__metadata__"]["chainrule-checkpoint"] = text
        header["__metadata__"]["chainrule-checkpoint-crc32"] = str(zlib.crc32(text.encode()))
    elif edit == "meta_list":
        header["__metadata__"] = ["x"]
    if edit != "deep":
        _write(path, header, data)
    with pytest.raises(CheckpointError, match="c.safetensors"):
        cr.load(path)


def test_a_huge_claimed_header_is_refused_before_reading(tmp_path):
    path = tmp_path / "h.safetensors"
    path.write_bytes(struct.pack("<Q", 2**62) + b"{}")
    with pytest.raises(CheckpointError, match="header claims"):
        cr.load(path)


def test_load_opens_the_file_once(tmp_path, monkeypatch):
    import builtins

    path = tmp_path / "c.safetensors"
    _ckpt(path)
    opened = []
    real = builtins.open

    def counting(p, *a, **k):
        opened.append(p)
        return real(p, *a, **k)

    monkeypatch.setattr(builtins, "open", counting)
    real_os_open = os.open
    monkeypatch.setattr(os, "open", lambda p, *a, **k: opened.append(p) or real_os_open(p, *a,
                                                                                      **k))
    got = cr.load(path)
    assert [os.fspath(p) for p in opened] == [os.fspath(path)]
    np.testing.assert_array_equal(got["w"].numpy(), np.arange(12.0).reshape(3, 4))


def test_a_checkpoint_replaced_while_read_is_never_reported_corrupted(tmp_path):
    """One process replaces the file (atomically) in a loop; every load sees a whole file."""
    path = tmp_path / "c.safetensors"
    _ckpt(path)
    script = textwrap.dedent(f"""
        import time, numpy as np, chainrule as cr
        t0 = time.time()
        i = 0
        while time.time() - t0 < 3:
            cr.save({{"step": i, "w": np.full((64, 64), float(i), np.float32)}}, {str(path)!r})
            i += 1
    """)
    writer = subprocess.Popen([sys.executable, "-c", script])
    try:
        n = 0
        while writer.poll() is None and n < 400:
            got = cr.load(path)
            if "nested" not in got:  # a file of the writer: one value throughout
                w = np.asarray(got["w"])
                assert (w == w.flat[0]).all()
            n += 1
    finally:
        writer.wait()
    assert n > 10


# ----------------------------------------------------------------------------- GGUF


def _gguf_bytes(kv=b"", n_kv=0, n_tensors=0, tail=b""):
    return b"GGUF" + struct.pack("<IQQ", 3, n_tensors, n_kv) + kv + tail


HOSTILE_GGUF = {
    "string_length_2_62": _gguf_bytes(struct.pack("<Q", 2**62) + b"abc", n_kv=1),
    "tensor_count_2_62": _gguf_bytes(n_tensors=2**62, n_kv=0, tail=b"\0" * 19),
    "kv_count_2_62": _gguf_bytes(n_kv=2**62, tail=b"\0" * 19),
    "array_of_2_62": _gguf_bytes(struct.pack("<Q", 1) + b"k" + struct.pack("<IIQ", 9, 0, 2**62),
                                 n_kv=1),
    "nested_array": _gguf_bytes(struct.pack("<Q", 1) + b"k" + struct.pack("<IIQ", 9, 9, 1)
                                + struct.pack("<IQ", 9, 2**40), n_kv=1),
    "unknown_type": _gguf_bytes(struct.pack("<Q", 1) + b"k" + struct.pack("<I", 77), n_kv=1),
    "tensor_dims": _gguf_bytes(n_tensors=1, tail=struct.pack("<Q", 1) + b"t"
                               + struct.pack("<I", 9) + b"\0" * 40),
    "tensor_past_end": _gguf_bytes(n_tensors=1, tail=struct.pack("<Q", 1) + b"t"
                                   + struct.pack("<IQQIQ", 2, 4096, 4096, 0, 0)),
    "version_1": b"GGUF" + struct.pack("<IQQ", 1, 0, 0),
    "empty": b"",
    "magic_only": b"GGUF",
}


@pytest.mark.parametrize("name", sorted(HOSTILE_GGUF))
def test_hostile_gguf_files_are_value_errors(tmp_path, name):
    pytest.importorskip("gguf")
    from chainrule.pretrained import load_gguf

    path = tmp_path / f"{name}.gguf"
    path.write_bytes(HOSTILE_GGUF[name])
    with pytest.raises(ValueError, match=f"{name}.gguf"):
        load_gguf(path)


def _tiny_gguf(path, **overrides):
    gguf = pytest.importorskip("gguf")
    c = dict(n_layer=1, n_embd=8, n_hidden=12, n_head=2, n_kv_head=1, vocab_size=10)
    c.update(overrides)
    w = gguf.GGUFWriter(str(path), "llama")
    w.add_block_count(c["n_layer"])
    w.add_context_length(16)
    w.add_embedding_length(c["n_embd"])
    w.add_feed_forward_length(c["n_hidden"])
    w.add_head_count(c["n_head"])
    w.add_head_count_kv(c["n_kv_head"])
    w.add_rope_freq_base(10000.0)
    w.add_layer_norm_rms_eps(1e-5)
    w.add_vocab_size(c["vocab_size"])
    rng = np.random.default_rng(0)
    e, h, kv = 8, 12, 4
    shapes = {"token_embd.weight": (10, e), "output_norm.weight": (e,),
              "blk.0.attn_norm.weight": (e,), "blk.0.attn_q.weight": (e, e),
              "blk.0.attn_k.weight": (kv, e), "blk.0.attn_v.weight": (kv, e),
              "blk.0.attn_output.weight": (e, e), "blk.0.ffn_norm.weight": (e,),
              "blk.0.ffn_gate.weight": (h, e), "blk.0.ffn_up.weight": (h, e),
              "blk.0.ffn_down.weight": (e, h)}
    for name, shape in shapes.items():
        w.add_tensor(name, rng.standard_normal(shape).astype(np.float32))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


@pytest.mark.parametrize("field,value", [("n_head", 0), ("n_embd", 2**30), ("vocab_size",
                                                                              2**22)])
def test_gguf_fields_no_model_can_use_are_value_errors(tmp_path, field, value):
    from chainrule.pretrained import load_llama_gguf

    path = tmp_path / "m.gguf"
    _tiny_gguf(path, **{field: value})
    with pytest.raises(ValueError, match="m.gguf"):
        load_llama_gguf(path)


def test_a_tiny_gguf_loads(tmp_path):
    from chainrule.pretrained import load_llama_gguf

    path = tmp_path / "m.gguf"
    _tiny_gguf(path)
    model = load_llama_gguf(path)
    assert model.config.n_embd == 8


# ----------------------------------------------------------------------------- Hugging Face


def _hf(folder, **cfg_edits):
    from safetensors.numpy import save_file

    folder.mkdir(exist_ok=True)
    rng = np.random.default_rng(0)
    e, h, kv = 8, 12, 4
    t = {"model.embed_tokens.weight": (10, e), "model.norm.weight": (e,),
         "model.layers.0.input_layernorm.weight": (e,),
         "model.layers.0.self_attn.q_proj.weight": (e, e),
         "model.layers.0.self_attn.k_proj.weight": (kv, e),
         "model.layers.0.self_attn.v_proj.weight": (kv, e),
         "model.layers.0.self_attn.o_proj.weight": (e, e),
         "model.layers.0.post_attention_layernorm.weight": (e,),
         "model.layers.0.mlp.gate_proj.weight": (h, e),
         "model.layers.0.mlp.up_proj.weight": (h, e),
         "model.layers.0.mlp.down_proj.weight": (e, h)}
    save_file({k: rng.standard_normal(s).astype(np.float32) for k, s in t.items()},
              str(folder / "model.safetensors"))
    cfg = {"model_type": "llama", "vocab_size": 10, "hidden_size": e, "intermediate_size": h,
           "num_hidden_layers": 1, "num_attention_heads": 2, "num_key_value_heads": 1,
           "max_position_embeddings": 16, "tie_word_embeddings": True}
    cfg.update(cfg_edits)
    cfg = {k: v for k, v in cfg.items() if v is not None}
    (folder / "config.json").write_text(json.dumps(cfg))
    return folder


@pytest.mark.parametrize("edit", [{"hidden_size": None}, {"vocab_size": 2**22},
                                  {"num_attention_heads": 0}, {"hidden_size": "eight"},
                                  {"rms_norm_eps": float("nan")}, {"num_hidden_layers": 10**6}])
def test_hf_configs_no_model_can_use_are_value_errors(tmp_path, edit):
    from chainrule.pretrained.hf import load_hf_model

    folder = _hf(tmp_path / "m", **edit)
    with pytest.raises(ValueError, match="m"):
        load_hf_model(folder, with_tokenizer=False)


def test_a_tiny_hf_folder_loads_and_shards_stay_in_their_folder(tmp_path):
    from chainrule.pretrained.hf import load_hf_model

    folder = _hf(tmp_path / "m")
    assert load_hf_model(folder, with_tokenizer=False).config.n_embd == 8
    os.rename(folder / "model.safetensors", tmp_path / "outside.safetensors")
    (folder / "model.safetensors.index.json").write_text(json.dumps(
        {"weight_map": {"model.norm.weight": "../outside.safetensors"}}))
    with pytest.raises(ValueError, match="outside the folder"):
        load_hf_model(folder, with_tokenizer=False)


def test_tokenizer_files_that_are_not_tokenizers_are_value_errors(tmp_path):
    pytest.importorskip("tokenizers")
    from chainrule.pretrained.tokenizer import PretrainedTokenizer

    (tmp_path / "tokenizer.json").write_bytes(b'{"model": {"type": "BPE", "vocab": 5}}')
    with pytest.raises(ValueError, match="tokenizer.json"):
        PretrainedTokenizer.from_folder(tmp_path)
    (tmp_path / "tokenizer.json").write_bytes(b"\xff\xfe not utf-8")
    with pytest.raises(ValueError, match="tokenizer.json"):
        PretrainedTokenizer.from_folder(tmp_path)


# ----------------------------------------------------------------------------- fuzzing

_FUZZ = textwrap.dedent(r"""
    import json, os, resource, shutil, sys, tempfile
    resource.setrlimit(resource.RLIMIT_AS, (MEMCAP, MEMCAP))
    import numpy as np
    from hypothesis import HealthCheck, given, settings, strategies as st
    import chainrule as cr
    sys.path.insert(0, TESTS)
    import test_hostile_files as T

    work = tempfile.mkdtemp()
    from pathlib import Path
    base = Path(work)
    ck = base / "c.safetensors"
    T._ckpt(ck)
    ck_bytes = ck.read_bytes()
    want = cr.load(ck)
    hf = T._hf(base / "hf")
    st_bytes = (hf / "model.safetensors").read_bytes()
    try:
        import gguf  # noqa
        T._tiny_gguf(base / "m.gguf")
        gg_bytes = (base / "m.gguf").read_bytes()
    except Exception:
        gg_bytes = None

    edits = st.one_of(
        st.tuples(st.just("flip"), st.lists(st.tuples(st.integers(0, 10**6),
                                                      st.integers(0, 255)), min_size=1,
                                            max_size=6)),
        st.tuples(st.just("cut"), st.integers(0, 10**6)),
        st.tuples(st.just("int"), st.tuples(st.integers(0, 10**6),
                                            st.sampled_from([0, 1, 2**31, 2**32 - 1, 2**62,
                                                             2**64 - 1]))),
    )

    def mutate(b, edit):
        b = bytearray(b)
        kind, arg = edit
        if kind == "flip":
            for pos, v in arg:
                b[pos % len(b)] = v
        elif kind == "cut":
            del b[arg % (len(b) + 1):]
        else:
            pos, v = arg
            pos = pos % max(len(b) - 8, 1)
            b[pos:pos + 8] = v.to_bytes(8, "little")
        return bytes(b)

    S = settings(max_examples=N, deadline=None, database=None, derandomize=True,
                 suppress_health_check=list(HealthCheck))

    @S
    @given(edits)
    def fuzz_checkpoint(edit):
        ck.write_bytes(mutate(ck_bytes, edit))
        try:
            got = cr.load(ck)
        except cr.serialization.CheckpointError as e:
            assert "c.safetensors" in str(e)
            return
        assert got["step"] == want["step"]
        np.testing.assert_array_equal(got["w"].numpy(), want["w"].numpy())
        np.testing.assert_array_equal(got["b"], want["b"])

    @S
    @given(edits)
    def fuzz_safetensors(edit):
        from chainrule.pretrained.hf import load_hf_model
        (hf / "model.safetensors").write_bytes(mutate(st_bytes, edit))
        try:
            load_hf_model(hf, with_tokenizer=False)
        except ValueError as e:
            assert "hf" in str(e)

    @S
    @given(edits)
    def fuzz_gguf(edit):
        from chainrule.pretrained import load_llama_gguf
        (base / "m.gguf").write_bytes(mutate(gg_bytes, edit))
        try:
            load_llama_gguf(base / "m.gguf")
        except ValueError as e:
            assert "m.gguf" in str(e)

    fuzz_checkpoint()
    fuzz_safetensors()
    if gg_bytes is not None:
        fuzz_gguf()
    shutil.rmtree(work)
    print("fuzzed", flush=True)
""")


def test_fuzzed_files_give_a_clear_error_or_a_correct_load_in_bounded_memory():
    """Byte flips, truncations and 8-byte integer edits of each reader's files, in a process
    limited to 1.5 GiB of address space: any exception but the clear one, any allocation of
    a hostile size (MemoryError under the limit) or a hang fails."""
    pytest.importorskip("hypothesis")
    limit = int(1.5 * 2**30)
    script = (_FUZZ.replace("MEMCAP", str(limit))
              .replace("TESTS", repr(os.path.dirname(__file__)))
              .replace("max_examples=N", "max_examples=100"))
    env = dict(os.environ, OPENBLAS_NUM_THREADS="1", OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=240, env=env)
    assert proc.returncode == 0 and "fuzzed" in proc.stdout, proc.stderr[-4000:]


def test_hostile_gguf_in_bounded_memory():
    """The 43-byte GGUF of a string length near 2**62 is refused in a process limited to
    1.5 GiB (it used to allocate until the OOM killer ended it)."""
    pytest.importorskip("gguf")
    script = textwrap.dedent(f"""
        import resource, tempfile, os
        resource.setrlimit(resource.RLIMIT_AS, ({int(1.5 * 2**30)}, {int(1.5 * 2**30)}))
        from chainrule.pretrained import load_gguf
        p = os.path.join(tempfile.mkdtemp(), "h.gguf")
        open(p, "wb").write({HOSTILE_GGUF["string_length_2_62"]!r})
        try:
            load_gguf(p)
        except ValueError as e:
            print("refused", e)
    """)
    env = dict(os.environ, OPENBLAS_NUM_THREADS="1", OMP_NUM_THREADS="1")
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=60, env=env)
    assert "refused" in proc.stdout, proc.stderr[-3000:]


def test_a_header_over_the_cap_is_refused_from_its_length_field(tmp_path):
    """A file long enough for its claimed 100 MB + 8 header (sparse: nothing on disk) is
    refused before a byte of the header is read."""
    path = tmp_path / "big.safetensors"
    n = 100_000_008
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", n) + b"{")
        f.truncate(8 + n + 16)
    with pytest.raises(CheckpointError, match=r"big.safetensors: the header claims 100000008 "
                                              r"bytes, more than the 100000000"):
        cr.load(path)


def test_a_large_hostile_header_is_refused_in_bounded_memory():
    """A 20 MB header of 340,000 empty tensors (as many entries as the bytes allow) is parsed
    and refused in a process limited to 1.5 GiB of address space (about 10x the header, as
    safetensors' own reader takes, on top of the interpreter and NumPy)."""
    script = textwrap.dedent(f"""
        import os, resource, struct, tempfile
        resource.setrlimit(resource.RLIMIT_AS, ({int(1.5 * 2**30)}, {int(1.5 * 2**30)}))
        import chainrule as cr
        ent = '"t%d":{{"dtype":"F32","shape":[0],"data_offsets":[0,0]}}'
        body = ("{{" + ",".join(ent % i for i in range(340000)) + "}}").encode()
        body += b" " * (-len(body) % 8)
        p = os.path.join(tempfile.mkdtemp(), "h.safetensors")
        open(p, "wb").write(struct.pack("<Q", len(body)) + body)
        del body
        try:
            cr.load(p)
        except cr.serialization.CheckpointError as e:
            print("refused", e)
    """)
    env = dict(os.environ, OPENBLAS_NUM_THREADS="1", OMP_NUM_THREADS="1")
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=120, env=env)
    assert "refused" in proc.stdout and "without chainrule's metadata" in proc.stdout, \
        proc.stderr[-3000:]
