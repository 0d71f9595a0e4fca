"""Hostile TF2 object graphs cost a bounded amount: each budget of
:class:`bertconvert.checkpoint.graph_paths.GraphLimits` is a named error (exit status 2 from
``convert`` and ``inspect``), raised before the memory is spent.

Graphs are built with the protobuf helpers of test_object_graph (our own encoder); the
end-to-end cases run the CLI in a subprocess under an address-space limit, so a path
enumeration that materialised what the graph describes would die of MemoryError there.
"""
import os
import resource
import subprocess
import sys

import numpy as np
import pytest

from bertconvert.checkpoint import load_checkpoint, parse_object_graph, read_object_graph
from bertconvert.checkpoint.crc import masked_crc32c
from bertconvert.checkpoint.graph_paths import ENV, GraphLimits
from bertconvert.checkpoint.object_graph import OBJECT_GRAPH_KEY
from bertconvert.errors import (CheckpointFormatError, GraphLimitSettingError,
                                ObjectGraphTooLargeError)
from .test_object_graph import _graph, _node, _string_tensor, _write_bundle

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
VARIABLE = "v/.ATTRIBUTES/VARIABLE_VALUE"
#: Address space for the CLI subprocesses: about 150 MB is the interpreter with numpy; the
#: hostile graphs below describe gigabytes (the probe saw 1.9 GB, and MemoryError at 8 GB).
ADDRESS_SPACE = 1 << 30


def diamonds(count, name_length, keys=(VARIABLE,)):
    """``count`` diamonds in a row, every edge named by ``name_length`` characters: 2**count
    paths to the last node, which holds ``keys``."""
    nodes = []
    for i in range(count):
        left, right, down = ("l" * name_length, "r" * name_length, "x" * name_length)
        nodes.append(_node([(2 * i + 1, left), (2 * i + 2, right)]))
        nodes.append(_node([(2 * i + 2, down)]))
    nodes.append(_node(keys=list(keys)))
    return _graph(*nodes)


def checkpoint_with_graph(tmp_path, graph_bytes):
    """A TF2-style checkpoint: the given object graph and one float variable."""
    (tmp_path / "ckpt").mkdir(exist_ok=True)
    value = np.zeros(2, np.float32).tobytes()
    return _write_bundle(str(tmp_path / "ckpt" / "model"), {
        OBJECT_GRAPH_KEY: _string_tensor([graph_bytes], shape=()),
        VARIABLE: (1, (2,), value, masked_crc32c(value))})


# --- each budget, in the library ----------------------------------------------------------
def test_exponential_text_is_refused_before_any_string_is_built():
    # The probe's 224 KiB graph: 2**14 paths of 4 KiB names, 1.4 GB of path text.
    graph = parse_object_graph(diamonds(14, 4096))
    with pytest.raises(ObjectGraphTooLargeError, match="characters of path text") as e:
        graph.variable_paths()
    assert ENV["max_path_text"] in str(e.value)
    assert graph._text > GraphLimits().max_path_text  # counted, never built
    # Within a larger budget the same graph resolves: the limit, not the shape, refused it.
    small = parse_object_graph(diamonds(4, 64), GraphLimits(max_path_text=1 << 20))
    assert len(small.variable_paths()[VARIABLE]) == 2 ** 4


def test_exponentially_many_paths_stop_at_the_path_budget():
    graph = parse_object_graph(diamonds(30, 1), GraphLimits(max_paths=10_000))
    with pytest.raises(ObjectGraphTooLargeError, match="more than 10000 over 61 nodes"):
        graph.variable_paths()
    # (the default budget: test_cli_refuses_hostile_graphs_in_bounded_memory)


def test_path_strings_of_every_key_count_against_the_path_budget():
    # 2**6 paths to one node holding many keys: each key gets its own list of 64 strings
    limits = GraphLimits(max_paths=1000)
    ten = parse_object_graph(diamonds(6, 1, [f"k{i}" for i in range(10)]), limits)
    assert len(ten.variable_paths()) == 10                              # 640 strings
    twenty = parse_object_graph(diamonds(6, 1, [f"k{i}" for i in range(20)]), limits)
    with pytest.raises(ObjectGraphTooLargeError, match="by more than 1000 paths"):
        twenty.variable_paths()                                         # 1280


def test_node_and_reference_counts_are_bounded_while_parsing():
    empty = _graph(*[b""] * 1001)  # 2 bytes per empty node
    with pytest.raises(ObjectGraphTooLargeError, match="more than 1000 nodes"):
        parse_object_graph(empty, GraphLimits(max_nodes=1000))
    assert len(parse_object_graph(empty, GraphLimits(max_nodes=1001))) == 1001
    # 300,000 empty nodes (600 KB; the probe's 24 MB took 2.5 GB) against the default
    with pytest.raises(ObjectGraphTooLargeError, match="more than 100000 nodes"):
        parse_object_graph(_graph(*[b""] * 300_000))
    wide = _graph(_node([(0, "self")] * 41))
    with pytest.raises(ObjectGraphTooLargeError, match="more than 40 references"):
        parse_object_graph(wide, GraphLimits(max_nodes=10))


def test_graph_size_is_checked_before_it_is_read(tmp_path):
    prefix = checkpoint_with_graph(tmp_path, diamonds(1, 4096))
    with pytest.raises(ObjectGraphTooLargeError, match=r"takes \d+ bytes, more than 1000"):
        read_object_graph(load_checkpoint(prefix), GraphLimits(max_bytes=1000))
    assert read_object_graph(load_checkpoint(prefix)).variable_paths()[VARIABLE]


def test_limits_come_from_the_environment(monkeypatch):
    monkeypatch.setenv(ENV["max_paths"], "8")
    with pytest.raises(ObjectGraphTooLargeError, match="more than 8 over"):
        parse_object_graph(diamonds(3, 1)).variable_paths()
    monkeypatch.setenv(ENV["max_path_text"], "4G")
    monkeypatch.setenv(ENV["max_paths"], "1k")
    limits = GraphLimits.from_env()
    assert (limits.max_path_text, limits.max_paths) == (4 << 30, 1024)
    assert len(parse_object_graph(diamonds(3, 1)).variable_paths()[VARIABLE]) == 8
    for bad in ("0", "-5", "1.5", "lots", "nan"):
        monkeypatch.setenv(ENV["max_nodes"], bad)
        with pytest.raises(GraphLimitSettingError, match=ENV["max_nodes"]):
            parse_object_graph(diamonds(1, 1))


def test_slot_paths_are_counted_before_they_are_built():
    # An optimizer slot's paths are every variable path times every optimizer path: 2**6
    # paths to the variable, 2**6 to the optimizer.
    nodes = []
    for i in range(6):  # variable side: nodes 1..13, the variable is node 13
        a = 2 * i + 1
        nodes.append((a, [(a + 1, "l"), (a + 2, "r")]))
        nodes.append((a + 1, [(a + 2, "x")]))
    for i in range(6):  # optimizer side: nodes 14..26, the optimizer is node 26
        a = 2 * i + 14
        nodes.append((a, [(a + 1, "l"), (a + 2, "r")]))
        nodes.append((a + 1, [(a + 2, "x")]))
    children = dict(nodes)
    encoded = [_node([(1, "model"), (14, "opt")])]
    for n in range(1, 28):
        if n == 13:
            encoded.append(_node(keys=["var"]))
        elif n == 26:
            encoded.append(_node(slots=[(13, "m", 27)]))
        elif n == 27:
            encoded.append(_node(keys=["slot"]))
        else:
            encoded.append(_node(children.get(n, [])))
    data = _graph(*encoded)
    paths = parse_object_graph(data).variable_paths()
    assert len(paths["slot"]) == 2 ** 12
    with pytest.raises(ObjectGraphTooLargeError,
                       match="4096 paths to an optimizer slot variable, more than 1000"):
        parse_object_graph(data, GraphLimits(max_paths=1000)).variable_paths()


def test_budget_errors_are_format_errors():
    assert issubclass(ObjectGraphTooLargeError, CheckpointFormatError)


# --- end to end, under an address-space limit -----------------------------------------
def _limited():
    resource.setrlimit(resource.RLIMIT_AS, (ADDRESS_SPACE, ADDRESS_SPACE))


def run_cli(*args):
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    return subprocess.run([sys.executable, "-m", "bertconvert", *args], capture_output=True,
                          text=True, env=env, preexec_fn=_limited, timeout=600)


@pytest.mark.parametrize("command", ["convert", "inspect"])
@pytest.mark.parametrize("case, fragment", [
    ("diamonds_4k_names", "characters of path text"),    # the probe's 224 KiB, 1.9 GB graph
    ("diamonds_22", "too many paths"),                    # 2**22 paths to one variable
    ("big_name", "takes"),                                # one 20 MB edge name
    ("empty_nodes", "more than 100000 nodes"),            # 2.4 MB of empty nodes
])
def test_cli_refuses_hostile_graphs_in_bounded_memory(tmp_path, command, case, fragment):
    graph = {"diamonds_4k_names": lambda: diamonds(14, 4096),
             "diamonds_22": lambda: diamonds(22, 256),
             "big_name": lambda: _graph(_node([(1, "n" * (20 << 20))]), _node(keys=[VARIABLE])),
             "empty_nodes": lambda: _graph(*[b""] * 1_200_000)}[case]()
    prefix = checkpoint_with_graph(tmp_path, graph)
    args = [command, prefix] + (["--out", str(tmp_path / "out")] if command == "convert" else [])
    done = run_cli(*args, "--quiet")
    assert done.returncode == 2, done.stderr[-2000:]
    assert "Traceback" not in done.stderr and "MemoryError" not in done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and fragment in lines[0], done.stderr[-2000:]
    assert "BERTCONVERT_GRAPH_MAX_" in lines[0] and prefix in lines[0]
    assert not (tmp_path / "out").exists()
