"""The import path ``tokenization`` of pytorch-pretrained-BERT 0.6.2 and of Google's BERT code.

``from bertconvert import tokenization`` serves both: 0.6.2's names (``BertTokenizer``,
``BasicTokenizer`` with its never-split default, ``PRETRAINED_VOCAB_ARCHIVE_MAP``...; see
:mod:`bertconvert.tokenizer.wordpiece`) and Google's (``FullTokenizer``,
``convert_tokens_to_ids``, ``validate_case_matches_checkpoint``...; see
:mod:`bertconvert.tokenizer.google`). Where the two differ, the README's porting table says how.
"""
from .cache.names import (PRETRAINED_VOCAB_ARCHIVE_MAP,  # noqa: F401
                          PRETRAINED_VOCAB_POSITIONAL_EMBEDDINGS_SIZE_MAP)
from .errors import TokenizerError  # noqa: F401
from .tokenizer.basic import UNUSED_TOKEN_RE as _UNUSED_TOKEN_RE  # noqa: F401
from .tokenizer.basic import preserve_token  # noqa: F401
from .tokenizer.charclass import is_control as _is_control  # noqa: F401
from .tokenizer.charclass import is_punctuation as _is_punctuation  # noqa: F401
from .tokenizer.charclass import is_whitespace as _is_whitespace  # noqa: F401
from .tokenizer.google import (FullTokenizer, convert_by_vocab,  # noqa: F401
                               convert_ids_to_tokens, convert_to_unicode, convert_tokens_to_ids,
                               printable_text, validate_case_matches_checkpoint)
from .tokenizer.wordpiece import (MAX_INPUT_CHARS_PER_WORD, NEVER_SPLIT,  # noqa: F401
                                  VOCAB_NAME, BasicTokenizer, BertTokenizer, WordpieceTokenizer,
                                  casing_from_name, check_vocab_size, guess_do_lower_case,
                                  load_vocab, logger, whitespace_tokenize)
