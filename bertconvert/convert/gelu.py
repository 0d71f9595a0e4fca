"""Which GELU a converted model computes: exact (erf) or the tanh approximation.

BERT's checkpoints do not record it, and the two differ by far more than parity tolerance
(about 3.7e-3 on the QA logits of a 6-layer model). Google's first TF1 weights were trained
with the exact erf GELU; google-research/bert's ``modeling.py`` switched to the tanh form in
early 2019, so TF1 checkpoints fine-tuned with its later code computed tanh; TensorFlow
Model Garden's ``"gelu"`` is the tanh approximation. Hence the defaults follow the variable
*names*, which say whose code wrote the weights, not the container: ``exact`` for TF1 names
(``bert/encoder/...``: Google's TF1 code, in a checkpoint or a TF1 SavedModel / TF Serving
export), ``tanh`` for TF2 object-graph names (Model Garden checkpoints and SavedModels).
The choice is written into config.json under transformers' names (``gelu`` = erf,
``gelu_new`` = tanh).

A config whose ``hidden_act`` is not plain ``gelu`` is honoured as it is: ``gelu_new``
already says tanh, and ``relu``, ``swish``... are not GELU. An explicit ``gelu=`` that
contradicts it is an :class:`~bertconvert.errors.ActivationError` (never silently ignored).
"""
from ..errors import ActivationError, option
from ..layout import GELU_FORMS as GELU_CHOICES, HIDDEN_ACT_OF_GELU as HIDDEN_ACT

_FORM_OF = {act: form for form, act in HIDDEN_ACT.items()}
#: the naming of the source's variables -> default form (see the module docstring)
DEFAULT_GELU = {"tf1": "exact", "tf2": "tanh"}
_SOURCE_WORDS = {"tf1": "TF1 variable names (Google's TF1 code; checkpoints and SavedModels)",
                 "tf2": "TF2 object-graph names (Model Garden checkpoints and SavedModels)"}


def gelu_option(value="X"):
    """``--gelu X`` on the command line, ``gelu='X'`` in Python."""
    return option(f"--gelu {value}", f"gelu={value!r}")


def check_gelu(gelu):
    """Refuse an unknown GELU form before anything is read."""
    if gelu is not None and gelu not in GELU_CHOICES:
        raise ActivationError(f"unknown GELU form {gelu!r}; expected exact (erf) or tanh (the "
                              f"approximation): {gelu_option('exact')} or {gelu_option('tanh')}")


def choose_activation(config, gelu, naming, config_label):
    """Set ``config.hidden_act`` for ``gelu`` (None: the default for variables named the
    ``naming`` way, "tf1" or "tf2") and return what was decided:
    ``{"gelu": "exact"|"tanh"|None, "hidden_act", "reason"}``."""
    check_gelu(gelu)
    act = config.hidden_act
    if act == "gelu":
        form = gelu or DEFAULT_GELU[naming]
        reason = (f"chosen with {gelu_option(gelu)}" if gelu else
                  f"default for {_SOURCE_WORDS[naming]}; {gelu_option('exact' if form == 'tanh' else 'tanh')} "
                  "chooses the other form")
    elif act in _FORM_OF:
        form = _FORM_OF[act]
        if gelu and gelu != form:
            raise ActivationError(
                f"{config_label} says hidden_act {act!r} (GELU {form}), but {gelu_option(gelu)} "
                f"asks for {gelu}; omit the option or make the config say hidden_act "
                f"{HIDDEN_ACT[gelu]!r}")
        reason = f"{config_label} says hidden_act {act!r}"
    else:
        if gelu:
            raise ActivationError(
                f"{config_label} says hidden_act {act!r}, which is not GELU; "
                f"{gelu_option(gelu)} only chooses between GELU forms: omit it")
        return {"gelu": None, "hidden_act": act, "reason": f"{config_label} says hidden_act {act!r}"}
    config.hidden_act = HIDDEN_ACT[form]
    return {"gelu": form, "hidden_act": config.hidden_act, "reason": reason}
