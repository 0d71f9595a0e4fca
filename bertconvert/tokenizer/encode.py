"""``BertTokenizer.encode``: texts to model inputs the way Google's fine-tuning scripts
build them (``run_classifier.py`` ``convert_single_example``).

One text becomes ``[CLS] a [SEP]``, a pair ``[CLS] a [SEP] b [SEP]``; ``token_type_ids``
are 0 up to and including the first ``[SEP]`` and 1 after it; ``attention_mask`` is 1 on
real tokens and 0 on padding. Truncation removes word pieces from the end of the longer
text, one at a time (the second text on ties), until the pair fits: Google's
``_truncate_seq_pair``. Like Google's ``convert_single_example``, a second text that is
missing, empty or yields no tokens means "no pair", and the closing ``[SEP]`` of the second
text is only added when some of its tokens survive truncation (max_length=3).
"""
import logging

from ..errors import TokenizerArgumentError, TokenizerInputError, VocabError

logger = logging.getLogger(__name__)

_PADDING_MODES = {False: None, None: None, "do_not_pad": None,
                  True: "longest", "longest": "longest", "max_length": "max_length"}
_TENSOR_TYPES = (None, "pt", "np")
#: Longest row ``padding="max_length"`` builds. Padding materialises every position, so an
#: absurd max_length (10**12) would otherwise exhaust memory; BERT models take 512.
MAX_PADDED_LENGTH = 1 << 20


def truncate_seq_pair(tokens_a, tokens_b, max_length):
    """Shorten two lists in place until ``len(a) + len(b) <= max_length``, always popping
    from the longer one (from ``tokens_b`` on ties), exactly like Google's
    ``_truncate_seq_pair``."""
    keep_a, keep_b = len(tokens_a), len(tokens_b)
    while keep_a + keep_b > max_length:
        if keep_a > keep_b:
            keep_a -= 1
        else:
            keep_b -= 1
    del tokens_a[keep_a:]
    del tokens_b[keep_b:]


def _pad(rows, length, value):
    return [row + [value] * (length - len(row)) for row in rows]


class EncodeMixin:
    """Adds :meth:`encode` to a tokenizer with ``tokenize``, ``vocab``, ``max_len`` and
    ``cls_token``/``sep_token``/``pad_token`` attributes."""

    def encode(self, text_or_texts, text_pair=None, max_length=None, padding=False,
               return_tensors=None, *, truncation=True):
        """Turn a text, a pair, or a batch of them into BERT inputs.

        Args:
            text_or_texts: a str; or a list/tuple of str (a batch), whose items may also be
                ``(text, text_pair)`` pairs when ``text_pair`` is not given.
            text_pair: the second text (str), or for a batch a list of them (None, "" or
                a text without tokens means "no pair" for that row, as in Google's code).
            max_length: total length including [CLS]/[SEP]. Defaults to ``max_len`` when
                the tokenizer has one (512 for the seed models), else no limit.
            padding: False (none), True or "longest" (to the longest row of the batch), or
                "max_length" (to ``max_length``, at most :data:`MAX_PADDED_LENGTH`). Padding
                uses ``[PAD]``, type id 0, mask 0.
            return_tensors: None (Python lists), "pt" (torch.long) or "np" (numpy int64).
                Tensors are always 2-D ``[batch, length]``, a single text giving batch 1.
            truncation: cut to ``max_length`` with the longest-first rule (keyword only);
                with False, over-long rows are kept whole and a warning is logged past
                ``max_len``.

        Returns:
            dict with ``input_ids``, ``token_type_ids`` and ``attention_mask``: flat lists for
            a single text, lists of lists for a batch, or 2-D tensors.

        Example::

            >>> enc = tok.encode("Who?", "Me.", max_length=8, padding="max_length")
            >>> enc["token_type_ids"], enc["attention_mask"]       # [CLS] who ? [SEP] me . [SEP] [PAD]
            ([0, 0, 0, 0, 1, 1, 1, 0], [1, 1, 1, 1, 1, 1, 1, 0])
            >>> tok.encode(["a text", ("a", "pair")], padding=True, return_tensors="pt")["input_ids"].shape
            torch.Size([2, 5])
        """
        if return_tensors not in _TENSOR_TYPES:
            raise TokenizerArgumentError(f"return_tensors={return_tensors!r} is not supported; "
                                         "use None (lists), 'pt' (torch) or 'np' (numpy)")
        try:
            pad_mode = _PADDING_MODES[padding]
        except (KeyError, TypeError):
            raise TokenizerArgumentError(f"padding={padding!r} is not supported; use False, True/"
                                         "'longest' or 'max_length'") from None
        if max_length is not None and (isinstance(max_length, bool) or not isinstance(max_length, int)
                                       or max_length < 1):
            raise TokenizerArgumentError(f"max_length must be a positive int or None, "
                                         f"got {max_length!r}")
        limit = max_length
        if limit is None and self.max_len < int(1e12):
            limit = self.max_len
        if pad_mode == "max_length" and limit is None:
            raise TokenizerArgumentError("padding='max_length' needs max_length= (this tokenizer "
                                         "has no max_len to fall back on)")
        if pad_mode == "max_length" and limit > MAX_PADDED_LENGTH:
            raise TokenizerArgumentError(f"padding='max_length' with max_length={limit} would build "
                                         f"rows of {limit} ids; at most {MAX_PADDED_LENGTH} are "
                                         "padded to (use padding=True to pad to the longest row)")

        batched = isinstance(text_or_texts, (list, tuple))
        examples = self._examples(text_or_texts, text_pair) if batched \
            else [(text_or_texts, text_pair)]
        special = self._special_ids()
        rows = [self._encode_pair(a, b, limit if truncation else None, special) for a, b in examples]

        ids = [r[0] for r in rows]
        types = [r[1] for r in rows]
        mask = [[1] * len(r[0]) for r in rows]
        if pad_mode is not None and rows:
            length = limit if pad_mode == "max_length" else max(len(r) for r in ids)
            pad_id = self._token_id(self.pad_token, "padding")
            ids, types, mask = _pad(ids, length, pad_id), _pad(types, length, 0), _pad(mask, length, 0)
        result = {"input_ids": ids, "token_type_ids": types, "attention_mask": mask}
        if return_tensors is not None:
            return {k: _to_tensor(v, return_tensors) for k, v in result.items()}
        if not batched:
            return {k: v[0] for k, v in result.items()}
        return result

    # ------------------------------------------------------------------ helpers
    @staticmethod
    def _examples(texts, pairs):
        if pairs is None:
            examples = []
            for i, item in enumerate(texts):
                if isinstance(item, (list, tuple)):
                    if len(item) != 2:
                        raise TokenizerInputError(f"batch item {i} has {len(item)} texts; a pair "
                                                  "is (text, text_pair)")
                    examples.append(tuple(item))
                else:
                    examples.append((item, None))
            return examples
        if not isinstance(pairs, (list, tuple)) or len(pairs) != len(texts):
            got = f"{len(pairs)} items" if isinstance(pairs, (list, tuple)) else type(pairs).__name__
            raise TokenizerInputError(f"text is a batch of {len(texts)} texts, so text_pair must be "
                                      f"a list of {len(texts)} texts (or None), got {got}")
        return list(zip(texts, pairs))

    def _token_id(self, token, purpose):
        try:
            return self.vocab[token]
        except KeyError:
            raise VocabError(f"the vocabulary has no {token!r} token, which {purpose} needs; "
                             "pass the right spelling (cls_token=, sep_token=, pad_token=) "
                             "when building the tokenizer") from None

    def _special_ids(self):
        return self._token_id(self.cls_token, "encode"), self._token_id(self.sep_token, "encode")

    def _encode_pair(self, text_a, text_b, limit, special):
        cls_id, sep_id = special
        tokens_a = self.tokenize(text_a)
        if text_b is not None and not isinstance(text_b, str):
            raise TokenizerInputError(f"text_pair must be a str or None, got {type(text_b).__name__}")
        # Google's convert_single_example: a pair only when the second text has tokens,
        # and its [SEP] only when some survive truncation.
        tokens_b = self.tokenize(text_b) if text_b else []
        if limit is not None:
            if tokens_b:
                if limit < 3:
                    raise TokenizerArgumentError(f"max_length={limit} leaves no room for [CLS] "
                                                 "and two [SEP] of a pair; use at least 3")
                truncate_seq_pair(tokens_a, tokens_b, limit - 3)
            else:
                if limit < 2:
                    raise TokenizerArgumentError(f"max_length={limit} leaves no room for [CLS] "
                                                 "and [SEP]; use at least 2")
                del tokens_a[limit - 2:]
        vocab = self.vocab
        ids = [cls_id] + [vocab[t] for t in tokens_a] + [sep_id]
        types = [0] * len(ids)
        if tokens_b:
            ids += [vocab[t] for t in tokens_b]
            ids.append(sep_id)
            types += [1] * (len(tokens_b) + 1)
        if len(ids) > self.max_len:
            logger.warning("Token indices sequence length is longer than the specified maximum "
                           "sequence length for this BERT model (%d > %d). Running this sequence "
                           "through BERT will result in indexing errors", len(ids), self.max_len)
        return ids, types


def _to_tensor(rows, kind):
    lengths = {len(r) for r in rows}
    if len(lengths) > 1:
        raise TokenizerArgumentError(f"rows have different lengths ({min(lengths)}..{max(lengths)}) "
                                     f"and cannot form one tensor; pass padding=True")
    if kind == "np":
        import numpy as np
        return np.asarray(rows, dtype=np.int64).reshape(len(rows), lengths.pop() if rows else 0)
    import torch
    return torch.tensor(rows, dtype=torch.long).reshape(len(rows), lengths.pop() if rows else 0)
