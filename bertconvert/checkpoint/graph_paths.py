"""Object paths through a TF2 object graph, enumerated within budgets.

The object graph comes from the checkpoint file, so it is hostile until proven otherwise. A
few hundred kilobytes can describe a DAG with exponentially many root-to-leaf paths (a
chain of diamonds), a path thousands of components long, or names of megabytes that every
path repeats. Enumerating "every path" naively then costs gigabytes and minutes; here each
cost has a budget (:class:`GraphLimits`), and exceeding one is
:class:`~bertconvert.errors.ObjectGraphTooLargeError` (exit status 2), raised *before* the
memory is spent:

* the serialized graph's size, checked from the index before the tensor is read;
* nodes and references (children, attributes, slot variables), counted while parsing;
* paths: enumeration keeps one small parent-linked record per path (never a tuple of its
  components), and counts paths and edges examined;
* path text: the characters of the ``/``-joined paths are summed from the records before
  any string is built.

The defaults leave a wide margin over the Model Garden checkpoints and TF Hub SavedModels
of fixtures/model_garden (the largest, a 2-layer Hub encoder with its MLM sub-model: 714
nodes, 1,610 references, 132,000 paths, 3.6 MB of path text; paths grow about linearly
with the layers, so a 24-layer one should need about twelve times that) and bound memory to
a few hundred MB and time to seconds. Each
can be raised through the environment (``BERTCONVERT_GRAPH_MAX_BYTES`` ...; see
:data:`ENV`), or passed to :class:`~bertconvert.checkpoint.object_graph.ObjectGraph`.
"""
import os
import re
from array import array
from dataclasses import dataclass, fields

from ..errors import GraphLimitSettingError, ObjectGraphTooLargeError

#: Edges the enumeration may examine per path it is allowed to find (skipped cycle edges
#: and leaves cost time too); Hub SavedModels need about 1.
WORK_PER_PATH = 8
#: References (children, attributes, slot variables) allowed per allowed node.
REFERENCES_PER_NODE = 4


@dataclass(frozen=True)
class GraphLimits:
    """Budgets for reading one object graph (see the module docstring)."""

    #: bytes of the serialized ``_CHECKPOINTABLE_OBJECT_GRAPH`` tensor
    max_bytes: int = 16 << 20
    #: nodes (saved objects); references may number :data:`REFERENCES_PER_NODE` times this
    max_nodes: int = 100_000
    #: object paths enumerated (every node's), and path strings built (every variable's,
    #: optimizer slot paths included), each
    max_paths: int = 4_000_000
    #: characters of path text built (the ``/``-joined paths of every variable)
    max_path_text: int = 128 << 20
    #: components of one path (real models nest about ten deep)
    max_depth: int = 100

    @classmethod
    def from_env(cls, environ=None):
        """The defaults, overridden by ``BERTCONVERT_GRAPH_MAX_*`` variables (see :data:`ENV`):
        whole numbers above zero, optionally with a K, M or G suffix (powers of 1024)."""
        environ = os.environ if environ is None else environ
        values = {}
        for f in fields(cls):
            name = ENV.get(f.name)
            raw = environ.get(name) if name else None
            if raw is not None and raw.strip():
                values[f.name] = _parse_count(name, raw)
        return cls(**values)


#: Environment variable of each limit.
ENV = {"max_bytes": "BERTCONVERT_GRAPH_MAX_BYTES", "max_nodes": "BERTCONVERT_GRAPH_MAX_NODES",
       "max_paths": "BERTCONVERT_GRAPH_MAX_PATHS",
       "max_path_text": "BERTCONVERT_GRAPH_MAX_PATH_TEXT"}
_COUNT_RE = re.compile(r"\s*([0-9]+)\s*([kmgKMG]?)\s*")
_UNITS = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30}


def _parse_count(name, raw):
    m = _COUNT_RE.fullmatch(raw)
    value = int(m.group(1)) * _UNITS[m.group(2).lower()] if m else 0
    if value <= 0:
        raise GraphLimitSettingError(f"{name}={raw!r} is not a whole number above zero "
                                     "(a K, M or G suffix is allowed)")
    return value


def too_large(what, setting=None):
    """The error for a graph that ``what`` (``setting``: the exceeded limit's field name)."""
    hint = f"; if the checkpoint is trusted, raise {ENV[setting]}" if setting in ENV else ""
    return ObjectGraphTooLargeError(
        f"the checkpoint's object graph (_CHECKPOINTABLE_OBJECT_GRAPH) {what}: corrupt or "
        f"hostile{hint}")


class ParseBudget:
    """Counts nodes and references while a graph is parsed."""

    def __init__(self, limits):
        self.limits = limits
        self.nodes = self.references = 0

    def node(self):
        self.nodes += 1
        if self.nodes > self.limits.max_nodes:
            raise too_large(f"has more than {self.limits.max_nodes} nodes", "max_nodes")

    def reference(self):
        self.references += 1
        limit = REFERENCES_PER_NODE * self.limits.max_nodes
        if self.references > limit:
            raise too_large(f"has more than {limit} references (children, attributes, slots)",
                            "max_nodes")


def components(children):
    """The strongly connected component of every node (iterative Tarjan, O(nodes + edges)).

    A path to ``u`` can only contain ``t`` (making ``u -> t`` close a cycle) when ``t``
    reaches ``u`` and ``u`` reaches ``t``: when both lie in one component. Elsewhere the
    enumeration skips the walk up the path."""
    n = len(children)
    index, low, comp = [-1] * n, [0] * n, [-1] * n
    on_stack = bytearray(n)
    stack, counter, count = [], 0, 0
    for root in range(n):
        if index[root] >= 0:
            continue
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack[root] = 1
        work = [[root, 0]]
        while work:
            frame = work[-1]
            v, i = frame
            kids = children[v]
            if i < len(kids):
                frame[1] = i + 1
                w = kids[i]
                if index[w] < 0:
                    index[w] = low[w] = counter
                    counter += 1
                    stack.append(w)
                    on_stack[w] = 1
                    work.append([w, 0])
                elif on_stack[w] and index[w] < low[v]:
                    low[v] = index[w]
                continue
            work.pop()
            if work and low[v] < low[work[-1][0]]:
                low[work[-1][0]] = low[v]
            if low[v] == index[v]:
                while True:
                    w = stack.pop()
                    on_stack[w] = 0
                    comp[w] = count
                    if w == v:
                        break
                count += 1
    return comp


class PathTable:
    """Every simple path from the root to every node, breadth-first (shortest first).

    A path is a record: its node, its parent record, the edge taken, its depth and text
    length, and whether it passed an optimizer node. Memory is a few dozen bytes per path
    whatever its length; strings are built only by :meth:`text`.
    """

    def __init__(self, children, names, optimizer_nodes, limits, max_work):
        """``children[i]``/``names[i]``: node ``i``'s child ids and escaped edge names."""
        self.names = names
        self.node, self.parent, self.edge = array("i", [0]), array("i", [-1]), array("i", [0])
        self.depth, self.length, self.via = array("i", [0]), array("q", [0]), bytearray(1)
        self.of_node = [array("i") for _ in children]  # node -> its path records
        self.of_node[0].append(0)
        comp = components(children)
        node, parent, edge, depth, length, via = (self.node, self.parent, self.edge,
                                                  self.depth, self.length, self.via)
        work, r = 0, 0
        while r < len(node):
            u, d = node[r], depth[r]
            kids = children[u]
            work += len(kids)
            if work > max_work:
                raise too_large(f"has too many paths to enumerate (more than {max_work} edges "
                                f"examined over {len(children)} nodes)", "max_paths")
            for k, t in enumerate(kids):
                if comp[t] == comp[u]:  # t may lie on this path: walk up it
                    p, cyclic = r, False
                    while p >= 0:
                        work += 1
                        if node[p] == t:
                            cyclic = True
                            break
                        p = parent[p]
                    if cyclic:  # TensorFlow allows cycles: paths stay simple
                        continue
                if d >= limits.max_depth:
                    raise too_large(f"nests deeper than {limits.max_depth} levels")
                if len(node) >= limits.max_paths:
                    raise too_large(f"has too many paths to enumerate (more than "
                                    f"{limits.max_paths} over {len(children)} nodes)",
                                    "max_paths")
                self.of_node[t].append(len(node))
                node.append(t)
                parent.append(r)
                edge.append(k)
                depth.append(d + 1)
                length.append(length[r] + (1 if d else 0) + len(names[u][k]))
                via.append(via[r] or t in optimizer_nodes)
            r += 1

    def text(self, r):
        """The ``/``-joined escaped names of path record ``r``."""
        parts = []
        while r > 0:
            p = self.parent[r]
            parts.append(self.names[self.node[p]][self.edge[r]])
            r = p
        return "/".join(reversed(parts))

    def text_of(self, node_id):
        """Characters of path text of every path to ``node_id``."""
        return sum(self.length[r] for r in self.of_node[node_id])
