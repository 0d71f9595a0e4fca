"""The eight head layouts and the file names of a model directory: one table, one place.

Standard library only (no numpy, no torch), so that the CLI parser can build ``--head``
choices from it without importing either. The planner, the model registry
(:data:`bertconvert.models.heads.HEADS`), the verify stages and the tests all derive from
:data:`LAYOUTS`; no other module of the package spells a head name.

A layout says which TensorFlow head a checkpoint carries and which PyTorch class holds it::

    >>> LAYOUTS[SEQUENCE_CLASSIFICATION].class_name
    'BertForSequenceClassification'
    >>> head_for_class("BertForQuestionAnswering")
    'question-answering'
"""
from collections import OrderedDict
from typing import NamedTuple, Optional, Tuple

# --- head names (the CLI's --head values, HEADS keys, ConversionReport.head) ---------------
BASE = "base"
PRETRAINING = "pretraining"
MASKED_LM = "masked-lm"
NEXT_SENTENCE = "next-sentence"
SEQUENCE_CLASSIFICATION = "sequence-classification"
TOKEN_CLASSIFICATION = "token-classification"
MULTIPLE_CHOICE = "multiple-choice"
QUESTION_ANSWERING = "question-answering"

#: The tied MLM decoder: this key of the PyTorch state dict has no TF variable; it shares the
#: word-embedding matrix (when the config ties them, as Google's models do).
TIED_DECODER_KEY = "cls.predictions.decoder.weight"
WORD_EMBEDDINGS_KEY = "bert.embeddings.word_embeddings.weight"


class HeadLayout(NamedTuple):
    """What one head is made of."""

    name: str
    #: PyTorch class in bertconvert.models (also the ``architectures`` entry of config.json)
    class_name: str
    #: keyword the class's constructor takes a label count by (None: the head has a fixed size)
    label_argument: Optional[str]
    #: parts after the trunk, by the names of the parameter groups: mlm, nsp, classifier, qa
    parts: Tuple[str, ...]
    #: whether the head's outputs go through the pooler (else the pooler is untrained)
    uses_pooler: bool
    #: state-dict keys tied to another parameter: {alias: owner}
    tied: Tuple[Tuple[str, str], ...]
    #: output stages verify compares after the trunk (embeddings, layers, pooled)
    output_stages: Tuple[str, ...]
    #: whether it is built from run_classifier's root output_weights/output_bias
    root_classifier: bool = False
    #: whether transformers' class for this head has a pooler: masked-LM, token
    #: classification and question answering are built with ``add_pooling_layer=False``, and
    #: transformers reports a ``bert.pooler.*`` key as UNEXPECTED there. Converted weights
    #: leave the pooler out for those heads unless ``--keep-pooler`` asks for it.
    transformers_pooler: bool = True


_MLM_TIED = ((TIED_DECODER_KEY, WORD_EMBEDDINGS_KEY),)

#: head name -> layout, in the order the CLI lists them.
LAYOUTS = OrderedDict((layout.name, layout) for layout in (
    HeadLayout(BASE, "BertModel", None, (), True, (), ()),
    HeadLayout(PRETRAINING, "BertForPreTraining", None, ("mlm", "nsp"), True, _MLM_TIED,
               ("mlm logits", "nsp logits")),
    HeadLayout(MASKED_LM, "BertForMaskedLM", None, ("mlm",), False, _MLM_TIED, ("mlm logits",),
               transformers_pooler=False),
    HeadLayout(NEXT_SENTENCE, "BertForNextSentencePrediction", None, ("nsp",), True, (),
               ("nsp logits",)),
    HeadLayout(SEQUENCE_CLASSIFICATION, "BertForSequenceClassification", "num_labels",
               ("classifier",), True, (), ("logits",), root_classifier=True),
    HeadLayout(TOKEN_CLASSIFICATION, "BertForTokenClassification", "num_labels",
               ("classifier",), False, (), ("logits",), root_classifier=True,
               transformers_pooler=False),
    # one logit per choice: the classifier has a single output row, whatever num_labels says
    HeadLayout(MULTIPLE_CHOICE, "BertForMultipleChoice", None, ("classifier",), True, (),
               ("logits",), root_classifier=True),
    HeadLayout(QUESTION_ANSWERING, "BertForQuestionAnswering", None, ("qa",), False, (),
               ("start logits", "end logits"), transformers_pooler=False),
))

#: every head name, in CLI order
HEAD_NAMES = tuple(LAYOUTS)
#: heads whose constructor takes ``num_labels``
LABELLED_HEADS = tuple(n for n, layout in LAYOUTS.items() if layout.label_argument)
#: heads that share run_classifier's root output_weights layout
CLASSIFIER_HEADS = tuple(n for n, layout in LAYOUTS.items() if layout.root_classifier)
#: Heads whose converted weights leave the pooler out by default (transformers' classes for
#: them have none; see :attr:`HeadLayout.transformers_pooler`).
POOLERLESS_HEADS = tuple(n for n, layout in LAYOUTS.items() if not layout.transformers_pooler)


def writes_pooler(head, keep_pooler=False):
    """Whether a conversion to ``head`` writes the pooler: always for heads whose
    transformers class has one, else only when ``keep_pooler`` asks for it."""
    return bool(keep_pooler) or LAYOUTS[head].transformers_pooler


#: Heads whose outputs have a fixed width, which a label count must equal to agree with them:
#: question-answering scores start and end (transformers' QA configs say num_labels 2), and
#: the next-sentence classifier (alone or in pretraining) has two classes.
FIXED_LABEL_COUNTS = {QUESTION_ANSWERING: 2, NEXT_SENTENCE: 2, PRETRAINING: 2}
#: Label count of a classifier when neither the caller, the config nor the weights say
#: (pytorch-pretrained-bert's and transformers' default).
DEFAULT_NUM_LABELS = 2


def label_count(*choices):
    """The first label count given (not None), in the caller's order of precedence, else
    :data:`DEFAULT_NUM_LABELS`."""
    return next((n for n in choices if n), DEFAULT_NUM_LABELS)


#: output stages each head adds after the trunk
HEAD_STAGES = OrderedDict((n, layout.output_stages) for n, layout in LAYOUTS.items())


def head_for_class(class_name):
    """Head name for a model class name (a config's ``architectures`` entry), or None."""
    for name, layout in LAYOUTS.items():
        if layout.class_name == class_name:
            return name
    return None


# --- GELU forms --------------------------------------------------------------------------------
#: The GELU forms a model can compute (``--gelu``): exact (erf) or the tanh approximation.
GELU_FORMS = ("exact", "tanh")
#: GELU form -> the ``hidden_act`` name transformers (and bertconvert.models) give it.
HIDDEN_ACT_OF_GELU = {"exact": "gelu", "tanh": "gelu_new"}
#: ``hidden_act`` values a config may use for a GELU form (transformers' aliases included).
GELU_OF_HIDDEN_ACT = {"gelu": "exact", "gelu_python": "exact", "gelu_new": "tanh",
                      "gelu_pytorch_tanh": "tanh", "gelu_fast": "tanh"}


# --- file names ------------------------------------------------------------------------------
#: transformers' config file: written by convert, read first
CONFIG_NAME = "config.json"
#: Google's config file: beside every TF checkpoint, kept in converted directories
GOOGLE_CONFIG_NAME = "bert_config.json"
#: Config files a model directory may hold, in the order they are looked for there:
#: transformers' file first, since it also records the head and the label count.
CONFIG_NAMES = (CONFIG_NAME, GOOGLE_CONFIG_NAME)
#: Config files beside a TF checkpoint, in the order they are looked for there: Google's
#: file first, since Google ships one with every checkpoint.
CHECKPOINT_CONFIG_NAMES = (GOOGLE_CONFIG_NAME, CONFIG_NAME)
SAFETENSORS_NAME = "model.safetensors"
PYTORCH_NAME = "pytorch_model.bin"
#: suffix of transformers' sharded-weights index (a JSON weight_map naming the shard files)
INDEX_SUFFIX = ".index.json"
SAFETENSORS_INDEX_NAME = SAFETENSORS_NAME + INDEX_SUFFIX
PYTORCH_INDEX_NAME = PYTORCH_NAME + INDEX_SUFFIX
#: Weight files looked for in a model directory, most preferred first.
WEIGHTS_NAMES = (SAFETENSORS_NAME, SAFETENSORS_INDEX_NAME, PYTORCH_NAME, PYTORCH_INDEX_NAME)
VOCAB_NAME = "vocab.txt"
TOKENIZER_CONFIG_NAME = "tokenizer_config.json"
#: pytorch-pretrained-bert 0.6.2's TF checkpoint prefix in a model archive (``from_tf=True``)
TF_WEIGHTS_NAME = "model.ckpt"
#: the conversion's provenance record, written by convert and read by verify
REPORT_NAME = "conversion.json"
#: the Adam slots and global_step of the run (``convert --optimizer-state``)
OPTIMIZER_NAME = "optimizer.safetensors"
#: every file name above: spelled in this module only (tests/test_architecture.py)
FILE_NAMES = (CONFIG_NAME, GOOGLE_CONFIG_NAME, SAFETENSORS_NAME, PYTORCH_NAME,
              SAFETENSORS_INDEX_NAME, PYTORCH_INDEX_NAME, VOCAB_NAME, TOKENIZER_CONFIG_NAME,
              REPORT_NAME, OPTIMIZER_NAME, TF_WEIGHTS_NAME)
