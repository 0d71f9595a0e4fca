"""Deterministic input batches for parity checks.

Both sides of a parity check (TensorFlow reference and PyTorch model) must see the same token
ids. They come from the checkpoint's own ``vocab.txt`` and our tokenizer, applied to either
the sentences bundled in ``bertconvert/data/verify_sentences.txt`` or a user's text file.

The default batch is built to exercise what breaks conversions: single sentences and
sentence pairs (segment B), different lengths (so padding and the attention mask matter), and
text the vocabulary cannot spell ([UNK]). Sequences get decreasing length budgets, so even a
tiny vocabulary that spells words letter by letter still yields a padded batch.

Text file format (``--text FILE``), UTF-8, one example per line, fields separated by a TAB::

    a single sentence
    first sentence<TAB>second sentence             (a pair: segment A, segment B)
    context<TAB>choice 1<TAB>choice 2<TAB>...       (multiple-choice: same count every line)

Blank lines and lines starting with ``#`` are skipped. The file must be a regular file of at
most :data:`MAX_TEXT_BYTES` (16 MiB: every line becomes a row of one batch, so a real
parity check needs kilobytes; the bound stops ``/dev/zero`` or a FIFO from being read
without end).
"""
import dataclasses
import importlib.resources
import logging
import os

import numpy as np

from .. import layout
from ..tokenizer.encode import truncate_seq_pair
from ..errors import VerificationError

log = logging.getLogger(__name__)

#: Longest default sequence; real-size models keep the check fast, tiny ones are capped lower.
DEFAULT_MAX_SEQ_LENGTH = 128
#: Multiple-choice default: this many candidate endings per example.
DEFAULT_NUM_CHOICES = 3
#: Largest ``--text`` file read (see the module docstring).
MAX_TEXT_BYTES = 16 << 20


@dataclasses.dataclass
class VerifyInputs:
    """One batch: int64 arrays [batch, seq] ([batch, choices, seq] for multiple-choice)."""

    input_ids: np.ndarray
    token_type_ids: np.ndarray
    attention_mask: np.ndarray
    source: str = "bundled sentences"
    examples: list = dataclasses.field(default_factory=list)

    def arrays(self):
        """The three arrays by their model argument names."""
        return {"input_ids": self.input_ids, "token_type_ids": self.token_type_ids,
                "attention_mask": self.attention_mask}

    def summary(self):
        """A JSON-friendly description (shape, real lengths, where the text came from)."""
        lengths = self.attention_mask.sum(axis=-1).reshape(-1).tolist()
        return {"source": self.source, "shape": list(self.input_ids.shape),
                "lengths": [int(n) for n in lengths], "examples": len(self.examples)}


def _read_lines(text):
    return [line for line in text.splitlines()
            if line.strip() and not line.lstrip().startswith("#")]


def bundled_sentences():
    """The real English sentences shipped with the package (package data)."""
    resource = importlib.resources.files("bertconvert").joinpath("data/verify_sentences.txt")
    try:
        return [line.strip() for line in _read_lines(resource.read_text(encoding="utf-8"))]
    except (OSError, FileNotFoundError) as e:
        raise VerificationError(
            "bertconvert/data/verify_sentences.txt is missing from the installed package; "
            "reinstall bertconvert, or pass --text FILE") from e


def default_examples(head):
    """Examples for the default batch: tuples of 1-2 texts, or context + choices for MC."""
    s = bundled_sentences()
    if head == layout.MULTIPLE_CHOICE:
        n = DEFAULT_NUM_CHOICES
        return [tuple([s[1]] + s[2:2 + n]), tuple([s[6]] + s[7:7 + n])]
    return [(s[0],), (s[1], s[2]), (s[3],), (s[4], s[5]), (s[6], s[9]), (s[8],), (s[10], s[11])]


def read_text_file(path, head):
    """Examples from a user text file (see the module docstring for the format)."""
    from ..errors import option
    from ..safeio import read_regular_file
    try:
        # Regular files only, bounded: /dev/zero or a FIFO must not be read without end.
        raw = read_regular_file(path, MAX_TEXT_BYTES, VerificationError,
                                f"{option('--text', 'text=')} file")
        lines = _read_lines(raw.decode("utf-8"))
    except (OSError, UnicodeDecodeError) as e:
        raise VerificationError(f"cannot read --text file {path}: {e}; expected a UTF-8 text "
                                "file with one example per line") from e
    examples = [tuple(field.strip() for field in line.split("\t")) for line in lines]
    return _check_examples(examples, head, f"--text file {path}")


def _check_examples(examples, head, where):
    if not examples:
        raise VerificationError(f"{where} holds no examples (only blank or # lines)")
    if not all(isinstance(t, str) for e in examples for t in e):
        raise VerificationError(f"{where}: every example must be text or a tuple of texts")
    if head == layout.MULTIPLE_CHOICE:
        counts = {len(e) for e in examples}
        if len(counts) != 1 or counts == {1}:
            raise VerificationError(
                f"{where}: multiple-choice lines need a context and the same number of "
                f"TAB-separated choices on every line; found field counts {sorted(counts)}")
    else:
        bad = [i + 1 for i, e in enumerate(examples) if len(e) > 2]
        if bad:
            raise VerificationError(
                f"{where}: line(s) {bad[:5]} have more than two TAB-separated texts; "
                "expected a sentence or a sentence pair per line")
    return examples


def find_vocab_file(*directories):
    """The first ``vocab.txt`` found in the given directories (None entries are skipped)."""
    for directory in directories:
        if directory and os.path.isfile(os.path.join(directory, layout.VOCAB_NAME)):
            return os.path.join(directory, layout.VOCAB_NAME)
    searched = ", ".join(d for d in directories if d)
    raise VerificationError(
        f"no vocab.txt in {searched}; the input batch is tokenized with the checkpoint's own "
        "vocabulary, so put its vocab.txt beside the checkpoint")


def make_tokenizer(vocab_file):
    """Our BertTokenizer over ``vocab_file``, cased as
    :func:`~bertconvert.tokenizer.wordpiece.guess_do_lower_case` decides. Casing only shapes how
    realistic the batch is: both sides of the check always see the same ids."""
    from ..tokenizer.wordpiece import BertTokenizer, guess_do_lower_case, load_vocab
    lower = guess_do_lower_case(vocab_file, load_vocab(vocab_file))
    return BertTokenizer(vocab_file, do_lower_case=lower)


def _truncate(token_lists, budget):
    """Google's run_classifier rule (the tokenizer's shared implementation): drop from the
    end of the longer text, the second one on ties, until the pair fits ``budget``."""
    token_lists = [list(t) for t in token_lists]
    if len(token_lists) == 1:
        del token_lists[0][budget:]
    else:
        truncate_seq_pair(token_lists[0], token_lists[1], budget)
    return token_lists


def _encode_one(tokenizer, texts, max_seq_length, type_vocab_size):
    specials = 1 + len(texts)  # [CLS] + one [SEP] per text
    if max_seq_length <= specials:
        raise VerificationError(f"max sequence length {max_seq_length} is too short for "
                                f"{len(texts)} text(s) plus [CLS]/[SEP]")
    pieces = _truncate([tokenizer.tokenize(t) for t in texts], max_seq_length - specials)
    tokens, types = ["[CLS]"], [0]
    for segment, part in enumerate(pieces):
        tokens += part + ["[SEP]"]
        types += [min(segment, type_vocab_size - 1)] * (len(part) + 1)
    return tokenizer.convert_tokens_to_ids(tokens), types


def build_inputs(tokenizer, examples, max_seq_length, head=layout.BASE, type_vocab_size=2,
                 source="bundled sentences", vary_lengths=True):
    """Tokenize ``examples`` into one padded batch.

    Each example is a tuple of texts (one or two; for multiple-choice, a context and its
    choices, each choice paired with the context). With ``vary_lengths`` example *i* gets a
    length budget ``max_seq_length - i * step`` so the batch always mixes lengths.
    """
    pad_id = tokenizer.vocab.get(getattr(tokenizer, "pad_token", "[PAD]"), 0)
    rows = []  # (ids, types) per sequence, in batch-major order
    step = max(1, max_seq_length // (2 * max(1, len(examples)))) if vary_lengths else 0
    for i, example in enumerate(examples):
        budget = max(max_seq_length - i * step, max_seq_length // 2)
        if head == layout.MULTIPLE_CHOICE:
            context, choices = example[0], example[1:]
            rows += [_encode_one(tokenizer, (context, c), budget, type_vocab_size) for c in choices]
        else:
            rows.append(_encode_one(tokenizer, example, budget, type_vocab_size))
    seq = max(len(ids) for ids, _ in rows)
    ids = np.full((len(rows), seq), pad_id, dtype=np.int64)
    types = np.zeros((len(rows), seq), dtype=np.int64)
    mask = np.zeros((len(rows), seq), dtype=np.int64)
    for r, (row_ids, row_types) in enumerate(rows):
        ids[r, :len(row_ids)] = row_ids
        types[r, :len(row_types)] = row_types
        mask[r, :len(row_ids)] = 1
    if head == layout.MULTIPLE_CHOICE:
        shape = (len(examples), len(examples[0]) - 1, seq)
        ids, types, mask = ids.reshape(shape), types.reshape(shape), mask.reshape(shape)
    return VerifyInputs(ids, types, mask, source=source, examples=[list(e) for e in examples])


#: Sequence length of the batch made without a vocabulary (see :func:`synthetic_inputs`).
SYNTHETIC_MAX_SEQ_LENGTH = 32


def synthetic_inputs(vocab_size, head=layout.BASE, max_position_embeddings=512,
                     type_vocab_size=2, batch=6, seed=20240601):
    """A deterministic batch of pseudo-random token ids, for sources without a vocabulary (a
    TF Serving export has none). Parity only needs both sides to see the same ids; the batch
    still mixes lengths (padding and the attention mask matter) and segment B."""
    rng = np.random.default_rng(seed)
    seq = max(2, min(SYNTHETIC_MAX_SEQ_LENGTH, int(max_position_embeddings)))
    choices = DEFAULT_NUM_CHOICES if head == layout.MULTIPLE_CHOICE else 1
    rows = batch * choices
    ids = (rng.integers(1, vocab_size, size=(rows, seq)) if vocab_size > 1
           else np.zeros((rows, seq), dtype=np.int64)).astype(np.int64)
    lengths = [max(2, seq - (r * seq) // (2 * rows)) for r in range(rows)]
    mask = np.array([[1] * n + [0] * (seq - n) for n in lengths], dtype=np.int64)
    types = np.zeros_like(mask)
    for r, n in enumerate(lengths):
        if r % 2 and type_vocab_size > 1:  # every other sequence a pair: segment B
            types[r, n // 2:n] = 1
    ids *= mask
    if choices > 1:
        shape = (batch, choices, seq)
        ids, types, mask = ids.reshape(shape), types.reshape(shape), mask.reshape(shape)
    return VerifyInputs(ids, types, mask, source="pseudo-random token ids (no vocab.txt found "
                        "to tokenize sentences with)")


def load_inputs(vocab_file, head=layout.BASE, max_position_embeddings=512, type_vocab_size=2,
                text=None):
    """The verification batch: bundled sentences, or ``text`` when given.

    ``text`` is a file path (format in the module docstring) or, from Python, a list of
    examples (a string, or a tuple of texts as in the file). Bundled sentences are capped at
    128 tokens (keeps real-size checks fast); a user's text may use the model's full
    ``max_position_embeddings``.
    """
    tokenizer = make_tokenizer(vocab_file)
    if text is None:
        examples = default_examples(head)
        limit = min(DEFAULT_MAX_SEQ_LENGTH, max_position_embeddings)
        return build_inputs(tokenizer, examples, limit, head, type_vocab_size)
    if isinstance(text, (list, tuple)):
        examples = _check_examples([(e,) if isinstance(e, str) else tuple(e) for e in text],
                                   head, "the text= examples")
        source = f"{len(examples)} given example(s)"
    else:
        examples, source = read_text_file(text, head), os.fspath(text)
    return build_inputs(tokenizer, examples, max_position_embeddings, head, type_vocab_size,
                        source=source, vary_lengths=False)
