"""The layout follows the flow: no module of the runner imports, even lazily, one that imports it back."""

import ast

from conftest import ROOT

PACKAGE = ROOT / "runner"


def module_name(path):
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports_of(path, modules):
    """Every runner module this file imports, at the top or inside a function."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            # `from runner.backends import local` needs runner.backends.local, not the package's __init__
            submodules = [f"{node.module}.{alias.name}" for alias in node.names if f"{node.module}.{alias.name}" in modules]
            names = submodules if len(submodules) == len(node.names) else [node.module, *submodules]
        else:
            continue
        found |= {name for name in names if name in modules}
    return found


def test_no_import_cycles():
    files = {module_name(p): p for p in PACKAGE.rglob("*.py")}
    graph = {name: imports_of(path, files) - {name} for name, path in files.items()}
    cycles = []

    def visit(node, stack, seen):
        for target in sorted(graph[node]):
            if target in stack:
                cycles.append(stack[stack.index(target):] + [target])
            elif target not in seen:
                seen.add(target)
                visit(target, stack + [target], seen)

    for start in sorted(graph):
        visit(start, [start], {start})
    assert not cycles, "\n".join(" → ".join(cycle) for cycle in sorted({tuple(c) for c in cycles}))


COMMANDS = ("runs", "infer", "serve")   # runner.runs, runner.infer, runner.serve: the commands on top


def test_the_core_never_imports_the_commands():
    """The commands (`python -m runner.runs`, `runner.infer`, `runner.serve`) sit on top of the core: compose,
    plan, run folders, stages, backends and what they share (lookup, records, reportpage) never import them,
    even lazily."""
    def command(name):
        return name.split(".")[:2] in [["runner", c] for c in COMMANDS]

    files = {module_name(p): p for p in PACKAGE.rglob("*.py")}
    offenders = {name: sorted(target for target in imports_of(path, files) if command(target))
                 for name, path in files.items() if not command(name)}
    found = {name: targets for name, targets in offenders.items() if targets}
    assert not found, found


def backend_name_comparisons(path, names):
    """`x == "modal"`, `name != "local"`, `backend in ("local", "slurm")`: each line comparing with a backend's name."""
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if not isinstance(node, ast.Compare):
            continue
        operands = [node.left, *node.comparators]
        constants = [e for o in operands for e in (o.elts if isinstance(o, (ast.Tuple, ast.List, ast.Set)) else [o])]
        if any(isinstance(c, ast.Constant) and c.value in names for c in constants):
            found.append(node.lineno)
    return found


def test_only_the_registry_tells_backends_apart_by_name():
    """Issue 24, goal 1: what differs between backends is a property or method of the backend object
    (runner/backends/registry.py); no other module compares a backend's name."""
    from runner.backends.registry import BACKENDS

    names = set(BACKENDS)
    from runner.schema.backend import BACKENDS as CHOICES

    assert set(CHOICES) == names | {"auto"}   # backend=NAME accepts each registered one, and auto
    registry = PACKAGE / "backends" / "registry.py"
    found = {str(p.relative_to(ROOT)): lines for p in sorted(PACKAGE.rglob("*.py"))
             if p != registry and (lines := backend_name_comparisons(p, names))}
    assert not found, f"backend names compared outside runner/backends/registry.py: {found}"
    assert backend_name_comparisons(registry.parent / "__init__.py", names) == []


MUTABLE_CALLS = {"dict", "list", "set", "defaultdict", "OrderedDict", "Counter", "deque", "bytearray"}


def module_level_mutables(path):
    """Names bound at a module's top level (or a class body) to a list, dict or set, literal or built."""
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if not isinstance(node, (ast.Module, ast.ClassDef)):
            continue
        for statement in node.body:
            if isinstance(statement, ast.Assign):
                targets, value = statement.targets, statement.value
            elif isinstance(statement, ast.AnnAssign) and statement.value is not None:
                targets, value = [statement.target], statement.value
            else:
                continue
            literal = isinstance(value, (ast.List, ast.Dict, ast.Set, ast.ListComp, ast.DictComp, ast.SetComp))
            built = isinstance(value, ast.Call) and getattr(value.func, "id", getattr(value.func, "attr", None)) in MUTABLE_CALLS
            if literal or built:
                found += [ast.unparse(target) for target in targets]
    return found


def test_the_launcher_and_composing_keep_no_state_between_calls():
    """Issue 24, goal 3: what a run or sweep needs travels with Hydra's objects (its config, the task
    function, the callbacks in its HydraContext), not in module-level containers of launcher.py and
    compose.py; and nothing swaps sys.argv but the one line runner/app.py documents."""
    found = {name: module_level_mutables(PACKAGE / name) for name in ("launcher.py", "compose.py")}
    assert not any(found.values()), found
    # runner/stages/boot.py starts a stage process: it hands its own sys.argv to the stage's module, as `python -m`
    writes = {}
    for path in PACKAGE.rglob("*.py"):
        if path == PACKAGE / "stages" / "boot.py":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target] if isinstance(node, ast.AugAssign) else []
            for target in targets:
                for part in target.elts if isinstance(target, (ast.Tuple, ast.List)) else [target]:
                    if ast.unparse(part).startswith("sys.argv"):
                        writes.setdefault(str(path.relative_to(ROOT)), set()).add(ast.unparse(part))
    # Hydra names the program from sys.argv[0] in its shell-completion script: set there, and put back
    assert writes == {"runner/app.py": {"sys.argv[0]"}}, writes


def test_each_folder_says_what_it_is_for_and_no_module_is_over_300_lines():
    import ast

    for init in sorted((ROOT / "runner").rglob("__init__.py")):
        doc = ast.get_docstring(ast.parse(init.read_text()))
        assert doc and doc.strip(), f"{init.relative_to(ROOT)}: no docstring saying what the folder is for"
    long = {str(p.relative_to(ROOT)): n for p in (ROOT / "runner").rglob("*.py")
            if (n := len(p.read_text().splitlines())) > 300}
    assert not long, long
