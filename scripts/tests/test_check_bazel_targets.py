"""Tests of scripts/check_bazel_targets.py on a fake workspace: a cargo metadata fixture and BUILD files.

Run from the repository root: python3 -m unittest discover -s scripts/tests
"""

from __future__ import annotations

import contextlib
import importlib.util
import io
import json
import subprocess
import sys
import tempfile
import textwrap
import unittest
from pathlib import Path

SCRIPT = Path(__file__).resolve().parent.parent / "check_bazel_targets.py"

_spec = importlib.util.spec_from_file_location("check_bazel_targets", SCRIPT)
checker = importlib.util.module_from_spec(_spec)
assert _spec.loader is not None
sys.modules[_spec.name] = checker  # dataclasses look their module up there
_spec.loader.exec_module(checker)

# The fake workspace: package `demo` (lib demo, bin demo-cli, integration test smoke) in demo/, and
# package `tool` (bin tool only) in tool/.
COMPLETE_DEMO_BUILD = """\
load("@crates//:defs.bzl", "all_crate_deps")
load("@rules_rust//rust:defs.bzl", "rust_binary", "rust_library", "rust_test")

PACKAGE_VERSION = "0.3.1"

rust_library(
    name = "demo",
    srcs = glob(["src/**/*.rs"], exclude = ["src/main.rs"]),
    crate_name = "demo",
    crate_root = "src/lib.rs",
    version = PACKAGE_VERSION,
    deps = all_crate_deps(normal = True),
)

rust_binary(
    name = "demo-cli",
    srcs = ["src/main.rs"],
    deps = [":demo"] + all_crate_deps(normal = True),
)

rust_test(
    name = "demo_test",
    crate = ":demo",
    deps = all_crate_deps(normal_dev = True),
)

rust_test(
    name = "smoke",
    srcs = ["tests/smoke.rs"] + glob(["tests/support/**/*.rs"]),
    crate_root = "tests/smoke.rs",
    rustc_env = {"CARGO_BIN_EXE_demo-cli": "$(rootpath :demo-cli)"},
    data = [":demo-cli"],
    deps = [":demo"],
)
"""

COMPLETE_TOOL_BUILD = """\
load("@rules_rust//rust:defs.bzl", "rust_binary")

rust_binary(
    name = "tool",
    srcs = ["src/main.rs"],
)
"""


def _metadata(root: Path) -> dict:
    def target(kind: str, name: str, src: str, test: bool = True) -> dict:
        return {"kind": [kind], "crate_types": [kind], "name": name, "src_path": src, "test": test}

    demo = root / "demo"
    tool = root / "tool"
    return {
        "packages": [
            {
                "name": "demo",
                "version": "0.3.1",
                "id": f"path+file://{demo}#demo@0.3.1",
                "manifest_path": str(demo / "Cargo.toml"),
                "targets": [
                    target("lib", "demo", str(demo / "src/lib.rs")),
                    target("bin", "demo-cli", str(demo / "src/main.rs")),
                    target("test", "smoke", str(demo / "tests/smoke.rs")),
                ],
            },
            {
                "name": "tool",
                "version": "1.0.0",
                "id": f"path+file://{tool}#tool@1.0.0",
                "manifest_path": str(tool / "Cargo.toml"),
                "targets": [target("bin", "tool", str(tool / "src/main.rs"))],
            },
        ],
        "workspace_members": [
            f"path+file://{demo}#demo@0.3.1",
            f"path+file://{tool}#tool@1.0.0",
        ],
        "workspace_root": str(root),
        "version": 1,
    }


class FakeWorkspace:
    """A temporary directory with the metadata fixture and one BUILD.bazel per package."""

    def __init__(self, demo_build: str | None = COMPLETE_DEMO_BUILD, tool_build: str | None = COMPLETE_TOOL_BUILD):
        self._dir = tempfile.TemporaryDirectory()
        self.root = Path(self._dir.name)
        for package, build in (("demo", demo_build), ("tool", tool_build)):
            (self.root / package).mkdir()
            (self.root / package / "Cargo.toml").write_text(f'[package]\nname = "{package}"\n')
            if build is not None:
                (self.root / package / "BUILD.bazel").write_text(textwrap.dedent(build))
        self.metadata = _metadata(self.root)
        self.metadata_file = self.root / "metadata.json"
        self.metadata_file.write_text(json.dumps(self.metadata))

    def close(self) -> None:
        self._dir.cleanup()

    def problems(self) -> list[str]:
        problems, _notes = checker.check(self.metadata)
        return problems

    def run_main(self) -> tuple[int, str, str]:
        stdout, stderr = io.StringIO(), io.StringIO()
        with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
            status = checker.main(["--metadata", str(self.metadata_file)])
        return status, stdout.getvalue(), stderr.getvalue()


class CheckBazelTargetsTest(unittest.TestCase):
    def workspace(self, **builds: str | None) -> FakeWorkspace:
        workspace = FakeWorkspace(**builds)
        self.addCleanup(workspace.close)
        return workspace

    def assert_only_problem(self, workspace: FakeWorkspace, expected: str) -> None:
        self.assertEqual(workspace.problems(), [expected])
        status, stdout, _ = workspace.run_main()
        self.assertEqual(status, 1)
        self.assertEqual(stdout.splitlines(), [expected])

    def test_complete_workspace_passes(self):
        workspace = self.workspace()
        self.assertEqual(workspace.problems(), [])
        status, stdout, _ = workspace.run_main()
        self.assertEqual(status, 0)
        self.assertIn("every Cargo target has its Bazel target", stdout)

    def test_missing_binary(self):
        demo = COMPLETE_DEMO_BUILD.replace('name = "demo-cli"', 'name = "democli"')
        self.assert_only_problem(
            self.workspace(demo_build=demo),
            'demo/BUILD.bazel: missing rust_binary(name = "demo-cli") for bin demo-cli (src/main.rs)',
        )

    def test_missing_integration_test(self):
        demo = COMPLETE_DEMO_BUILD.replace('name = "smoke"', 'name = "smoke_test"')
        self.assert_only_problem(
            self.workspace(demo_build=demo),
            'demo/BUILD.bazel: missing rust_test(name = "smoke") for integration test smoke (tests/smoke.rs)',
        )

    def test_wrong_crate_name(self):
        demo = COMPLETE_DEMO_BUILD.replace('crate_name = "demo"', 'crate_name = "demo_lib"')
        self.assert_only_problem(
            self.workspace(demo_build=demo),
            'demo/BUILD.bazel: no rust_library with crate_name = "demo" for lib demo (src/lib.rs); '
            'found crate_name "demo_lib"',
        )

    def test_crate_name_defaults_to_target_name(self):
        demo = COMPLETE_DEMO_BUILD.replace('    crate_name = "demo",\n', "")
        self.assertEqual(self.workspace(demo_build=demo).problems(), [])

    def test_missing_unit_tests(self):
        demo = COMPLETE_DEMO_BUILD.replace('crate = ":demo"', 'crate = ":other"')
        self.assert_only_problem(
            self.workspace(demo_build=demo),
            'demo/BUILD.bazel: missing rust_test(crate = ":demo") for the unit tests of lib demo',
        )

    def test_unit_tests_through_a_full_label(self):
        demo = COMPLETE_DEMO_BUILD.replace('crate = ":demo"', 'crate = "//demo:demo"')
        self.assertEqual(self.workspace(demo_build=demo).problems(), [])

    def test_lib_without_unit_tests_needs_none(self):
        workspace = self.workspace(demo_build=COMPLETE_DEMO_BUILD.replace('crate = ":demo"', 'crate = ":other"'))
        workspace.metadata["packages"][0]["targets"][0]["test"] = False
        self.assertEqual(workspace.problems(), [])

    def test_missing_build_file(self):
        self.assert_only_problem(
            self.workspace(tool_build=None),
            "tool: no BUILD.bazel next to Cargo.toml (package tool)",
        )

    def test_test_compiling_another_file(self):
        demo = COMPLETE_DEMO_BUILD.replace('crate_root = "tests/smoke.rs"', 'crate_root = "tests/other.rs"')
        self.assert_only_problem(
            self.workspace(demo_build=demo),
            'demo/BUILD.bazel: rust_test "smoke" does not compile tests/smoke.rs (its crate_root differs)',
        )

    def test_version_drift(self):
        demo = COMPLETE_DEMO_BUILD.replace('PACKAGE_VERSION = "0.3.1"', 'PACKAGE_VERSION = "0.3.0"')
        self.assert_only_problem(
            self.workspace(demo_build=demo),
            'demo/BUILD.bazel: PACKAGE_VERSION is "0.3.0" but Cargo.toml says "0.3.1"',
        )

    def test_every_problem_is_one_line(self):
        demo = (
            COMPLETE_DEMO_BUILD.replace('name = "demo-cli"', 'name = "democli"')
            .replace('name = "smoke"', 'name = "smoke_test"')
        )
        workspace = self.workspace(demo_build=demo, tool_build=None)
        status, stdout, _ = workspace.run_main()
        self.assertEqual(status, 1)
        self.assertEqual(
            stdout.splitlines(),
            [
                'demo/BUILD.bazel: missing rust_binary(name = "demo-cli") for bin demo-cli (src/main.rs)',
                'demo/BUILD.bazel: missing rust_test(name = "smoke") for integration test smoke (tests/smoke.rs)',
                "tool: no BUILD.bazel next to Cargo.toml (package tool)",
            ],
        )

    def test_commented_out_and_quoted_rules_do_not_count(self):
        tool = """\
            load("@rules_rust//rust:defs.bzl", "rust_binary")

            # rust_binary(
            #     name = "tool",
            #     srcs = ["src/main.rs"],
            # )
            genrule(
                name = "not_the_tool",
                outs = ["x"],
                cmd = "echo 'rust_binary(name = \\"tool\\")' > $@",
            )
            """
        self.assert_only_problem(
            self.workspace(tool_build=tool),
            'tool/BUILD.bazel: missing rust_binary(name = "tool") for bin tool (src/main.rs)',
        )

    def test_nested_name_attributes_are_not_the_target_name(self):
        # `name` inside a nested call or dict is not the rule's own name.
        tool = """\
            rust_binary(
                name = "tool_bin",
                srcs = ["src/main.rs"],
                rustc_env = {"name": "tool"},
                tags = helper(name = "tool"),
            )
            """
        self.assert_only_problem(
            self.workspace(tool_build=tool),
            'tool/BUILD.bazel: missing rust_binary(name = "tool") for bin tool (src/main.rs)',
        )

    def test_unchecked_kinds_are_noted_not_failed(self):
        workspace = self.workspace()
        workspace.metadata["packages"][1]["targets"].append(
            {"kind": ["example"], "name": "demo_example", "src_path": str(workspace.root / "tool/examples/e.rs")}
        )
        workspace.metadata_file.write_text(json.dumps(workspace.metadata))
        status, _, stderr = workspace.run_main()
        self.assertEqual(status, 0)
        self.assertIn("example target demo_example (examples/e.rs) not checked", stderr)

    def test_command_line(self):
        workspace = self.workspace(demo_build=COMPLETE_DEMO_BUILD.replace('name = "demo-cli"', 'name = "x"'))
        result = subprocess.run(
            [sys.executable, str(SCRIPT), "--metadata", str(workspace.metadata_file)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            check=False,
        )
        self.assertEqual(result.returncode, 1)
        self.assertEqual(
            result.stdout,
            'demo/BUILD.bazel: missing rust_binary(name = "demo-cli") for bin demo-cli (src/main.rs)\n',
        )

    def test_unreadable_metadata(self):
        workspace = self.workspace()
        workspace.metadata_file.write_text("not json")
        status, _, stderr = workspace.run_main()
        self.assertEqual(status, 2)
        self.assertIn("cannot read cargo metadata", stderr)


if __name__ == "__main__":
    unittest.main()
