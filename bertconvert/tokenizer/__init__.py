"""The WordPiece tokenizer, identical to Google's tokenization.py.

Owns ``BertTokenizer`` (``wordpiece``), ``BasicTokenizer``/``WordpieceTokenizer`` (``basic``,
re-exported by ``wordpiece``), the vocabulary file and casing detection (``vocab``), sequence
encoding -- pairs, truncation, special tokens (``encode``) -- the Unicode character classes (``charclass``),
and Google's ``FullTokenizer`` with its module functions (``google``). May import the top-level
leaves; fetching a vocabulary by model name goes through ``cache.names``.
"""
