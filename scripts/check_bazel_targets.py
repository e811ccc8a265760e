#!/usr/bin/env python3
"""Checks that the Bazel build declares a target for every Cargo target of the workspace.

Cargo is the source of truth: `cargo metadata --format-version 1 --no-deps --offline` lists each
workspace package and its targets, and for each package this script reads the BUILD.bazel (or BUILD)
next to its Cargo.toml and requires:

  * lib (kinds lib / rlib):  a rust_library whose crate_name is the lib's name (rules_rust derives
                             the crate name from the target name when crate_name is left out, so that
                             counts too), and a rust_test with `crate = ":<that rust_library>"` for the
                             lib's unit tests (unless the lib says `test = false`);
  * bin:                     a rust_binary named as the bin;
  * test (tests/*.rs):       a rust_test named as the test target;

and, for bins and tests, that the target compiles the same file: its crate_root is the target's
source file, or (without a crate_root) the file appears as a string in the call. A BUILD file that
defines `PACKAGE_VERSION = "..."` (the version handed to rules_rust, which otherwise compiles
CARGO_PKG_VERSION as 0.0.0) must give the package's version.

Every problem is printed as one line, `<BUILD file>: <what is missing>`; the exit status is 1 when
there is any, 0 otherwise, 2 when cargo metadata cannot be read.

Limits, by design (python3's standard library only; no Bazel needed):
  * The BUILD file is scanned, not evaluated. A target counts only when it is a direct call of
    rust_library / rust_binary / rust_test whose `name`, `crate_name`, `crate_root` and `crate` are
    string literals. Targets made by macros, list comprehensions or loaded under another name are not
    seen (they are reported missing). Calls are found by name, whatever `load` they come from.
  * Only the lib, bin and test target kinds are checked. Examples, benches, build scripts and
    proc-macro libs are listed on stderr as unchecked. Unit tests of bins are not required (Cargo
    runs them; none of this workspace's bins has any).
  * Doc tests are not required (Cargo runs them for libs; rules_rust's rust_doc_test is separate).
  * Labels are compared as written: `crate = ":sidecar_proxy"` and `crate = "//proxy:sidecar_proxy"`
    both name the library; a label into another package does not.

Usage: scripts/check_bazel_targets.py [--metadata FILE] [--root DIR]
  --metadata FILE  read cargo metadata's JSON from FILE instead of running cargo (for tests)
  --root DIR       the workspace root to run cargo in (default: this script's parent directory)
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

RULE_KINDS = ("rust_library", "rust_binary", "rust_test")
STRING_ATTRS = ("name", "crate_name", "crate_root", "crate")
LIB_KINDS = {"lib", "rlib"}
CHECKED_KINDS = LIB_KINDS | {"bin", "test"}


@dataclass
class Rule:
    """One direct call of a rules_rust rule in a BUILD file."""

    kind: str
    attrs: dict[str, str]
    text: str
    line: int


@dataclass
class BuildFile:
    path: Path
    rules: list[Rule] = field(default_factory=list)
    constants: dict[str, str] = field(default_factory=dict)

    def of_kind(self, kind: str) -> list[Rule]:
        return [rule for rule in self.rules if rule.kind == kind]


# ---------------------------------------------------------------------------------------------------
# Scanning BUILD files


def _skip_string(text: str, i: int) -> int:
    """Index just past the string literal starting at text[i] (a quote, maybe after a prefix)."""
    quote = text[i]
    if text.startswith(quote * 3, i):
        end = text.find(quote * 3, i + 3)
        return len(text) if end < 0 else end + 3
    j = i + 1
    while j < len(text):
        if text[j] == "\\":
            j += 2
            continue
        if text[j] == quote or text[j] == "\n":
            return j + 1
        j += 1
    return j


def _call_end(text: str, open_paren: int) -> int:
    """Index of the parenthesis closing the one at text[open_paren]; strings and comments skipped."""
    depth = 0
    i = open_paren
    while i < len(text):
        c = text[i]
        if c in "\"'":
            i = _skip_string(text, i)
            continue
        if c == "#":
            newline = text.find("\n", i)
            i = len(text) if newline < 0 else newline
            continue
        if c in "([{":
            depth += 1
        elif c in ")]}":
            depth -= 1
            if depth == 0:
                return i
        i += 1
    raise ValueError(f"unbalanced parenthesis from offset {open_paren}")


def _top_level_string_attrs(body: str) -> dict[str, str]:
    """`key = "literal"` arguments of a call body (the text between its parentheses), at depth 0."""
    attrs: dict[str, str] = {}
    depth = 0
    i = 0
    keyword = re.compile(r'([A-Za-z_][A-Za-z0-9_]*)\s*=\s*("(?:[^"\\\n]|\\.)*"|\'(?:[^\'\\\n]|\\.)*\')')
    while i < len(body):
        c = body[i]
        if c in "\"'":
            i = _skip_string(body, i)
            continue
        if c == "#":
            newline = body.find("\n", i)
            i = len(body) if newline < 0 else newline
            continue
        if c in "([{":
            depth += 1
        elif c in ")]}":
            depth -= 1
        elif depth == 0 and (c.isalpha() or c == "_") and (i == 0 or not (body[i - 1].isalnum() or body[i - 1] == "_")):
            match = keyword.match(body, i)
            if match:
                # A keyword argument only where the literal is the whole value (not `"a" + x`).
                rest = body[match.end():].lstrip(" \t")
                if not rest or rest[0] in ",\n#)":
                    attrs.setdefault(match.group(1), match.group(2)[1:-1])
                i = match.end()
                continue
            while i < len(body) and (body[i].isalnum() or body[i] == "_"):
                i += 1
            continue
        i += 1
    return attrs


def _strip_comments_and_strings(text: str) -> str:
    """The text with comments and string literals blanked (same length), to find calls safely."""
    out = list(text)
    i = 0
    while i < len(text):
        c = text[i]
        if c in "\"'":
            end = _skip_string(text, i)
            for j in range(i, end):
                if out[j] != "\n":
                    out[j] = " "
            i = end
            continue
        if c == "#":
            newline = text.find("\n", i)
            end = len(text) if newline < 0 else newline
            for j in range(i, end):
                out[j] = " "
            i = end
            continue
        i += 1
    return "".join(out)


def parse_build_file(path: Path) -> BuildFile:
    text = path.read_text(encoding="utf-8")
    code = _strip_comments_and_strings(text)
    build = BuildFile(path)
    call = re.compile(r"(?<![A-Za-z0-9_.])(" + "|".join(RULE_KINDS) + r")\s*\(")
    for match in call.finditer(code):
        open_paren = match.end() - 1
        close = _call_end(text, open_paren)
        body = text[open_paren + 1 : close]
        build.rules.append(
            Rule(
                kind=match.group(1),
                attrs={
                    key: value
                    for key, value in _top_level_string_attrs(body).items()
                    if key in STRING_ATTRS
                },
                text=body,
                line=text.count("\n", 0, match.start()) + 1,
            )
        )
    for match in re.finditer(r'^([A-Za-z_][A-Za-z0-9_]*)\s*=\s*"([^"\\\n]*)"\s*(?:#.*)?$', text, re.M):
        build.constants[match.group(1)] = match.group(2)
    return build


# ---------------------------------------------------------------------------------------------------
# Comparing with cargo metadata


def crate_name_of(rule: Rule) -> str:
    """The crate name rules_rust compiles a rule with: crate_name, or the target name with - as _."""
    return rule.attrs.get("crate_name") or rule.attrs.get("name", "").replace("-", "_")


def _names_target(label: str, target: str, package: str) -> bool:
    if label in (f":{target}", target):
        return True
    return label in (f"//{package}:{target}", f"@//{package}:{target}", f"@@//{package}:{target}")


def _compiles(rule: Rule, relative_source: str) -> bool:
    crate_root = rule.attrs.get("crate_root")
    if crate_root is not None:
        return crate_root == relative_source
    return f'"{relative_source}"' in rule.text or f"'{relative_source}'" in rule.text


def check_package(package: dict, workspace_root: Path) -> tuple[list[str], list[str]]:
    """(problems, notes) for one workspace package."""
    problems: list[str] = []
    notes: list[str] = []
    package_dir = Path(package["manifest_path"]).parent
    try:
        bazel_package = package_dir.relative_to(workspace_root).as_posix()
    except ValueError:
        bazel_package = package_dir.as_posix()
    if bazel_package == ".":
        bazel_package = ""
    shown_dir = bazel_package or "."

    build_path = next(
        (package_dir / name for name in ("BUILD.bazel", "BUILD") if (package_dir / name).is_file()),
        None,
    )
    if build_path is None:
        return [f"{shown_dir}: no BUILD.bazel next to Cargo.toml (package {package['name']})"], notes
    shown = (Path(shown_dir) / build_path.name).as_posix() if bazel_package else build_path.name
    build = parse_build_file(build_path)

    version = build.constants.get("PACKAGE_VERSION")
    if version is not None and version != package["version"]:
        problems.append(
            f'{shown}: PACKAGE_VERSION is "{version}" but Cargo.toml says "{package["version"]}"'
        )

    for target in package["targets"]:
        kinds = set(target["kind"])
        name = target["name"]
        source = Path(target["src_path"])
        try:
            relative_source = source.relative_to(package_dir).as_posix()
        except ValueError:
            relative_source = source.as_posix()

        if kinds & LIB_KINDS:
            libraries = build.of_kind("rust_library")
            matching = [rule for rule in libraries if crate_name_of(rule) == name]
            if not matching:
                found = ", ".join(f'"{crate_name_of(rule)}"' for rule in libraries)
                if found:
                    problems.append(
                        f'{shown}: no rust_library with crate_name = "{name}" for lib {name} '
                        f"({relative_source}); found crate_name {found}"
                    )
                else:
                    problems.append(
                        f'{shown}: missing rust_library(crate_name = "{name}") for lib {name} ({relative_source})'
                    )
                continue
            library = matching[0]
            if "crate_root" in library.attrs and library.attrs["crate_root"] != relative_source:
                problems.append(
                    f'{shown}: rust_library "{library.attrs.get("name")}" has crate_root '
                    f'"{library.attrs["crate_root"]}", Cargo\'s lib {name} is {relative_source}'
                )
            if target.get("test", True):
                library_name = library.attrs.get("name", "")
                unit_tests = [
                    rule
                    for rule in build.of_kind("rust_test")
                    if _names_target(rule.attrs.get("crate", ""), library_name, bazel_package)
                ]
                if not unit_tests:
                    problems.append(
                        f'{shown}: missing rust_test(crate = ":{library_name}") for the unit tests of lib {name}'
                    )
        elif "bin" in kinds:
            _check_named(build, "rust_binary", name, "bin", relative_source, shown, problems)
        elif "test" in kinds:
            _check_named(build, "rust_test", name, "integration test", relative_source, shown, problems)
        else:
            unchecked = sorted(kinds - CHECKED_KINDS) or sorted(kinds)
            notes.append(f"{shown}: {'/'.join(unchecked)} target {name} ({relative_source}) not checked")
    return problems, notes


def _check_named(
    build: BuildFile,
    kind: str,
    name: str,
    what: str,
    relative_source: str,
    shown: str,
    problems: list[str],
) -> None:
    rules = [rule for rule in build.of_kind(kind) if rule.attrs.get("name") == name]
    if not rules:
        problems.append(f'{shown}: missing {kind}(name = "{name}") for {what} {name} ({relative_source})')
    elif not any(_compiles(rule, relative_source) for rule in rules):
        problems.append(f'{shown}: {kind} "{name}" does not compile {relative_source} (its crate_root differs)')


def check(metadata: dict) -> tuple[list[str], list[str]]:
    workspace_root = Path(metadata["workspace_root"])
    members = set(metadata.get("workspace_members", []))
    problems: list[str] = []
    notes: list[str] = []
    packages = [p for p in metadata["packages"] if not members or p["id"] in members]
    for package in sorted(packages, key=lambda p: p["manifest_path"]):
        package_problems, package_notes = check_package(package, workspace_root)
        problems += package_problems
        notes += package_notes
    return problems, notes


def load_metadata(metadata_file: str | None, root: Path) -> dict:
    if metadata_file:
        return json.loads(Path(metadata_file).read_text(encoding="utf-8"))
    output = subprocess.run(
        [
            os.environ.get("CARGO", "cargo"),
            "metadata",
            "--format-version",
            "1",
            "--no-deps",
            "--offline",
        ],
        cwd=root,
        check=True,
        stdout=subprocess.PIPE,
        text=True,
    )
    return json.loads(output.stdout)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--metadata", help="cargo metadata JSON to read instead of running cargo")
    parser.add_argument(
        "--root",
        type=Path,
        default=Path(__file__).resolve().parent.parent,
        help="workspace root (default: the repository holding this script)",
    )
    args = parser.parse_args(argv)
    try:
        metadata = load_metadata(args.metadata, args.root)
    except (OSError, subprocess.CalledProcessError, json.JSONDecodeError) as error:
        print(f"check_bazel_targets: cannot read cargo metadata: {error}", file=sys.stderr)
        return 2
    problems, notes = check(metadata)
    for note in notes:
        print(f"note: {note}", file=sys.stderr)
    for problem in problems:
        print(problem)
    if problems:
        return 1
    count = sum(
        1
        for package in metadata["packages"]
        for target in package["targets"]
        if set(target["kind"]) & CHECKED_KINDS
    )
    print(f"check_bazel_targets: every Cargo target has its Bazel target ({count} Cargo targets)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
