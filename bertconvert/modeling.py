"""The import path ``bertconvert.modeling``: pytorch-pretrained-bert 0.6.2's ``modeling`` module.

Every public name of 0.6.2's module, re-exported from where it lives: the trunk and its layers
(:mod:`bertconvert.models.trunk`), the heads and prediction layers
(:mod:`bertconvert.models.heads`), the config (:mod:`bertconvert.models.config`), the file names
(:mod:`bertconvert.layout`), the model-name table (:mod:`bertconvert.cache.names`) and
``load_tf_weights_in_bert`` on the TensorFlow-free converter
(:mod:`bertconvert.convert.tf_weights`). No code lives here.
"""
from .cache.names import PRETRAINED_MODEL_ARCHIVE_MAP  # noqa: F401
from .cache.store import cached_path  # noqa: F401
from .convert.tf_weights import load_tf_weights_in_bert  # noqa: F401
from .layout import CONFIG_NAME, TF_WEIGHTS_NAME  # noqa: F401
from .layout import GOOGLE_CONFIG_NAME as BERT_CONFIG_NAME  # noqa: F401
from .layout import PYTORCH_NAME as WEIGHTS_NAME  # noqa: F401
from .models.config import BertConfig  # noqa: F401
from .models.heads import (BertForMaskedLM, BertForMultipleChoice,  # noqa: F401
                           BertForNextSentencePrediction, BertForPreTraining,
                           BertForQuestionAnswering, BertForSequenceClassification,
                           BertForTokenClassification, BertLMPredictionHead, BertOnlyMLMHead,
                           BertOnlyNSPHead, BertPredictionHeadTransform, BertPreTrainingHeads)
from .models.trunk import *  # noqa: F401,F403
from .models.trunk import (ACT2FN, BertAttention, BertEmbeddings, BertEncoder,  # noqa: F401
                           BertIntermediate, BertLayer, BertLayerNorm, BertModel, BertOutput,
                           BertPooler, BertPreTrainedModel, BertSelfAttention, BertSelfOutput,
                           gelu, swish)
