"""Data: text sources and their errors, tokenizers, memory-mapped tokens, batches."""

import os

import numpy as np
import pytest

from chainrule.data import (
    BPETokenizer,
    CharTokenizer,
    DataError,
    TokenData,
    TokenizerError,
    default_corpus_text,
    encode_to_array,
    resolve_source,
    tokenizer_from_dict,
)
from chainrule.data import corpus as corpus_module


def test_default_corpus_is_pythons_reference_documentation():
    from pydoc_data.topics import topics

    text = resolve_source("").read()
    assert text == default_corpus_text()
    assert len(text) > 100_000
    for key in ("assert", "lambda", "with"):  # every topic is in it, in full
        assert topics[key].strip("\n") in text


def test_file_source_reads_utf8_text(tmp_path):
    p = tmp_path / "a.txt"
    p.write_text("héllo wörld\n", encoding="utf-8")
    assert resolve_source(str(p)).read() == "héllo wörld\n"


def test_byte_order_mark_is_not_part_of_the_text(tmp_path):
    p = tmp_path / "bom.txt"
    p.write_bytes("\ufeffabc".encode())
    assert resolve_source(str(p)).read() == "abc"


def test_folder_source_joins_its_txt_files_in_path_order(tmp_path):
    (tmp_path / "b.txt").write_text("second")
    (tmp_path / "a.txt").write_text("first")
    (tmp_path / "skip.md").write_text("not text data")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "c.txt").write_text("third")
    assert resolve_source(str(tmp_path)).read() == "first\n\nsecond\n\nthird"


def test_missing_empty_and_txtless_sources_are_clear_errors(tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        resolve_source(str(tmp_path / "nope.txt"))
    (tmp_path / "empty.txt").write_text("")
    with pytest.raises(DataError, match="is empty"):
        resolve_source(str(tmp_path / "empty.txt"))
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "x.csv").write_text("1,2")
    with pytest.raises(DataError, match="no .txt files"):
        resolve_source(str(tmp_path / "d"))


@pytest.mark.parametrize("chunk", [1 << 22, 5])
def test_non_utf8_file_error_names_the_byte_offset_and_line(tmp_path, monkeypatch, chunk):
    monkeypatch.setattr(corpus_module, "_CHUNK_BYTES", chunk)  # 5: the error spans chunks
    raw = "ab\ncdé\nf".encode() + b"\xe9xyz"  # a latin-1 e-acute after valid UTF-8
    p = tmp_path / "latin.txt"
    p.write_bytes(raw)
    offset = raw.index(b"\xe9x")
    with pytest.raises(DataError, match=f"byte {offset} \\(line 3\\) is 0xe9"):
        resolve_source(str(p)).read()


def test_char_tokenizer_roundtrip_and_vocabulary_in_sorted_order():
    tok = CharTokenizer.train(["hello ", "wörld"])
    assert tok.chars == sorted(set("hello wörld"))
    ids = tok.encode("wörld hello")
    assert ids == [sorted(set("hello wörld")).index(c) for c in "wörld hello"]
    assert tok.decode(ids) == "wörld hello"
    assert tokenizer_from_dict(tok.to_dict()).encode("hello") == tok.encode("hello")


def test_char_tokenizer_names_characters_outside_its_vocabulary():
    tok = CharTokenizer("abc")
    with pytest.raises(TokenizerError, match=r"2 character\(s\).*'x', 'é'"):
        tok.encode("abxcé")


def test_vectorised_char_encoding_equals_per_character_encoding():
    text = default_corpus_text()[:20000]
    tok = CharTokenizer.train([text])
    np.testing.assert_array_equal(encode_to_array(tok, text), np.array(tok.encode(text)))
    with pytest.raises(TokenizerError, match="'Z'"):
        encode_to_array(CharTokenizer("ab"), "abZ")


def test_bpe_tokenizer_roundtrips_any_text_and_serialises():
    pytest.importorskip("tokenizers")
    text = default_corpus_text()[:60000]
    tok = BPETokenizer.train([text], vocab_size=400)
    assert tok.vocab_size == 400
    sample = "def f(x):\n    return x ** 2  # ünïcode ✓ never seen"
    ids = tok.encode(sample)
    assert tok.decode(ids) == sample
    assert len(ids) < len(sample.encode("utf-8"))  # merges were learned
    again = tokenizer_from_dict(tok.to_dict())
    assert again.encode(sample) == ids


def test_token_data_memory_maps_the_encoded_text_and_splits_90_10(tmp_path):
    p = tmp_path / "t.txt"
    text = "".join(chr(97 + (i * 7) % 26) for i in range(1000))
    p.write_text(text)
    src = resolve_source(str(p))
    tok = CharTokenizer.train([text])
    data = TokenData.build(src, tok, str(tmp_path / "cache"), val_fraction=0.1)
    assert isinstance(data.tokens, np.memmap)
    np.testing.assert_array_equal(np.asarray(data.tokens), tok.encode(text))
    assert len(data.splits["train"]) == 900 and len(data.splits["val"]) == 100
    np.testing.assert_array_equal(data.splits["val"], tok.encode(text[900:]))


def test_token_cache_is_reused_until_the_text_changes(tmp_path):
    p = tmp_path / "t.txt"
    p.write_text("abcabcabc" * 20)
    tok = CharTokenizer("abcd")
    cache = str(tmp_path / "cache")
    TokenData.build(resolve_source(str(p)), tok, cache)
    stamp = os.stat(os.path.join(cache, "tokens.bin")).st_mtime_ns
    TokenData.build(resolve_source(str(p)), tok, cache)
    assert os.stat(os.path.join(cache, "tokens.bin")).st_mtime_ns == stamp
    p.write_text("dddd" * 50)
    data = TokenData.build(resolve_source(str(p)), tok, cache)
    np.testing.assert_array_equal(np.asarray(data.tokens), [3] * 200)


def test_batches_are_windows_of_the_split_with_next_token_targets():
    tokens = np.arange(1000, dtype=np.uint16)  # token i at position i: windows are ranges
    data = TokenData(tokens, val_fraction=0.1)
    x, y = data.batch("train", 8, 16, np.random.default_rng(0))
    assert x.shape == y.shape == (8, 16) and x.dtype == np.int64
    np.testing.assert_array_equal(y, x + 1)
    np.testing.assert_array_equal(np.diff(x, axis=1), 1)
    assert x.min() >= 0 and y.max() < 900
    xv, yv = data.batch("val", 8, 16, np.random.default_rng(0))
    assert xv.min() >= 900 and yv.max() <= 999
    x2, _ = data.batch("train", 8, 16, np.random.default_rng(0))
    np.testing.assert_array_equal(x, x2)


def test_batches_use_chainrules_global_generator_by_default():
    import chainrule as cr

    data = TokenData(np.arange(500, dtype=np.uint16))
    cr.manual_seed(3)
    a, _ = data.batch("train", 4, 8)
    cr.manual_seed(3)
    b, _ = data.batch("train", 4, 8)
    np.testing.assert_array_equal(a, b)


def test_text_shorter_than_one_block_is_a_clear_error():
    data = TokenData(np.arange(100, dtype=np.uint16), val_fraction=0.1)
    data.check_block_size(9)  # the 10-token validation split holds one 9+1 window
    with pytest.raises(DataError, match="too short for block_size 10.*10 in the val split"):
        data.check_block_size(10)
