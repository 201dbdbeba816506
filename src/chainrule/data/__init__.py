"""Data for language models: text sources, tokenizers, token arrays and batches."""

from .batching import TokenData as TokenData
from .batching import encode_to_array as encode_to_array
from .corpus import DEFAULT_CORPUS as DEFAULT_CORPUS
from .corpus import DataError as DataError
from .corpus import TextSource as TextSource
from .corpus import default_corpus_text as default_corpus_text
from .corpus import resolve_source as resolve_source
from .tokenizers import BPETokenizer as BPETokenizer
from .tokenizers import CharTokenizer as CharTokenizer
from .tokenizers import TokenizerError as TokenizerError
from .tokenizers import load_tokenizer as load_tokenizer
from .tokenizers import save_tokenizer as save_tokenizer
from .tokenizers import tokenizer_from_dict as tokenizer_from_dict
from .tokenizers import train_tokenizer as train_tokenizer
