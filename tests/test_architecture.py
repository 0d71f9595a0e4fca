"""The package's shape, checked from its source: no import cycles, a short top level, modules of
readable size, and each head name and model-directory file name spelled in one module
(bertconvert/layout.py)."""
import ast
import os

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PACKAGE = os.path.join(ROOT, "bertconvert")
MAX_TOP_LEVEL_MODULES = 12
#: Import paths of pytorch-pretrained-bert 0.6.2 (and Google's ``tokenization``) that ported code
#: imports from: they must exist at the top level, so they are not counted against the dozen,
#: but they hold no code of their own -- only re-exports from the pillars.
COMPAT_SHIMS = {"modeling.py", "tokenization.py", "file_utils.py", "optimization.py"}
MAX_LINES = 450
#: Modules still over the budget, with their length when the package was restructured: they
#: are due to be split by job, and may only shrink until then.
OVER_BUDGET = {}
#: The only imports against the direction models -> convert: (importing module, the function
#: it imports in, imported module). from_pretrained(from_tf=True) converts in memory through
#: a model-free function (see bertconvert/convert/stream.py).
UPWARD_IMPORTS = {("bertconvert.models.loading", "_from_tf", "bertconvert.convert.stream")}


def _modules():
    """{dotted name: path} of every module in bertconvert (packages by their __init__.py)."""
    found = {}
    for directory, _, files in os.walk(PACKAGE):
        for name in files:
            if name.endswith(".py"):
                path = os.path.join(directory, name)
                rel = os.path.relpath(path, ROOT)[:-3].replace(os.sep, ".")
                found[rel.removesuffix(".__init__")] = path
    return found


MODULES = _modules()


def _import_graph():
    """{module: set of bertconvert modules it imports}, counting imports anywhere in the file
    (module level and inside functions), relative and absolute."""
    graph = {}
    for module, path in MODULES.items():
        package = module if path.endswith("__init__.py") else module.rsplit(".", 1)[0]
        with open(path, encoding="utf-8") as f:
            tree = ast.parse(f.read(), path)
        targets = set()
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    parts = package.split(".")[: len(package.split(".")) - node.level + 1]
                    base = ".".join(parts + ([base] if base else []))
                # "from pkg import sub" imports the submodule when there is one
                names = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in MODULES else base
                         for alias in node.names]
            else:
                continue
            targets.update(n for n in names if n in MODULES and n != module)
        graph[module] = targets
    return graph


def _cycles(graph):
    """Strongly connected components with more than one module (Tarjan), each sorted."""
    index, low, stack, on_stack, out = {}, {}, [], set(), []
    counter = [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                out.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def test_the_graph_builder_sees_relative_absolute_and_function_level_imports():
    graph = _import_graph()
    assert "bertconvert.errors" in graph["bertconvert.checkpoint.paths"]  # module level, relative
    assert "bertconvert.convert.run" in graph["bertconvert.commands.convert"]  # inside a function
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def _imports_with_their_function(path, package):
    """(function name or None, imported module) for every import in the file."""
    with open(path, encoding="utf-8") as f:
        tree = ast.parse(f.read(), path)
    found = []

    def visit(node, function):
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)):
                visit(child, child.name)
                continue
            if isinstance(child, ast.ImportFrom):
                base = child.module or ""
                if child.level:
                    parts = package.split(".")[: len(package.split(".")) - child.level + 1]
                    base = ".".join(parts + ([base] if base else []))
                found.extend((function, f"{base}.{a.name}" if f"{base}.{a.name}" in MODULES
                              else base) for a in child.names)
            elif isinstance(child, ast.Import):
                found.extend((function, a.name) for a in child.names)
            visit(child, function)

    visit(tree, None)
    return found


def test_models_import_nothing_above_them_but_the_one_from_tf_import():
    above = ("bertconvert.convert", "bertconvert.verify", "bertconvert.commands", "bertconvert.cli")
    upward = set()
    for module, path in MODULES.items():
        if module.startswith("bertconvert.models"):
            package = module if path.endswith("__init__.py") else module.rsplit(".", 1)[0]
            upward |= {(module, function, target)
                       for function, target in _imports_with_their_function(path, package)
                       if target.startswith(above)}
    assert upward == UPWARD_IMPORTS


def test_no_import_cycles():
    graph = _import_graph()
    cycles = _cycles(graph)
    lines = []
    for component in cycles:
        members = set(component)
        lines.append(" <-> ".join(component))
        for m in component:
            lines.append(f"    {m} imports {', '.join(sorted(graph[m] & members))}")
    assert not cycles, "import cycles in bertconvert:\n" + "\n".join(lines)


def test_at_most_a_dozen_modules_sit_directly_in_the_package():
    top = sorted(n for n in os.listdir(PACKAGE) if n.endswith(".py") and n not in COMPAT_SHIMS)
    assert len(top) <= MAX_TOP_LEVEL_MODULES, f"{len(top)} modules in bertconvert/: {top}"


@pytest.mark.parametrize("shim", sorted(COMPAT_SHIMS))
def test_compatibility_shims_only_re_export(shim):
    path = os.path.join(PACKAGE, shim)
    assert os.path.exists(path), f"bertconvert/{shim}: 0.6.2's import path is gone"
    tree = ast.parse(open(path, encoding="utf-8").read())
    defined = [n.name for n in tree.body if isinstance(n, (ast.FunctionDef, ast.ClassDef,
                                                           ast.AsyncFunctionDef))]
    assert not defined, f"bertconvert/{shim} defines {defined}: define them in a pillar, re-export here"


def test_no_module_is_over_the_line_budget():
    long = {}
    for module, path in MODULES.items():
        with open(path, encoding="utf-8") as f:
            count = sum(1 for _ in f)
        if count > max(MAX_LINES, OVER_BUDGET.get(module, 0)):
            long[module] = count
    assert not long, f"modules over {MAX_LINES} lines (split them by job): {long}"


def _code_strings(path):
    """String constants of a module's code, docstrings left out (examples there may name heads)."""
    with open(path, encoding="utf-8") as f:
        tree = ast.parse(f.read(), path)
    docstrings = set()  # and __slots__ entries, which are attribute names
    for node in ast.walk(tree):
        if isinstance(node, ast.Assign) and any(getattr(t, "id", None) == "__slots__"
                                                for t in node.targets):
            docstrings.update(id(n) for n in ast.walk(node.value))
        body = getattr(node, "body", None)
        if isinstance(body, list) and body and isinstance(body[0], ast.Expr) \
                and isinstance(body[0].value, ast.Constant):
            docstrings.add(id(body[0].value))
    return {n.value for n in ast.walk(tree)
            if isinstance(n, ast.Constant) and isinstance(n.value, str) and id(n) not in docstrings}


def test_each_head_name_is_spelled_in_layout_only():
    from bertconvert import layout

    spelled = {}
    for module, path in MODULES.items():
        for name in set(layout.HEAD_NAMES) & _code_strings(path):
            spelled.setdefault(name, []).append(module)
    assert spelled == {name: ["bertconvert.layout"] for name in layout.HEAD_NAMES}


def test_each_file_name_is_spelled_in_layout_only():
    from bertconvert import layout

    names = set(layout.FILE_NAMES) | {layout.INDEX_SUFFIX}
    assert {layout.CONFIG_NAME, layout.VOCAB_NAME} <= _code_strings(MODULES["bertconvert.layout"])
    spelled = {}
    for module, path in MODULES.items():
        for name in names & _code_strings(path):
            spelled.setdefault(name, []).append(module)
    elsewhere = {name: [m for m in modules if m != "bertconvert.layout"]
                 for name, modules in spelled.items()}
    assert elsewhere == {name: [] for name in spelled}, "use the constants of bertconvert.layout"


@pytest.mark.parametrize("module", sorted(m for m, p in MODULES.items()
                                          if p.endswith("__init__.py")))
def test_every_subpackage_says_what_it_owns(module):
    with open(MODULES[module], encoding="utf-8") as f:
        assert ast.get_docstring(ast.parse(f.read())), f"{module} has no docstring"


def test_layout_needs_only_the_standard_library():
    with open(MODULES["bertconvert.layout"], encoding="utf-8") as f:
        tree = ast.parse(f.read())
    imported = {alias.name.split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.Import)
                for alias in node.names}
    imported |= {node.module.split(".")[0] for node in ast.walk(tree)
                 if isinstance(node, ast.ImportFrom) and node.module and not node.level}
    assert imported <= {"collections", "typing"}


def test_public_import_paths_keep_working():
    import bertconvert
    from bertconvert import cache, checkpoint, convert, modeling, tokenization, verify
    from bertconvert.verify import assert_parity, verify as verify_function

    assert callable(bertconvert.verify) and verify_function is verify.verify and assert_parity
    assert modeling.BertModel is bertconvert.BertModel
    assert tokenization.BertTokenizer is bertconvert.BertTokenizer
    assert tokenization.load_vocab and tokenization.BasicTokenizer and tokenization.WordpieceTokenizer
    assert cache.cached_path is bertconvert.cached_path
    assert cache.url_to_filename and cache.filename_to_url
    assert convert.convert_checkpoint is bertconvert.convert_checkpoint
    assert convert.load_converted_model and convert.convert_to_pytorch_file and convert.ConversionReport
    assert checkpoint.load_checkpoint and checkpoint.save_checkpoint
    assert list(bertconvert.HEADS) == list(bertconvert.layout.HEAD_NAMES)


def test_package_imports_stay_lazy():
    """Importing a package re-exports its names without importing the modules behind them
    (bertconvert.lazy): no numpy, no torch, not even the cache store, until a name is used."""
    import subprocess
    import sys

    code = ("import sys, bertconvert, bertconvert.cache, bertconvert.convert; "
            "assert 'cached_path' in dir(bertconvert.cache); "
            "print([m for m in ('numpy', 'torch', 'bertconvert.cache.store', 'bertconvert.convert.run') "
            "if m in sys.modules])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         cwd=ROOT)
    assert out.stdout.strip() == "[]"


def test_the_default_label_count_is_decided_in_layout():
    from bertconvert import layout

    assert layout.label_count(None, None) == layout.DEFAULT_NUM_LABELS == 2
    assert layout.label_count(None, 5, 3) == 5 and layout.label_count(7, 5) == 7
    for module, path in MODULES.items():  # no "x or config.num_labels or 2" copies
        with open(path, encoding="utf-8") as f:
            text = f.read()
        assert "num_labels or 2" not in text and "rows or 2" not in text, module
