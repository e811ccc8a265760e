"""Tests of scripts/check_module_circles.py on small crates written to a temporary directory.

Run from the repository root: python3 -m unittest discover -s scripts/tests
"""

from __future__ import annotations

import contextlib
import importlib.util
import io
import subprocess
import sys
import tempfile
import textwrap
import unittest
from pathlib import Path

SCRIPT = Path(__file__).resolve().parent.parent / "check_module_circles.py"

_spec = importlib.util.spec_from_file_location("check_module_circles", SCRIPT)
checker = importlib.util.module_from_spec(_spec)
assert _spec.loader is not None
sys.modules[_spec.name] = checker  # dataclasses look their module up there
_spec.loader.exec_module(checker)

# A crate without a circle: `run` uses `plan` and `report`, both use `settings`, `plan` has a child
# that uses its parent (the tree, not a circle), and a test module imports its way back up.
LAYERED = {
    "src/lib.rs": """\
        //! A layered crate.
        pub mod plan;
        pub mod report;
        pub mod run;
        pub mod settings;
        """,
    "src/settings.rs": "pub struct Settings;\n",
    "src/plan/mod.rs": """\
        mod steps;
        pub use steps::Step;
        use crate::settings::Settings;
        pub struct Plan(Settings);
        """,
    "src/plan/steps.rs": "use super::Plan;\npub struct Step(Plan);\n",
    "src/report.rs": """\
        use crate::{settings::Settings, plan::{self, Step}};
        pub fn write(_: &Settings, _: Step) {}
        #[cfg(test)]
        mod tests {
            use crate::run::everything;
        }
        """,
    "src/run.rs": """\
        use crate::plan::Plan;
        // crate::report would be an import, but this is a comment.
        const NOTE: &str = "crate::report::write is only text";
        pub fn everything(p: Plan) { crate::report::write(todo!(), todo!()); let _ = p; }
        """,
}


def write_crate(directory: Path, files: dict[str, str]) -> Path:
    crate = directory / "demo"
    for relative, text in files.items():
        path = crate / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text), encoding="utf-8")
    return crate


def circles(files: dict[str, str]) -> list[str]:
    with tempfile.TemporaryDirectory() as tmp:
        crate = write_crate(Path(tmp), files)
        return checker.circles_in(crate, crate / "src/lib.rs")


class Circles(unittest.TestCase):
    def test_a_layered_crate_has_no_circle(self):
        self.assertEqual(circles(LAYERED), [])

    def test_a_circle_between_two_files_is_reported_with_the_lines_that_import(self):
        files = dict(LAYERED)
        files["src/settings.rs"] = "use crate::run::everything;\npub struct Settings;\n"
        found = circles(files)
        # One chain through each module: plan's also passes through run and settings; report's is another.
        self.assertEqual(len(found), 2, found)
        self.assertEqual(
            found[0].splitlines()[0], "demo (src/lib.rs): circle plan -> settings -> run -> plan"
        )
        self.assertEqual(
            found[1].splitlines()[0], "demo (src/lib.rs): circle report -> settings -> run -> report"
        )
        self.assertIn("  plan -> settings  src/plan/mod.rs:3  crate::settings::Settings", found[0])
        self.assertIn("  settings -> run  src/settings.rs:1  crate::run::everything", found[0])
        self.assertIn("  run -> plan  src/run.rs:1  crate::plan::Plan", found[0])
        self.assertIn("(part of the circle of plan, report, run, settings)", found[0])

    def test_an_import_from_a_child_module_counts_for_its_top_level_module(self):
        files = dict(LAYERED)
        files["src/settings.rs"] = "pub struct Settings;\npub fn f() { super::plan::steps::Step; }\n"
        found = circles(files)
        self.assertEqual(len(found), 1, found)
        self.assertIn("circle plan -> settings -> plan", found[0])
        self.assertIn("settings -> plan  src/settings.rs:2  super::plan::steps::Step", found[0])

    def test_a_circle_between_siblings_below_the_top_level_is_reported(self):
        files = dict(LAYERED)
        files["src/plan/mod.rs"] = "mod steps;\nmod order;\npub struct Plan;\n"
        files["src/plan/steps.rs"] = "use super::order::Order;\npub struct Step;\n"
        files["src/plan/order.rs"] = "pub struct Order(super::steps::Step);\n"
        found = circles(files)
        self.assertEqual(len(found), 1, found)
        self.assertIn("circle plan::order -> plan::steps -> plan::order", found[0])

    def test_modules_declared_for_tests_only_are_left_out(self):
        files = dict(LAYERED)
        files["src/settings.rs"] = "pub struct Settings;\n#[cfg(test)]\nmod tests;\n"
        files["src/settings/tests.rs"] = "use crate::run::everything;\n"
        self.assertEqual(circles(files), [])

    def test_inline_modules_are_modules_of_their_own(self):
        files = dict(LAYERED)
        files["src/settings.rs"] = textwrap.dedent(
            """\
            pub struct Settings;
            pub mod defaults {
                pub fn from_run() { crate::run::everything(todo!()) }
            }
            """
        )
        found = circles(files)
        self.assertEqual(len(found), 2, found)
        self.assertIn("settings -> run  src/settings.rs:3  crate::run::everything", found[0])


    def test_a_module_file_named_by_a_path_attribute_is_read(self):
        files = dict(LAYERED)
        files["src/lib.rs"] = LAYERED["src/lib.rs"] + '#[path = "../shared/helpers.rs"]\nmod helpers;\n'
        files["shared/helpers.rs"] = "pub fn help() { crate::run::everything(todo!()) }\n"
        self.assertEqual(circles(files), [])
        files["src/run.rs"] = LAYERED["src/run.rs"] + "fn more() { crate::helpers::help() }\n"
        found = circles(files)
        self.assertEqual(len(found), 1, found)
        self.assertIn("circle helpers -> run -> helpers", found[0])
        self.assertIn("helpers -> run  shared/helpers.rs:1  crate::run::everything", found[0])


class Blanking(unittest.TestCase):
    def test_comments_strings_and_chars_are_blanked_and_lifetimes_kept(self):
        source = 'fn f<\'a>(x: &\'a str) { let c = \'"\'; /* crate::a /* nested */ */ "crate::b"; r#"crate::c"#; }\n// crate::d\n'
        blanked = checker.blank_non_code(source)
        self.assertEqual(len(blanked), len(source))
        self.assertNotIn("crate::", blanked)
        self.assertIn("fn f<'a>(x: &'a str)", blanked)

    def test_use_trees_expand(self):
        self.assertEqual(
            checker.expand_use_tree("crate::{a::X, b::{self, Y}}"),
            ["crate::a::X", "crate::b::self", "crate::b::Y"],
        )


class CommandLine(unittest.TestCase):
    def run_script(self, files: dict[str, str]) -> subprocess.CompletedProcess:
        with tempfile.TemporaryDirectory() as tmp:
            crate = write_crate(Path(tmp), files)
            (Path(tmp) / "Cargo.toml").write_text('[workspace]\nmembers = ["demo"]\n', encoding="utf-8")
            return subprocess.run(
                [sys.executable, str(SCRIPT), "--root", tmp], capture_output=True, text=True, check=False
            )

    def test_exit_status_is_zero_without_a_circle(self):
        result = self.run_script(LAYERED)
        self.assertEqual(result.returncode, 0, result.stdout + result.stderr)
        self.assertEqual(result.stdout, "")
        self.assertIn("0 circle(s) in 1 crate root(s) of demo", result.stderr)

    def test_exit_status_is_one_with_a_circle(self):
        files = dict(LAYERED)
        files["src/settings.rs"] = "use crate::{report::write as emit, run};\n"
        result = self.run_script(files)
        self.assertEqual(result.returncode, 1, result.stdout + result.stderr)
        self.assertIn("demo (src/lib.rs): circle report -> settings -> report", result.stdout)

    def test_integration_tests_of_several_files_are_checked_too(self):
        files = dict(LAYERED)
        files["tests/suite/main.rs"] = "mod cases;\nmod fixtures;\n"
        files["tests/suite/cases.rs"] = "use crate::fixtures::Fixture;\n"
        files["tests/suite/fixtures.rs"] = "pub struct Fixture(crate::cases::Case);\n"
        result = self.run_script(files)
        self.assertEqual(result.returncode, 1, result.stdout + result.stderr)
        self.assertIn("demo (tests/suite/main.rs): circle cases -> fixtures -> cases", result.stdout)

    def test_an_unreadable_workspace_exits_two(self):
        stderr = io.StringIO()
        with tempfile.TemporaryDirectory() as tmp, contextlib.redirect_stderr(stderr):
            self.assertEqual(checker.main(["--root", tmp]), 2)
        self.assertIn("cannot read the workspace", stderr.getvalue())


if __name__ == "__main__":
    unittest.main()
