"""The object graph of TF2 object-based checkpoints and SavedModel variables, without TensorFlow.

``tf.train.Checkpoint`` (and ``tf.saved_model.save``, for ``variables/variables``) names
every tensor after *one* path through the Python objects that were saved:
``model/encoder_network/layer_with_weights-0/embeddings/.ATTRIBUTES/VARIABLE_VALUE``. Which
path TensorFlow happened to pick depends on how the root was built (``model=``, ``encoder=``,
``**items``, a Keras model's ``layer_with_weights-K`` versus its ``_embedding_layer``
attribute...). Every path is recorded in the scalar string tensor
``_CHECKPOINTABLE_OBJECT_GRAPH``: a serialized ``tensorflow.TrackableObjectGraph``
(tensorflow/core/protobuf/trackable_object_graph.proto)::

    TrackableObjectGraph   1 nodes TrackableObject (repeated; node 0 is the root)
    TrackableObject        1 children ObjectReference (repeated)
                           2 attributes SerializedTensor (repeated)
                           3 slot_variables SlotVariableReference (repeated)
                           4 registered_saver RegisteredSaver {1 name, 2 object_name}
                           5 has_checkpoint_values google.protobuf.BoolValue {1 value}
    ObjectReference        1 node_id int32, 2 local_name string
    SerializedTensor       1 name, 2 full_name, 3 checkpoint_key (strings; 4 reserved)
    SlotVariableReference  1 original_variable_node_id int32, 2 slot_name string,
                           3 slot_variable_node_id int32

Usage::

    from bertconvert.checkpoint import load_checkpoint
    from bertconvert.checkpoint.object_graph import read_object_graph

    graph = read_object_graph(load_checkpoint("tf2_ckpt/"))     # None for TF1 checkpoints
    for key, paths in graph.variable_paths().items():
        if graph.is_optimizer_state(key):
            continue
        ...  # paths: every object path to the variable, shortest first

Paths are made of local names escaped as TensorFlow escapes them in checkpoint keys
(``.`` -> ``..``, ``/`` -> ``.S``) and joined with ``/``, so a key's own path is
``key[:key.index("/.ATTRIBUTES/")]``. The graph comes from the checkpoint file, so it is
treated as hostile: malformed protobuf, out-of-range node ids and graphs whose paths would
take too much time or memory to enumerate raise CheckpointFormatError (budgets:
:mod:`bertconvert.checkpoint.graph_paths`); cycles (legal in TensorFlow) are walked around.
"""
import logging
from dataclasses import dataclass
from typing import Optional, Tuple

from ..errors import CheckpointFormatError
from .dtypes import DT_STRING
from .graph_paths import WORK_PER_PATH, GraphLimits, ParseBudget, PathTable, too_large
from .proto import _BYTES, _VARINT, ProtoError, _expect, _signed, iter_fields

log = logging.getLogger(__name__)

#: The tensor holding the serialized TrackableObjectGraph.
OBJECT_GRAPH_KEY = "_CHECKPOINTABLE_OBJECT_GRAPH"
#: Separates an object's path from the attribute name in a checkpoint key.
ATTRIBUTES_MARKER = "/.ATTRIBUTES/"
#: Separates a variable's path from the optimizer's path in a slot variable's key.
SLOT_MARKER = "/.OPTIMIZER_SLOT/"
#: Local name TensorFlow-trained roots give their optimizer (Checkpoint(optimizer=...),
#: Keras ``model.optimizer``): everything reachable only through it is optimizer state.
OPTIMIZER_NAME = "optimizer"

#: Longest object path followed. Real models nest about ten deep; a deeper simple path means
#: a hostile graph (a long chain would make path enumeration quadratic).
MAX_DEPTH = GraphLimits.max_depth


@dataclass(frozen=True, slots=True)  # slots: a graph may hold millions of them
class ObjectReference:
    """An edge of the graph: ``node_id`` is reachable from its parent as ``local_name``."""
    node_id: int
    local_name: str


@dataclass(frozen=True, slots=True)
class SerializedTensor:
    """An attribute saved for a node: ``checkpoint_key`` names its tensor in the bundle."""
    name: str
    full_name: str
    checkpoint_key: str


@dataclass(frozen=True, slots=True)
class SlotVariableReference:
    """Listed on an optimizer's node: ``slot_variable_node_id`` holds the optimizer's
    ``slot_name`` slot (Adam's ``m``, ``v``...) for ``original_variable_node_id``."""
    original_variable_node_id: int
    slot_name: str
    slot_variable_node_id: int


@dataclass(frozen=True, slots=True)
class TrackableObject:
    """One node (a Python object that was saved)."""
    children: Tuple[ObjectReference, ...] = ()
    attributes: Tuple[SerializedTensor, ...] = ()
    slot_variables: Tuple[SlotVariableReference, ...] = ()
    registered_saver: Optional[str] = None
    has_checkpoint_values: Optional[bool] = None


@dataclass(frozen=True, slots=True)
class SlotVariable:
    """An optimizer slot variable: what it is a slot of, and for which optimizer."""
    checkpoint_key: str
    slot_node: int
    original_node: int
    slot_name: str
    optimizer_node: int


def escape_local_name(name):
    """A local name as it appears in checkpoint keys (TensorFlow's escaping)."""
    return name.replace(".", "..").replace("/", ".S")


def object_path_of_key(key):
    """``model/dense/kernel`` for ``model/dense/kernel/.ATTRIBUTES/VARIABLE_VALUE``, or None."""
    cut = key.find(ATTRIBUTES_MARKER)
    return key[:cut] if cut >= 0 else None


def is_optimizer_slot_key(key):
    """True for a TF2 slot variable's checkpoint key (``.../.OPTIMIZER_SLOT/...``).

    Judged from the name alone; :meth:`ObjectGraph.is_optimizer_state` also knows slots
    and optimizer variables that the graph reveals.
    """
    return SLOT_MARKER in key


# --- protobuf decoding ------------------------------------------------------------------
def _text(buf, span):
    return bytes(buf[span[0]:span[1]]).decode("utf-8", "surrogateescape")


def _int32(number, wire, value, message):
    _expect(number, wire, _VARINT, message)
    return _signed(value, 32)


def _decode_reference(buf, span):
    node_id, name = 0, ""
    for number, wire, value in iter_fields(buf, *span):
        if number == 1:
            node_id = _int32(number, wire, value, "ObjectReference")
        elif number == 2:
            _expect(number, wire, _BYTES, "ObjectReference")
            name = _text(buf, value)
    return ObjectReference(node_id, name)


def _decode_tensor(buf, span):
    fields = {1: "", 2: "", 3: ""}
    for number, wire, value in iter_fields(buf, *span):
        if number in fields:
            _expect(number, wire, _BYTES, "SerializedTensor")
            fields[number] = _text(buf, value)
    return SerializedTensor(fields[1], fields[2], fields[3])


def _decode_slot(buf, span):
    original = slot = 0
    name = ""
    for number, wire, value in iter_fields(buf, *span):
        if number == 1:
            original = _int32(number, wire, value, "SlotVariableReference")
        elif number == 2:
            _expect(number, wire, _BYTES, "SlotVariableReference")
            name = _text(buf, value)
        elif number == 3:
            slot = _int32(number, wire, value, "SlotVariableReference")
    return SlotVariableReference(original, name, slot)


def _decode_node(buf, span, budget):
    children, attributes, slots = [], [], []
    saver = has_values = None
    for number, wire, value in iter_fields(buf, *span):
        if number in (1, 2, 3, 4, 5):
            _expect(number, wire, _BYTES, "TrackableObject")
        if number in (1, 2, 3):
            budget.reference()
        if number == 1:
            children.append(_decode_reference(buf, value))
        elif number == 2:
            attributes.append(_decode_tensor(buf, value))
        elif number == 3:
            slots.append(_decode_slot(buf, value))
        elif number == 4:
            saver = ""
            for snum, swire, sval in iter_fields(buf, *value):
                if snum == 1:
                    _expect(snum, swire, _BYTES, "RegisteredSaver")
                    saver = _text(buf, sval)
        elif number == 5:
            has_values = False
            for bnum, bwire, bval in iter_fields(buf, *value):
                if bnum == 1:
                    _expect(bnum, bwire, _VARINT, "BoolValue")
                    has_values = bool(bval)
    return TrackableObject(tuple(children), tuple(attributes), tuple(slots), saver, has_values)


def parse_object_graph(data, limits=None):
    """Decode the bytes of a serialized TrackableObjectGraph into an :class:`ObjectGraph`.

    Pure: any input gives an ObjectGraph or raises CheckpointFormatError (its subclass
    ObjectGraphTooLargeError beyond ``limits``, a :class:`GraphLimits`; default: the
    environment's, see :meth:`GraphLimits.from_env`).
    """
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise CheckpointFormatError(f"the object graph must be bytes, got {type(data).__name__}")
    limits = GraphLimits.from_env() if limits is None else limits
    if len(data) > limits.max_bytes:
        raise too_large(f"is {len(data)} bytes, more than {limits.max_bytes}", "max_bytes")
    buf = bytes(data)
    budget = ParseBudget(limits)
    try:
        nodes = []
        for number, wire, value in iter_fields(buf):
            if number == 1:
                _expect(number, wire, _BYTES, "TrackableObjectGraph")
                budget.node()  # before decoding: the count bounds the memory
                nodes.append(_decode_node(buf, value, budget))
    except ProtoError as e:
        raise CheckpointFormatError(f"the checkpoint's object graph ({OBJECT_GRAPH_KEY}) is "
                                    f"not a valid TrackableObjectGraph protobuf: {e}") from e
    return ObjectGraph(nodes, limits=limits)


def read_object_graph(reader, limits=None):
    """The :class:`ObjectGraph` of an open checkpoint (a :class:`CheckpointReader`), or None
    when it has no ``_CHECKPOINTABLE_OBJECT_GRAPH`` (TF1 ``Saver`` checkpoints). A graph
    beyond ``limits`` (default: :meth:`GraphLimits.from_env`) is ObjectGraphTooLargeError;
    its size is checked before it is read.

    Example::

        graph = read_object_graph(load_checkpoint("saved_model_dir"))  # variables/variables
    """
    if not reader.has_tensor(OBJECT_GRAPH_KEY):
        return None
    entry = reader.entry(OBJECT_GRAPH_KEY)
    if entry.tf_dtype != DT_STRING or entry.shape != ():
        raise CheckpointFormatError(
            f"checkpoint {reader.prefix}: {OBJECT_GRAPH_KEY} is a {entry.dtype_name} "
            f"{list(entry.shape)} tensor; TensorFlow stores it as a scalar string")
    limits = GraphLimits.from_env() if limits is None else limits
    size = getattr(entry, "size", 0)
    try:
        if size > limits.max_bytes + 16:  # + the string tensor's length varint and checksum
            raise too_large(f"takes {size} bytes, more than {limits.max_bytes}", "max_bytes")
        return parse_object_graph(reader.get_tensor(OBJECT_GRAPH_KEY), limits)
    except CheckpointFormatError as e:
        raise type(e)(f"checkpoint {reader.prefix}: {e}") from e  # the subclass too


# --- the graph ------------------------------------------------------------------------
class ObjectGraph:
    """A decoded TrackableObjectGraph (``nodes[0]`` is the root) and the paths through it.

    Construction validates node ids and checkpoint keys; paths are enumerated on first use,
    within ``limits`` (a :class:`GraphLimits`; default :meth:`GraphLimits.from_env`) and
    ``max_work`` edges examined (default :data:`WORK_PER_PATH` per allowed path), else
    ObjectGraphTooLargeError, a CheckpointFormatError.
    """

    def __init__(self, nodes, max_work=None, limits=None):
        self.nodes = tuple(nodes)
        self.limits = GraphLimits.from_env() if limits is None else limits
        self.max_work = WORK_PER_PATH * self.limits.max_paths if max_work is None else max_work
        count = len(self.nodes)
        if not count:
            raise CheckpointFormatError(f"the checkpoint's object graph ({OBJECT_GRAPH_KEY}) "
                                        "has no nodes; TensorFlow always writes a root node")

        def check(node_id, what):
            if not 0 <= node_id < count:
                raise CheckpointFormatError(
                    f"the checkpoint's object graph is corrupt: {what} refers to node "
                    f"{node_id}, but the graph has only nodes 0..{count - 1}")

        self._key_node = {}
        self._slots = {}
        optimizers = set()
        for i, node in enumerate(self.nodes):
            for ref in node.children:
                check(ref.node_id, f"node {i}'s child {ref.local_name!r}")
                if ref.local_name == OPTIMIZER_NAME:
                    optimizers.add(ref.node_id)
            for attr in node.attributes:
                other = self._key_node.setdefault(attr.checkpoint_key, i)
                if other != i:
                    raise CheckpointFormatError(
                        f"the checkpoint's object graph is corrupt: checkpoint key "
                        f"{attr.checkpoint_key!r} belongs to both node {other} and node {i}")
            for slot in node.slot_variables:
                check(slot.original_variable_node_id, f"node {i}'s slot {slot.slot_name!r}")
                check(slot.slot_variable_node_id, f"node {i}'s slot {slot.slot_name!r}")
                optimizers.add(i)
        for i, node in enumerate(self.nodes):
            for slot in node.slot_variables:
                for attr in self.nodes[slot.slot_variable_node_id].attributes:
                    self._slots[attr.checkpoint_key] = SlotVariable(
                        attr.checkpoint_key, slot.slot_variable_node_id,
                        slot.original_variable_node_id, slot.slot_name, i)
        self.optimizer_nodes = frozenset(optimizers)
        self._table = None  # graph_paths.PathTable: every path, as records
        self._variable_paths = None
        # path strings and their characters built so far (budgets: limits.max_paths, and
        # limits.max_path_text); counted before they are built
        self._built = self._text = 0

    def __len__(self):
        return len(self.nodes)

    def __repr__(self):
        return f"<ObjectGraph: {len(self.nodes)} nodes, {len(self._key_node)} checkpoint keys>"

    def checkpoint_keys(self):
        """Every checkpoint key an attribute of the graph names, sorted."""
        return sorted(self._key_node)

    def node_of(self, key):
        """The node id whose attribute is stored under checkpoint ``key`` (KeyError if none)."""
        return self._key_node[key]

    def _enumerate(self):
        """The :class:`PathTable` of every simple path from the root (built once)."""
        if self._table is None:
            children = [tuple(ref.node_id for ref in node.children) for node in self.nodes]
            names = [tuple(escape_local_name(ref.local_name) for ref in node.children)
                     for node in self.nodes]
            self._table = PathTable(children, names, self.optimizer_nodes, self.limits,
                                    self.max_work)
        return self._table

    def _spend(self, paths, chars):
        """Count ``paths`` path strings of ``chars`` characters about to be built."""
        self._built += paths
        if self._built > self.limits.max_paths:
            raise too_large(f"names its variables by more than {self.limits.max_paths} paths",
                            "max_paths")
        self._text += chars
        if self._text > self.limits.max_path_text:
            raise too_large(f"names objects by more than {self.limits.max_path_text} "
                            "characters of path text", "max_path_text")

    def node_paths(self, node_id):
        """Every object path from the root to ``node_id``: shortest first, then sorted."""
        table = self._enumerate()
        self._spend(len(table.of_node[node_id]), table.text_of(node_id))
        return _ordered((table.text(r), table.depth[r]) for r in table.of_node[node_id])

    def variable_paths(self):
        """``{checkpoint_key: [object path, ...]}`` for every attribute in the graph.

        Each list holds every simple path of escaped local names from the root to the
        attribute's node, ``'/'``-joined, fewest components first, then sorted. Optimizer
        slot variables are not children of anything; they get the paths TensorFlow names
        slots by, ``<variable path>/.OPTIMIZER_SLOT/<optimizer path>/<slot name>``, one
        per combination (see :meth:`slot_variables`). A key whose node is unreachable
        gets an empty list. The text is counted against ``limits.max_path_text`` (and slot
        paths against ``limits.max_paths``) before it is built.
        """
        if self._variable_paths is None:
            table = self._enumerate()
            items = sorted(self._key_node.items())
            # Everything is counted first: a graph over budget costs no strings at all.
            for key, node_id in items:
                self._spend(len(table.of_node[node_id]), table.text_of(node_id))
                slot = self._slots.get(key)
                if slot is not None:
                    self._spend(*self._slot_cost(slot, table))
            result = {}
            for key, node_id in items:
                paths = [(table.text(r), table.depth[r]) for r in table.of_node[node_id]]
                slot = self._slots.get(key)
                if slot is not None:
                    paths += self._slot_paths(slot, table)
                result[key] = _ordered(paths)
            self._variable_paths = result
        return {key: list(paths) for key, paths in self._variable_paths.items()}

    def _slot_cost(self, slot, table):
        """``(paths, characters)`` of the slot paths of ``slot``."""
        variables = table.of_node[slot.original_node]
        optimizers = table.of_node[slot.optimizer_node]
        count = len(variables) * len(optimizers)
        if count > self.limits.max_paths:
            raise too_large(f"has {count} paths to an optimizer slot variable, more than "
                            f"{self.limits.max_paths}", "max_paths")
        extra = len(SLOT_MARKER) + len(escape_local_name(slot.slot_name))
        return count, (table.text_of(slot.original_node) * len(optimizers)
                       + table.text_of(slot.optimizer_node) * len(variables) + extra * count)

    def _slot_paths(self, slot, table):
        name = escape_local_name(slot.slot_name)
        marker = SLOT_MARKER.strip("/")
        out = []
        for v in table.of_node[slot.original_node]:
            head = [table.text(v)] if table.depth[v] else []  # the root's path is empty
            for o in table.of_node[slot.optimizer_node]:
                tail = [table.text(o)] if table.depth[o] else []
                out.append(("/".join(head + [marker] + tail + [name]),
                            table.depth[v] + table.depth[o] + 2))
        return out

    def paths(self, key):
        """The object paths of one checkpoint key (see :meth:`variable_paths`)."""
        if key not in self._key_node:
            raise KeyError(key)
        return self.variable_paths()[key]

    def slot_variables(self):
        """``{checkpoint_key: SlotVariable}`` for every optimizer slot variable in the graph."""
        return dict(self._slots)

    def is_slot(self, key):
        """True when ``key`` is an optimizer slot variable (by the graph, or by its name)."""
        return key in self._slots or is_optimizer_slot_key(key)

    def is_optimizer_state(self, key):
        """True for optimizer state: slot variables, and variables reachable only through an
        optimizer (a node with slot variables, or one reached as ``optimizer``), like
        ``optimizer/iter`` or Keras 3's ``optimizer/_variables/N``.

        Model variables an optimizer also tracks (Keras 3's ``_trainable_variables``) are
        reachable from the model too, so they are not optimizer state. Keys not in the
        graph are judged by name only.
        """
        if self.is_slot(key):
            return True
        node_id = self._key_node.get(key)
        if node_id is None:
            return False
        table = self._enumerate()
        found = table.of_node[node_id]
        return bool(found) and all(table.via[r] for r in found)


def _ordered(paths):
    """``(text, components)`` pairs -> distinct texts, fewest components first, then sorted."""
    joined = dict(paths)
    return sorted(joined, key=lambda path: (joined[path], path))
