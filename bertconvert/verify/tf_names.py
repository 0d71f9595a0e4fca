"""Checkpoint variable names for the TensorFlow reference (:mod:`bertconvert.verify.tf_side`).

Logical weight names (``"query_kernel"``, layer ``{i}``) -> the checkpoint's variables, for
Google's TF1 layout (variable names) and TF2 Model Garden checkpoints and SavedModels
(object paths), plus the reshapes that bring TF2 tensors into TF1's orientation. Written
independently of :mod:`bertconvert.convert.rules` on purpose: the reference must not share
the converter's table, or a wrong rule would pass.

**TF2 object paths.** A TF2 checkpoint stores each variable once, under the first path
TensorFlow's walk of the object graph reached, which depends on how the root was saved
(``Checkpoint(encoder=)``, ``Checkpoint(model=)``, a trainer's checkpoint items, a
SavedModel's ``variables/N``). Every other path to it is in the graph itself,
``_CHECKPOINTABLE_OBJECT_GRAPH``. :func:`object_paths` parses that with TensorFlow's own
``trackable_object_graph_pb2`` and lists, per variable, the last components of every path
to it; :data:`TF2_PATHS` matches those *endings* (e.g. ``_transformer_layers/3/
_attention_layer/_query_dense/kernel``; ``{layers}`` in a template stands for any of
:data:`LAYER_LISTS`), so any root works. Object names that contain
``/`` or ``.`` are kept as TensorFlow named the object (the checkpoint key escapes them as
``.S`` and ``..``): ``next_sentence.pooler_dense/kernel``.
"""
import collections
import re

# Logical weight name -> TF variable name template ({i} = layer index). Kernels are read in
# Google's TF1 [in, out] orientation; TF2 tensors are reshaped into it (see reshape_tf2).
TF1_NAMES = {
    "word_embeddings": "bert/embeddings/word_embeddings",
    "position_embeddings": "bert/embeddings/position_embeddings",
    "token_type_embeddings": "bert/embeddings/token_type_embeddings",
    "embeddings_ln_gamma": "bert/embeddings/LayerNorm/gamma",
    "embeddings_ln_beta": "bert/embeddings/LayerNorm/beta",
    "query_kernel": "bert/encoder/layer_{i}/attention/self/query/kernel",
    "query_bias": "bert/encoder/layer_{i}/attention/self/query/bias",
    "key_kernel": "bert/encoder/layer_{i}/attention/self/key/kernel",
    "key_bias": "bert/encoder/layer_{i}/attention/self/key/bias",
    "value_kernel": "bert/encoder/layer_{i}/attention/self/value/kernel",
    "value_bias": "bert/encoder/layer_{i}/attention/self/value/bias",
    "attn_out_kernel": "bert/encoder/layer_{i}/attention/output/dense/kernel",
    "attn_out_bias": "bert/encoder/layer_{i}/attention/output/dense/bias",
    "attn_ln_gamma": "bert/encoder/layer_{i}/attention/output/LayerNorm/gamma",
    "attn_ln_beta": "bert/encoder/layer_{i}/attention/output/LayerNorm/beta",
    "intermediate_kernel": "bert/encoder/layer_{i}/intermediate/dense/kernel",
    "intermediate_bias": "bert/encoder/layer_{i}/intermediate/dense/bias",
    "output_kernel": "bert/encoder/layer_{i}/output/dense/kernel",
    "output_bias": "bert/encoder/layer_{i}/output/dense/bias",
    "output_ln_gamma": "bert/encoder/layer_{i}/output/LayerNorm/gamma",
    "output_ln_beta": "bert/encoder/layer_{i}/output/LayerNorm/beta",
    "pooler_kernel": "bert/pooler/dense/kernel",
    "pooler_bias": "bert/pooler/dense/bias",
    "mlm_transform_kernel": "cls/predictions/transform/dense/kernel",
    "mlm_transform_bias": "cls/predictions/transform/dense/bias",
    "mlm_ln_gamma": "cls/predictions/transform/LayerNorm/gamma",
    "mlm_ln_beta": "cls/predictions/transform/LayerNorm/beta",
    "mlm_output_bias": "cls/predictions/output_bias",
    # [out, in] already: Google stores these with tf.get_variable, not tf.layers.dense.
    "nsp_weights": "cls/seq_relationship/output_weights",
    "nsp_bias": "cls/seq_relationship/output_bias",
    "classifier_weights": "output_weights",
    "classifier_bias": "output_bias",
    "token_classifier_weights": "output_weights",
    "token_classifier_bias": "output_bias",
    "squad_weights": "cls/squad/output_weights",
    "squad_bias": "cls/squad/output_bias",
}

#: Where Google's modeling.py builds the first layer's self-attention (its serving graph's
#: reshapes there record the head count that 2-D TF1 kernels do not).
TF1_ATTENTION_SCOPE = "bert/encoder/layer_0/attention/self/"

TF2_SUFFIX = "/.ATTRIBUTES/VARIABLE_VALUE"
#: The encoder's list of transformer blocks: BertEncoder V1/V2 say "_transformer_layers",
#: EncoderScaffold "_hidden_layers".
LAYER_LISTS = ("_transformer_layers", "_hidden_layers")
_L = "{layers}/{i}/"
# Logical name -> endings of object paths (candidates in order of preference). Model
# Garden's BertEncoder (V1), BertEncoderV2 and EncoderScaffold all name their sub-layers
# this way; the heads are Model Garden's: MaskedLM ("masked_lm"), ClassificationHead with
# its own pooler ("dense" = pooler_dense, then "out_proj"), BertClassifier ("classifier"),
# BertTokenClassifier ("classifier", a plain Dense) and BertSpanLabeler ("span_labeling").
TF2_PATHS = {
    "word_embeddings": ("_embedding_layer/embeddings", "masked_lm/embedding_table"),
    "position_embeddings": ("_position_embedding_layer/embeddings",
                            "_position_embedding_layer/_position_embeddings"),
    "token_type_embeddings": "_type_embedding_layer/embeddings",
    "embeddings_ln_gamma": "_embedding_norm_layer/gamma",
    "embeddings_ln_beta": "_embedding_norm_layer/beta",
    "query_kernel": _L + "_attention_layer/_query_dense/kernel",
    "query_bias": _L + "_attention_layer/_query_dense/bias",
    "key_kernel": _L + "_attention_layer/_key_dense/kernel",
    "key_bias": _L + "_attention_layer/_key_dense/bias",
    "value_kernel": _L + "_attention_layer/_value_dense/kernel",
    "value_bias": _L + "_attention_layer/_value_dense/bias",
    "attn_out_kernel": _L + "_attention_layer/_output_dense/kernel",
    "attn_out_bias": _L + "_attention_layer/_output_dense/bias",
    "attn_ln_gamma": _L + "_attention_layer_norm/gamma",
    "attn_ln_beta": _L + "_attention_layer_norm/beta",
    "intermediate_kernel": _L + "_intermediate_dense/kernel",
    "intermediate_bias": _L + "_intermediate_dense/bias",
    "output_kernel": _L + "_output_dense/kernel",
    "output_bias": _L + "_output_dense/bias",
    "output_ln_gamma": _L + "_output_layer_norm/gamma",
    "output_ln_beta": _L + "_output_layer_norm/beta",
    "pooler_kernel": "_pooler_layer/kernel",
    "pooler_bias": "_pooler_layer/bias",
    "mlm_transform_kernel": "masked_lm/dense/kernel",
    "mlm_transform_bias": "masked_lm/dense/bias",
    "mlm_ln_gamma": "masked_lm/layer_norm/gamma",
    "mlm_ln_beta": "masked_lm/layer_norm/beta",
    # The Keras weight is named "output_bias/bias": the object path is masked_lm/bias, the
    # checkpoint key of a masked_lm checkpoint item masked_lm/output_bias.Sbias.
    "mlm_output_bias": ("masked_lm/bias", "masked_lm/output_bias/bias"),
    # Next-sentence head: BertPretrainerV2's classification_heads[0] (checkpoint item
    # "next_sentence.pooler_dense" is its pooler). Its own pooler replaces the encoder's.
    "nsp_pooler_kernel": ("next_sentence.pooler_dense/kernel", "next_sentence/dense/kernel",
                          "classification_heads/0/dense/kernel"),
    "nsp_pooler_bias": ("next_sentence.pooler_dense/bias", "next_sentence/dense/bias",
                        "classification_heads/0/dense/bias"),
    "nsp_weights": ("next_sentence/out_proj/kernel", "classification_heads/0/out_proj/kernel"),
    "nsp_bias": ("next_sentence/out_proj/bias", "classification_heads/0/out_proj/bias"),
    # BertClassifier: "classifier" is a ClassificationHead; its "dense" is its own pooler
    # (use_encoder_pooler=False), absent when it classifies the encoder's pooled output.
    "classifier_pooler_kernel": ("classifier/dense/kernel",
                                 "sentence_prediction.pooler_dense/kernel"),
    "classifier_pooler_bias": ("classifier/dense/bias", "sentence_prediction.pooler_dense/bias"),
    "classifier_weights": "classifier/out_proj/kernel",
    "classifier_bias": "classifier/out_proj/bias",
    # BertTokenClassifier: "classifier" is a Dense on every position.
    "token_classifier_weights": "classifier/kernel",
    "token_classifier_bias": "classifier/bias",
    # BertSpanLabeler: span_labeling's only Dense, kernel [H, 2] = (start, end).
    "squad_weights": "span_labeling/layer_with_weights-0/kernel",
    "squad_bias": "span_labeling/layer_with_weights-0/bias",
}
#: Logical names whose TF2 tensor is a Dense kernel [in, out] where TF1 stores [out, in].
TF2_TRANSPOSED = frozenset({"nsp_weights", "classifier_weights", "token_classifier_weights",
                            "squad_weights"})

#: Object-graph edges that lead to aliases only (Keras's variable lists, the SavedModel's
#: keras_api mirror, optimizer state): skipping them keeps the walk small.
_ALIAS_EDGES = frozenset({"keras_api", "variables", "trainable_variables",
                          "non_trainable_variables", "_variables", "optimizer",
                          "_self_saveable_object_factories"})
#: Longest path ending :data:`TF2_PATHS` needs, in components.
_DEPTH = 6


def object_paths(graph_bytes, graph_proto):
    """``{checkpoint key: set of path endings}`` from a serialized TrackableObjectGraph.

    ``graph_proto`` is TensorFlow's ``trackable_object_graph_pb2`` module. Each ending is
    the last (up to six) object names of a path from the root to the variable, joined by
    ``/``; walking up from each variable keeps the count bounded.
    """
    graph = graph_proto.TrackableObjectGraph()
    graph.ParseFromString(graph_bytes)
    parents = collections.defaultdict(list)  # node -> [(parent node, edge name)]
    for node_id, node in enumerate(graph.nodes):
        for child in node.children:
            if child.local_name not in _ALIAS_EDGES:
                parents[child.node_id].append((node_id, child.local_name))
    found = {}
    for node_id, node in enumerate(graph.nodes):
        keys = [a.checkpoint_key for a in node.attributes if a.name == "VARIABLE_VALUE"]
        if not keys:
            continue
        endings = set()
        stack = [(node_id, ())]
        while stack:
            current, names = stack.pop()
            ups = parents.get(current, ())
            if len(names) == _DEPTH or not ups:
                endings.add("/".join(names))
                continue
            for parent, name in ups:
                if len(endings) > 4096:  # pathological graph: enough endings to match
                    break
                stack.append((parent, (name,) + names))
        for key in keys:
            found.setdefault(key, set()).update(endings)
    return found


def _pattern(ending):
    # Anchored at a component boundary: "classifier/kernel" must not match "dense/kernel".
    text = re.escape(ending).replace(re.escape("{i}"), r"(\d+)")
    text = text.replace(re.escape("{layers}"), "(?:" + "|".join(map(re.escape, LAYER_LISTS)) + ")")
    return re.compile(r"(?:^|/)" + text + "$")


_PATTERNS = {name: tuple(_pattern(e) for e in ((v,) if isinstance(v, str) else v))
             for name, v in TF2_PATHS.items()}


def resolve_tf2(paths):
    """``{(logical, layer or None): [checkpoint keys]}`` for every :data:`TF2_PATHS` entry
    the variables' ``paths`` (checkpoint key -> path endings) match, first candidate that
    matches winning. More than one key for one weight means two networks in one
    checkpoint; the caller reports that."""
    resolved = {}
    for logical, patterns in _PATTERNS.items():
        for pattern in patterns:
            hits = collections.defaultdict(set)
            for key, endings in paths.items():
                for ending in endings:
                    m = pattern.search(ending)
                    if m:
                        hits[int(m.group(1)) if m.groups() else None].add(key)
            for layer, keys in hits.items():
                resolved.setdefault((logical, layer), sorted(keys))
    return resolved


def reshape_tf2(name, array):
    """Bring a TF2 einsum-dense tensor into TF1's 2-D/1-D orientation (pure reshapes)."""
    if name.endswith("_kernel") and array.ndim == 3:
        if name == "attn_out_kernel":          # [heads, head_dim, H] -> [H, H]
            return array.reshape(-1, array.shape[-1])
        return array.reshape(array.shape[0], -1)  # [H, heads, head_dim] -> [H, H]
    if name.endswith("_bias") and array.ndim == 2:  # [heads, head_dim] -> [H]
        return array.reshape(-1)
    return array


def graph_heads(path, hidden, saved_model_pb2, make_ndarray):
    """The attention head count in the serving graph ``path`` (a TF1 SavedModel's
    ``saved_model.pb``), read with TensorFlow's own ``saved_model_pb2`` (not bertconvert's
    decoder): a ``Reshape`` under :data:`TF1_ATTENTION_SCOPE` to ``[batch, seq, heads,
    head_size]`` (its shape a ``Const`` or a ``Pack`` of a dynamic batch and ``Const``s), or
    the einsum variant's ``[hidden, heads, head_size]`` kernel. None when it says nothing."""
    proto = saved_model_pb2.SavedModel()
    try:
        with open(path, "rb") as f:
            proto.ParseFromString(f.read())
    except Exception:  # noqa: BLE001 - no readable graph: the head count stays unknown
        return None
    graphs = sorted(proto.meta_graphs, key=lambda m: "serve" not in m.meta_info_def.tags)
    if not graphs:
        return None
    nodes = {n.name: n for n in graphs[0].graph_def.node}

    def const(name):
        found = nodes.get(name.split(":")[0])
        if found is None or found.op != "Const":
            return None
        return make_ndarray(found.attr["value"].tensor).reshape(-1).tolist()

    heads = set()
    for n in nodes.values():
        if n.op != "Reshape" or not n.name.startswith(TF1_ATTENTION_SCOPE) or len(n.input) < 2:
            continue
        shape = nodes.get(n.input[1].split(":")[0])
        if shape is not None and shape.op == "Pack":
            dims = [(const(i) or [None])[0] for i in shape.input if not i.startswith("^")]
        else:
            dims = const(n.input[1]) or []
        if len(dims) in (3, 4) and all(isinstance(d, int) and d > 0 for d in dims[-2:]) \
                and dims[-2] * dims[-1] == hidden and (len(dims) == 4 or dims[0] == hidden):
            heads.add(dims[-2])
    return heads.pop() if len(heads) == 1 else None
