#!/usr/bin/env python3
"""Checks that no crate of the workspace has a circle of module imports.

A circle is a set of modules that import each other, directly or through others (`cli` imports `run`,
`run` imports `report`, `report` imports `cli`). None of them can then be read, tested or moved without
the others. docs/architecture.md shows how the proxy's modules are layered instead.

How it works, per crate root (src/lib.rs, src/main.rs and each src/bin/*.rs of every workspace member):

  1. The module tree is read from `mod name;` declarations (files name.rs or name/mod.rs) and inline
     `mod name { ... }` blocks. Modules declared right after `#[cfg(test)]` are left out: code that
     only tests may import what it tests.
  2. Comments, string and character literals are blanked, then every path that names a module of the
     crate is collected: `crate::a::b`, `super::x`, `self::x`. `use` trees with braces are expanded
     (`use crate::{a::X, b::{Y, Z}}` names `a` and `b`). A path counts as an import of the deepest
     module it names. (A path starting with a child module's name, `plan::build`, stays inside the
     module's own subtree, so it can never close a circle, and is not looked at.)
  3. Imports are compared between siblings: at every level of the tree, an import from anywhere inside
     sibling A to anywhere inside sibling B is an edge A -> B. An import between a module and one of
     its own ancestors (`use super::*` in a child) is not an edge: a parent holding its children is the
     tree, not a circle.
  4. Each strongly connected set of siblings is a circle. It is reported as the shortest chain
     through each of its modules (one chain often passes through several), with the file and line of
     one import for each step of the chain.

Output: one block per circle, for example

    injector (src/lib.rs): circle containers -> plan -> containers
      containers -> plan        src/containers.rs:14  crate::plan::ContainerPlan
      plan -> containers        src/plan.rs:9         crate::containers::DEFAULT_REQUESTS

Exit status: 1 when any circle is found, 0 when none, 2 on an unreadable workspace.

Limits, by design (python3's standard library only; the source is scanned, not compiled):
  * Macros are not expanded, and `cfg` on single items is ignored (an import under
    `#[cfg(test)] use ...` counts). `#[path]` is followed on `mod name;` only, not on inline modules.
  * Of the integration tests, only those made of several files (tests/<name>/main.rs) are read.

Crate roots: src/lib.rs, src/main.rs, src/bin/*.rs, src/bin/*/main.rs and tests/*/main.rs.

Usage: scripts/check_module_circles.py [--root DIR] [CRATE_DIR ...]
  --root DIR   the workspace root (default: this script's parent directory); its Cargo.toml's
               [workspace] members are the crates checked when none is given
  CRATE_DIR    check only these crate directories (relative to --root)
"""

from __future__ import annotations

import argparse
import os
import re
import sys
import tomllib
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path

IDENT = r"[A-Za-z_][A-Za-z0-9_]*"
PATH_ROOTS = ("crate", "super", "self")


@dataclass
class Import:
    """One path naming a module of the crate, where it was written."""

    target: tuple[str, ...]  # the deepest module the path names, from the crate root
    file: Path
    line: int
    text: str


@dataclass
class Module:
    """One module of a crate: its path from the root (() for the root itself) and what it imports."""

    path: tuple[str, ...]
    children: dict[str, Module] = field(default_factory=dict)
    imports: list[Import] = field(default_factory=list)


@dataclass
class Edge:
    """Sibling `source` imports sibling `target`; `evidence` is the first import that says so."""

    source: tuple[str, ...]
    target: tuple[str, ...]
    evidence: Import


# ---------------------------------------------------------------------------------------------------
# Reading source: blank what is not code.


RAW_STRING_START = re.compile(r'b?r(#*)"')
CHAR_LITERAL = re.compile(r"'(\\u\{[0-9a-fA-F]+\}|\\.|[^\\'])'", re.S)


def blank_non_code(text: str) -> str:
    """Returns `text` with comments and string/char literals replaced by spaces (newlines kept, so
    line numbers and offsets stay valid)."""
    out = list(text)
    i, n = 0, len(text)

    def blank(start: int, end: int) -> None:
        for k in range(start, min(end, n)):
            if out[k] != "\n":
                out[k] = " "

    while i < n:
        c = text[i]
        if text.startswith("//", i):
            end = text.find("\n", i)
            end = n if end < 0 else end
            blank(i, end)
            i = end
        elif text.startswith("/*", i):
            depth, j = 1, i + 2
            while j < n and depth:
                if text.startswith("/*", j):
                    depth, j = depth + 1, j + 2
                elif text.startswith("*/", j):
                    depth, j = depth - 1, j + 2
                else:
                    j += 1
            blank(i, j)
            i = j
        elif c in "br" and (m := RAW_STRING_START.match(text, i)) and (i == 0 or not _is_ident(text[i - 1])):
            closing = '"' + m.group(1)
            end = text.find(closing, m.end())
            end = n if end < 0 else end + len(closing)
            blank(i, end)
            i = end
        elif c == '"':
            j = i + 1
            while j < n and text[j] != '"':
                j += 2 if text[j] == "\\" else 1
            blank(i, j + 1)
            i = j + 1
        elif c == "'":
            # A char literal ('x', '\n', '\u{1F600}') or a lifetime ('a, 'static): only the former is
            # closed by a quote right after its one (possibly escaped) character.
            m = CHAR_LITERAL.match(text, i)
            if m:
                blank(i, m.end())
                i = m.end()
            else:
                i += 1
        else:
            i += 1
    return "".join(out)


def _is_ident(c: str) -> bool:
    return c.isalnum() or c == "_"


def matching_brace(text: str, open_at: int) -> int:
    """The offset just past the `}` that closes the `{` at `open_at` (in blanked text)."""
    depth = 0
    for k in range(open_at, len(text)):
        if text[k] == "{":
            depth += 1
        elif text[k] == "}":
            depth -= 1
            if depth == 0:
                return k + 1
    return len(text)


def expand_use_tree(tree: str) -> list[str]:
    """`a::{b, c::{d, self}}` -> ["a::b", "a::c::d", "a::c::self"] (whitespace removed)."""
    tree = re.sub(r"\s+", "", tree)
    brace = tree.find("{")
    if brace < 0:
        return [tree]  # aliases (`X as Y`) were dropped before the whitespace went
    prefix = tree[:brace]
    inner = tree[brace + 1 : tree.rfind("}")]
    parts, depth, start = [], 0, 0
    for k, ch in enumerate(inner):
        if ch == "{":
            depth += 1
        elif ch == "}":
            depth -= 1
        elif ch == "," and depth == 0:
            parts.append(inner[start:k])
            start = k + 1
    parts.append(inner[start:])
    result = []
    for part in parts:
        if part:
            result.extend(prefix + sub for sub in expand_use_tree(part))
    return result


USE_STATEMENT = re.compile(r"\buse\s+([^;]+);")
USE_ALIAS = re.compile(r"\s+as\s+" + IDENT)
PATH_IN_CODE = re.compile(r"(?<![A-Za-z0-9_:])(" + IDENT + r"(?:\s*::\s*" + IDENT + r")+)")
MOD_DECLARATION = re.compile(r"\bmod\s+(" + IDENT + r")\s*([;{])")
# Attributes right before a `mod` (others may stand between, and a `pub`).
_OTHER_ATTRS = r"\s*(?:#\s*\[[^\]]*\]\s*)*(?:pub(?:\s*\([^)]*\))?\s+)?$"
CFG_TEST_BEFORE = re.compile(r"#\s*\[\s*cfg\s*\(\s*test\s*\)\s*\]" + _OTHER_ATTRS)
PATH_BEFORE = re.compile(r'#\s*\[\s*path\s*=\s*"([^"]+)"\s*\]' + _OTHER_ATTRS)


# ---------------------------------------------------------------------------------------------------
# Building the module tree and collecting imports.


class CrateReader:
    """Reads one crate (one root file) into a tree of `Module`s with their imports."""

    def __init__(self, root_file: Path):
        self.root = Module(path=())
        # Imports are resolved once the whole tree is known (a path may name a module declared later).
        self._raw: list[tuple[Module, str, Path, int]] = []
        self._read_file(self.root, root_file, root_file.parent)
        for module, text, file, line in self._raw:
            target = self._resolve(module, text)
            if target is not None:
                module.imports.append(Import(target, file, line, text))

    def _read_file(self, module: Module, file: Path, child_dir: Path) -> None:
        source = file.read_text(encoding="utf-8")
        code = blank_non_code(source)
        self._read_block(module, file, source, code, 0, len(code), child_dir)

    def _read_block(
        self, module: Module, file: Path, source: str, code: str, start: int, end: int, child_dir: Path
    ) -> None:
        """Reads code[start:end], the body of `module`; inline modules inside are read as their own."""
        segments = []  # parts of the body that belong to this module itself
        pos = start
        for m in MOD_DECLARATION.finditer(code, start, end):
            if m.start() < pos:
                continue  # inside an inline module already read
            name = m.group(1)
            is_test = bool(CFG_TEST_BEFORE.search(code, max(start, m.start() - 200), m.start()))
            if m.group(2) == "{":
                block_end = matching_brace(code, m.end() - 1)
                segments.append((pos, m.start()))
                pos = block_end
                if not is_test:
                    child = module.children.setdefault(name, Module(path=module.path + (name,)))
                    self._read_block(child, file, source, code, m.end(), block_end - 1, child_dir / name)
            else:
                if is_test:
                    continue
                # `#[path = "..."]` names the file relative to this file's directory (the attribute's
                # string is read from the source: the blanked code has no strings); the file then holds
                # its own children as a mod.rs would.
                path_attr = PATH_BEFORE.search(source, max(start, m.start() - 300), m.start())
                if path_attr:
                    candidates = [Path(os.path.normpath(file.parent / path_attr.group(1)))]
                else:
                    candidates = [child_dir / f"{name}.rs", child_dir / name / "mod.rs"]
                child_file = next((f for f in candidates if f.is_file()), None)
                if child_file is None:
                    continue  # generated or cfg'd away: nothing to read
                child = module.children.setdefault(name, Module(path=module.path + (name,)))
                grand_dir = child_file.parent if path_attr or child_file.name == "mod.rs" else child_dir / name
                self._read_file(child, child_file, grand_dir)
        segments.append((pos, end))
        for seg_start, seg_end in segments:
            self._collect_paths(module, file, code, seg_start, seg_end)

    def _collect_paths(self, module: Module, file: Path, code: str, start: int, end: int) -> None:
        body = code[start:end]
        # `use` statements first (their braces are expanded), then every other path in the code.
        for m in USE_STATEMENT.finditer(body):
            tree = USE_ALIAS.sub("", m.group(1)).strip().lstrip(":")
            line = code.count("\n", 0, start + m.start()) + 1
            for path in expand_use_tree(tree):
                self._raw.append((module, path.removesuffix("::self"), file, line))
        rest = USE_STATEMENT.sub(lambda m: " " * len(m.group(0)), body)
        for m in PATH_IN_CODE.finditer(rest):
            path = re.sub(r"\s+", "", m.group(1))
            line = code.count("\n", 0, start + m.start()) + 1
            self._raw.append((module, path, file, line))

    def _module_at(self, path: tuple[str, ...]) -> Module | None:
        node = self.root
        for name in path:
            node = node.children.get(name)
            if node is None:
                return None
        return node

    def _resolve(self, module: Module, text: str) -> tuple[str, ...] | None:
        """The deepest module of this crate that `text` (a path written in `module`) names, if any."""
        segments = text.split("::")
        head = segments[0]
        if head == "crate":
            base, rest = (), segments[1:]
        elif head in ("super", "self"):
            base, rest = module.path, segments
            while rest and rest[0] in ("super", "self"):
                if rest[0] == "super":
                    if not base:
                        return None
                    base = base[:-1]
                rest = rest[1:]
        else:
            return None  # a type, an enum variant, an extern crate, std...
        node = self._module_at(base)
        if node is None:
            return None
        target = base
        for name in rest:
            child = node.children.get(name)
            if child is None:
                break
            node, target = child, target + (name,)
        return target


# ---------------------------------------------------------------------------------------------------
# Finding circles.


def all_modules(root: Module) -> list[Module]:
    found, stack = [], [root]
    while stack:
        node = stack.pop()
        found.append(node)
        stack.extend(node.children.values())
    return found


def sibling_edges(root: Module) -> dict[tuple[str, ...], dict[tuple[str, ...], dict[tuple[str, ...], Edge]]]:
    """For each parent module: {source sibling: {target sibling: Edge}}, keyed by module paths."""
    graphs: dict = {}
    for module in all_modules(root):
        for imp in sorted(module.imports, key=lambda i: (str(i.file), i.line)):
            source, target = module.path, imp.target
            common = 0
            while common < min(len(source), len(target)) and source[common] == target[common]:
                common += 1
            if common == len(source) or common == len(target):
                continue  # the same module, or one is the other's ancestor
            parent = source[:common]
            a, b = source[: common + 1], target[: common + 1]
            graphs.setdefault(parent, {}).setdefault(a, {}).setdefault(b, Edge(a, b, imp))
    return graphs


def strongly_connected(graph: dict) -> list[list]:
    """Tarjan's algorithm; returns the components of more than one node, each sorted."""
    index: dict = {}
    low: dict = {}
    on_stack: set = set()
    stack: list = []
    components: list = []
    counter = [0]

    def visit(v) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on_stack.add(v)
        for w in graph.get(v, {}):
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
                components.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return sorted(components)


def circles_through_each(graph: dict, component: list) -> list[list]:
    """For each module of `component`, the shortest chain from it back to itself; a chain found from
    several of its modules is listed once. Shortest first, so the simplest circle leads."""
    chains, seen = [], set()
    for start in component:
        chain = _shortest_circle_from(graph, component, start)
        key = frozenset(zip(chain, chain[1:]))
        if key not in seen:
            seen.add(key)
            chains.append(chain)
    return sorted(chains, key=len)


def _shortest_circle_from(graph: dict, component: list, start) -> list:
    members = set(component)
    previous = {start: None}
    queue = deque([start])
    while queue:
        v = queue.popleft()
        for w in sorted(graph.get(v, {})):
            if w not in members:
                continue
            if w == start:
                chain = [v]
                while previous[chain[-1]] is not None:
                    chain.append(previous[chain[-1]])
                return list(reversed(chain)) + [start]
            if w not in previous:
                previous[w] = v
                queue.append(w)
    return component + [start]


def name(path: tuple[str, ...]) -> str:
    return "::".join(path) or "crate"


def circles_in(crate_dir: Path, root_file: Path) -> list[str]:
    """Every circle of one crate root, each as a printable block."""
    root = CrateReader(root_file).root
    reports = []
    label = f"{crate_dir.name} ({root_file.relative_to(crate_dir)})"
    for _parent, graph in sorted(sibling_edges(root).items()):
        for component in strongly_connected(graph):
            for chain in circles_through_each(graph, component):
                lines = [f"{label}: circle {' -> '.join(name(p) for p in chain)}"]
                if len(component) > len(chain) - 1:
                    lines.append(f"  (part of the circle of {', '.join(name(p) for p in component)})")
                for a, b in zip(chain, chain[1:]):
                    edge = graph[a][b]
                    where = f"{edge.evidence.file.relative_to(crate_dir)}:{edge.evidence.line}"
                    lines.append(f"  {name(a)} -> {name(b)}  {where}  {edge.evidence.text}")
                reports.append("\n".join(lines))
    return reports


def crate_roots(crate_dir: Path) -> list[Path]:
    src = crate_dir / "src"
    roots = [f for f in (src / "lib.rs", src / "main.rs") if f.is_file()]
    roots += sorted((src / "bin").glob("*.rs")) if (src / "bin").is_dir() else []
    roots += sorted(p for p in (src / "bin").glob("*/main.rs")) if (src / "bin").is_dir() else []
    # Integration tests made of several files (tests/<name>/main.rs); one-file tests have no modules
    # of their own but the shared support, which these read too.
    roots += sorted((crate_dir / "tests").glob("*/main.rs"))
    return roots


def workspace_members(root: Path) -> list[Path]:
    manifest = tomllib.loads((root / "Cargo.toml").read_text(encoding="utf-8"))
    members = manifest.get("workspace", {}).get("members", [])
    return [root / m for m in members]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--root", type=Path, default=Path(__file__).resolve().parent.parent)
    parser.add_argument("crates", nargs="*", help="crate directories, relative to --root")
    args = parser.parse_args(argv)
    try:
        crates = [args.root / c for c in args.crates] if args.crates else workspace_members(args.root)
    except (OSError, tomllib.TOMLDecodeError) as error:
        print(f"check_module_circles: cannot read the workspace at {args.root}: {error}", file=sys.stderr)
        return 2
    reports, checked = [], 0
    for crate_dir in crates:
        roots = crate_roots(crate_dir)
        if not roots:
            print(f"check_module_circles: {crate_dir} has no src/lib.rs, src/main.rs or src/bin/", file=sys.stderr)
            return 2
        for root_file in roots:
            checked += 1
            reports.extend(circles_in(crate_dir, root_file))
    for report in reports:
        print(report)  # one block per chain
    sys.stdout.flush()
    print(
        f"check_module_circles: {len(reports)} circle(s) in {checked} crate root(s) of "
        f"{', '.join(c.name for c in crates)}",
        file=sys.stderr,
    )
    return 1 if reports else 0


if __name__ == "__main__":
    sys.exit(main())
