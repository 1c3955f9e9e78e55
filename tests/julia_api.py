"""The Julia API that ``julia/PyScatterNQCD`` uses, read with tree-sitter (Julia cannot run on CI).

Two halves:

* :func:`package_api` reads a package's ``src/*.jl`` (a git tree of the real package) and lists, per
  name, its methods: positional arity (min, max; max None for varargs) and keyword names (None: any).
  ``python tests/julia_api.py derive GITDIR[@REV]...`` writes ``tests/data/julia_api.json`` from bare git
  dirs of the pinned packages, keeping only the names PyScatterNQCD uses (no package code is kept,
  only that table and the commit it came from).
* :func:`uses` lists what a ``.jl`` file of ours calls, extends or references in those packages,
  and :func:`module_api` what our own module defines (what the Python bridge may call).
"""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

FIXTURE = Path(__file__).resolve().parent / "data" / "julia_api.json"
OURS = Path(__file__).resolve().parents[1] / "julia" / "PyScatterNQCD" / "src" / "PyScatterNQCD.jl"


def parser():
    import tree_sitter
    import tree_sitter_julia

    return tree_sitter.Parser(tree_sitter.Language(tree_sitter_julia.language()))


def _text(node) -> str:
    return node.text.decode()


def _walk(node):
    stack = [node]
    while stack:
        n = stack.pop()
        yield n
        stack.extend(reversed(n.named_children))


def _arguments(argument_list, definition: bool):
    """(positional, keywords) of an argument list: positional = (required, optional, varargs) for a
    definition, (count, splat) for a call; keywords = names (None: a keyword splat)."""
    required = optional = 0
    varargs = kw_splat = False
    keywords: list[str] = []
    after_semicolon = False
    for child in argument_list.children:
        if child.type == ";":
            after_semicolon = True
            continue
        if not child.is_named or child.type in ("comment", "line_comment", "block_comment"):
            continue
        if after_semicolon:
            if child.type == "splat_expression":
                kw_splat = True
            elif child.type == "named_argument":
                keywords.append(_name(child.named_children[0]))
            else:
                keywords.append(_name(child))
        elif child.type == "splat_expression":
            varargs = True
        elif child.type == "named_argument":
            if definition:
                optional += 1
            else:
                keywords.append(_name(child.named_children[0]))
        else:
            required += 1
    return (required, optional, varargs), (None if kw_splat else keywords)


def _name(node) -> str:
    """The bare name of a (typed, parametrised, qualified) name expression."""
    while node.type in ("typed_expression", "parametrized_type_expression", "where_expression", "unary_typed_expression"):
        node = node.named_children[0]
    if node.type == "field_expression":
        node = node.named_children[-1]
    return _text(node)


def _qualified(node) -> list[str]:
    """["A", "B", "c"] of A.B.c; [name] of a plain or parametrised name."""
    while node.type in ("parametrized_type_expression",):
        node = node.named_children[0]
    if node.type == "field_expression":
        left, right = node.named_children[0], node.named_children[-1]
        return _qualified(left) + [_text(right)]
    return [_text(node)]


def _signature_call(node):
    """The call_expression of a definition's signature (through where clauses and return types)."""
    for n in _walk(node):
        if n.type == "call_expression":
            return n
    return None


@dataclass(frozen=True)
class Method:
    required: int
    optional: int
    varargs: bool
    keywords: tuple[str, ...] | None  # None: any keyword

    def accepts(self, n_positional: int, splat: bool, keywords: list[str]) -> bool:
        if not splat:
            if n_positional < self.required or (not self.varargs and n_positional > self.required + self.optional):
                return False
        return self.keywords is None or set(keywords) <= set(self.keywords)

    def as_list(self):
        return [self.required, self.optional, self.varargs, None if self.keywords is None else list(self.keywords)]


def definitions(source: bytes, parse=None) -> dict[str, dict]:
    """{name: {"kind": "function"|"type"|"const", "methods": [[required, optional, varargs, keywords], ...]}}."""
    tree = (parse or parser()).parse(source)
    found: dict[str, dict] = {}

    def add(name: str, kind: str, method: Method | None = None):
        entry = found.setdefault(name, {"kind": kind, "methods": []})
        if kind == "type":
            entry["kind"] = "type"
        if method is not None and method.as_list() not in entry["methods"]:
            entry["methods"].append(method.as_list())

    def method_of(call) -> tuple[str, Method] | None:
        head = call.named_children[0]
        if head.type == "parenthesized_expression":  # functor (x::T)(...): a method of T
            head = head.named_children[0]
            if head.type == "typed_expression":
                head = head.named_children[-1]
        args = next((c for c in call.named_children if c.type == "argument_list"), None)
        if args is None:
            return None
        (required, optional, varargs), keywords = _arguments(args, definition=True)
        return _name(head), Method(required, optional, varargs, None if keywords is None else tuple(keywords))

    for node in _walk(tree.root_node):
        if node.type == "function_definition":
            signature = next((c for c in node.named_children if c.type == "signature"), None)
            call = _signature_call(signature) if signature is not None else None
            if call is not None and (m := method_of(call)):
                add(m[0], "function", m[1])
        elif node.type == "assignment":
            left = node.named_children[0]
            if left.type in ("call_expression", "where_expression") or (
                    left.type == "typed_expression" and left.named_children[0].type == "call_expression"):
                call = _signature_call(left)
                if call is not None and (m := method_of(call)):
                    add(m[0], "function", m[1])
            elif left.type == "identifier" and node.parent is not None and node.parent.type == "const_statement":
                add(_text(left), "const")
        elif node.type in ("struct_definition", "abstract_definition", "primitive_definition"):
            head = next(c for c in node.named_children if c.type == "type_head")
            target = head.named_children[0]
            if target.type == "binary_expression":
                target = target.named_children[0]
            name = _name(target)
            add(name, "type")
            if node.type == "struct_definition":
                body = node.named_children[1:]
                inner = [c for c in body if c.type == "function_definition" or (
                    c.type == "assignment" and c.named_children[0].type in ("call_expression", "where_expression"))]
                fields = [c for c in body if c.type in ("identifier", "typed_expression", "const_statement")]
                kwdef = node.parent is not None and node.parent.type == "macrocall_expression" and "kwdef" in _text(node.parent)[:20]
                if not inner:
                    add(name, "type", Method(len(fields), 0, False, ()))
                if kwdef:
                    add(name, "type", Method(0, 0, False, tuple(_name(f) for f in fields)))
        elif node.type in ("import_statement", "using_statement"):
            for selected in (c for c in node.named_children if c.type == "selected_import"):
                for imported in selected.named_children[1:]:
                    found.setdefault(_name(imported), {"kind": "imported", "methods": []})
    return found


def package_api(git_dir: str, commit: str) -> dict[str, dict]:
    """Every name defined in ``src/`` of the package at ``commit`` of the bare repository ``git_dir``."""
    git = ["git", "--git-dir", git_dir]
    files = subprocess.run([*git, "ls-tree", "-r", "--name-only", commit, "--", "src"], check=True,
                           capture_output=True, text=True).stdout.split()
    parse, api = parser(), {}
    for path in (f for f in files if f.endswith(".jl")):
        source = subprocess.run([*git, "show", f"{commit}:{path}"], check=True, capture_output=True).stdout
        for name, entry in definitions(source, parse).items():
            merged = api.setdefault(name, {"kind": entry["kind"], "methods": []})
            if entry["kind"] in ("type", "function") or merged["kind"] in ("imported", "const"):
                merged["kind"] = entry["kind"] if merged["kind"] != "type" else "type"
            for method in entry["methods"]:
                if method not in merged["methods"]:
                    merged["methods"].append(method)
    return api


@dataclass(frozen=True)
class Use:
    package: str
    path: tuple[str, ...]  # the name as written, after the package: ("DynamicsUtils", "get_positions")
    kind: str  # "call", "extend" (a method defined on the package's function) or "reference"
    n_positional: int = 0
    splat: bool = False
    keywords: tuple[str, ...] = ()
    line: int = 0

    @property
    def name(self) -> str:
        return self.path[-1]


def uses(source: bytes) -> list[Use]:
    """What ``source`` calls, extends or references in the packages it imports (``using P: P, a, b``)."""
    tree = parser().parse(source)
    packages, imported = set(), {}
    for node in _walk(tree.root_node):
        if node.type == "using_statement" or node.type == "import_statement":
            for selected in (c for c in node.named_children if c.type == "selected_import"):
                package = _name(selected.named_children[0])
                for name in selected.named_children[1:]:
                    if _name(name) == package:
                        packages.add(package)
                    else:
                        imported[_name(name)] = package
            for plain in (c for c in node.named_children if c.type == "identifier"):
                packages.add(_text(plain))

    def resolve(node) -> tuple[str, tuple[str, ...]] | None:
        parts = _qualified(node)
        if parts[0] in packages and len(parts) > 1:
            return parts[0], tuple(parts[1:])
        if parts[0] in imported:  # using P: Sub (a submodule or name of P), then Sub or Sub.name
            return imported[parts[0]], tuple(parts)
        return None

    found, seen_heads = [], set()
    for node in _walk(tree.root_node):
        if node.type == "call_expression":
            head = node.named_children[0]
            target = resolve(head)
            args = next((c for c in node.named_children if c.type == "argument_list"), None)
            if target is None or args is None:
                continue
            base = head.named_children[0] if head.type == "parametrized_type_expression" else head
            for n in _walk(base):  # the name itself; type parameters (Simulation{Classical}) are references
                seen_heads.add(n.id)
            parent = node.parent
            definition = parent is not None and (
                (parent.type == "assignment" and parent.named_children[0].id == node.id) or parent.type == "signature")
            (required, optional, varargs), keywords = _arguments(args, definition=definition)
            if definition:
                found.append(Use(target[0], target[1], "extend", required + optional, varargs, (), node.start_point[0] + 1))
            else:
                found.append(Use(target[0], target[1], "call", required, varargs, tuple(keywords or ()),
                                 node.start_point[0] + 1))
        elif node.type in ("field_expression", "identifier") and node.id not in seen_heads:
            if node.parent is not None and node.parent.type in ("field_expression", "selected_import"):
                continue  # part of a longer name, or the import itself
            target = resolve(node)
            if target is not None:
                found.append(Use(target[0], target[1], "reference", line=node.start_point[0] + 1))
    return found


def module_api(source: bytes) -> dict:
    """Our module's exported names, outcome constants and the methods of its functions and types."""
    tree = parser().parse(source)
    exports = []
    for node in _walk(tree.root_node):
        if node.type == "export_statement":
            exports += [_text(c) for c in node.named_children]
    defined = definitions(source)
    constants = {}
    for node in _walk(tree.root_node):
        if node.type == "const_statement":
            assignment = node.named_children[0]
            left, right = assignment.named_children[0], assignment.named_children[-1]
            if right.type == "integer_literal":
                constants[_text(left)] = int(_text(right))
    return {"exports": exports, "constants": constants,
            "definitions": {k: v for k, v in defined.items() if v["kind"] != "imported"}}


def derive(git_dirs: list[str]) -> dict:
    """The fixture: for each package, the commit and version read, and the API entries of the names we use."""
    ours = uses(OURS.read_bytes())
    table = {"source": "derived by tests/julia_api.py from the packages' src/*.jl (tree-sitter); no package code kept",
             "packages": {}, "unchecked": sorted({u.package for u in ours})}
    for spec in git_dirs:
        git_dir, _, rev = spec.partition("@")
        rev = rev or "HEAD"
        project = subprocess.run(["git", "--git-dir", git_dir, "show", f"{rev}:Project.toml"], check=True,
                                 capture_output=True, text=True).stdout
        name = next(line.split('"')[1] for line in project.splitlines() if line.startswith("name"))
        version = next(line.split('"')[1] for line in project.splitlines() if line.startswith("version"))
        commit = subprocess.run(["git", "--git-dir", git_dir, "rev-parse", f"{rev}^{{commit}}"], check=True,
                                capture_output=True, text=True).stdout.strip()
        api = package_api(git_dir, commit)
        wanted = sorted({u.name for u in ours if u.package == name} | {p for u in ours if u.package == name for p in u.path[:-1]})
        table["packages"][name] = {"version": version, "commit": commit,
                                   "names": {w: api[w] for w in wanted if w in api}}
        table["unchecked"].remove(name)
    table["pyscatter_nqcd"] = module_api(OURS.read_bytes())
    return table


if __name__ == "__main__":
    if sys.argv[1:2] != ["derive"] or len(sys.argv) < 3:
        sys.exit("usage: python tests/julia_api.py derive GITDIR[@REV] [GITDIR[@REV]...]")
    FIXTURE.parent.mkdir(exist_ok=True)
    FIXTURE.write_text(json.dumps(derive(sys.argv[2:]), indent=1, sort_keys=True) + "\n")
    print(f"wrote {FIXTURE}")


def load_fixture() -> dict:
    return json.loads(FIXTURE.read_text())


def check_uses(source: bytes, table: dict) -> list[str]:
    """Every way ``source`` uses a package of ``table`` that the package's API does not allow, one line each."""
    problems = []
    packages = table["packages"]
    for use in uses(source):
        where = f"line {use.line}: {use.package}.{'.'.join(use.path)}"
        if use.package not in packages:
            if use.package not in table["unchecked"]:
                problems.append(f"{where}: package {use.package} is in neither the checked nor the unchecked list")
            continue
        names = packages[use.package]["names"]
        missing = [p for p in use.path if p not in names]
        if missing:
            problems.append(f"{where}: {missing[0]} is not defined by {use.package} {packages[use.package]['version']}")
            continue
        methods = [Method(r, o, v, None if k is None else tuple(k)) for r, o, v, k in names[use.name]["methods"]]
        if use.kind == "call" and not any(m.accepts(use.n_positional, use.splat, list(use.keywords)) for m in methods):
            problems.append(f"{where}: no method takes {use.n_positional} positional argument(s)"
                            f"{' and keywords ' + str(list(use.keywords)) if use.keywords else ''}")
        if use.kind == "extend" and not any(m.required <= use.n_positional <= m.required + m.optional or m.varargs
                                            for m in methods):
            problems.append(f"{where}: extends a function none of whose methods takes {use.n_positional} argument(s)")
    return problems


def fake_module(**implementations):
    """A stand-in for the ``PyScatterNQCD`` module as juliacall shows it, made from the fixture's record of
    our Julia module: its exported functions and types take exactly the arguments their Julia methods take
    (positional count, keyword names) and raise TypeError otherwise, then run ``implementations[name]``;
    its constants have their Julia values. Names our module does not export do not exist."""
    from types import SimpleNamespace

    ours = load_fixture()["pyscatter_nqcd"]
    unknown = set(implementations) - set(ours["exports"])
    if unknown:
        raise AttributeError(f"PyScatterNQCD exports no {sorted(unknown)}")

    def checked(name, function):
        methods = [Method(r, o, v, None if k is None else tuple(k)) for r, o, v, k in ours["definitions"][name]["methods"]]

        def call(*args, **kwargs):
            if not any(m.accepts(len(args), False, list(kwargs)) for m in methods):
                raise TypeError(f"PyScatterNQCD.{name}: no method for {len(args)} positional argument(s) "
                                f"and keywords {sorted(kwargs)}")
            return function(*args, **kwargs)

        return call

    attributes = {name: checked(name, function) for name, function in implementations.items()}
    attributes.update(ours.get("constants", {}))
    return SimpleNamespace(**attributes)
