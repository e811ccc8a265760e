//! Running the steps against one iptables binary, stopping at the first command that fails.

use super::exec::{one_line, Runner};
use super::rules::TABLE;
use super::script::{command_line, Step};

/// A command that failed: the exact command line, how it ended, and what iptables said.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ApplyError {
    #[error("`{command}` failed ({status}): {stderr}")]
    Failed {
        command: String,
        status: String,
        stderr: String,
    },
    #[error("cannot run `{command}`: {reason}")]
    NotStarted { command: String, reason: String },
}

/// Runs every step with `binary`. Returns how many commands changed something (checks not counted).
pub fn apply(steps: &[Step], binary: &str, runner: &mut dyn Runner) -> Result<usize, ApplyError> {
    let mut changed = 0;
    for step in steps {
        if let Some(check) = &step.unless {
            // A check that fails means "not there yet"; if it failed for another reason, the command
            // that follows fails too and reports it.
            if run(runner, binary, check).is_ok() {
                continue;
            }
        }
        run(runner, binary, &step.run)?;
        changed += 1;
    }
    Ok(changed)
}

/// Whether `binary` can work on the nat table here (an IPv6-less kernel or a missing binary cannot).
pub fn usable(binary: &str, runner: &mut dyn Runner) -> Result<(), ApplyError> {
    run(
        runner,
        binary,
        &["-t".to_owned(), TABLE.to_owned(), "-S".to_owned()],
    )
    .map(drop)
}

fn run(runner: &mut dyn Runner, binary: &str, args: &[String]) -> Result<(), ApplyError> {
    let command = command_line(binary, args);
    match runner.run(binary, args) {
        Ok(ran) if ran.success => Ok(()),
        Ok(ran) => Err(ApplyError::Failed {
            command,
            status: ran.status,
            stderr: match one_line(&ran.stderr) {
                text if text.is_empty() => "no message".to_owned(),
                text => text,
            },
        }),
        Err(e) => Err(ApplyError::NotStarted {
            command,
            reason: e.to_string(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::iptables::exec::Ran;

    /// A pretend iptables: a set of lines that "exist"; `-S`/`-C` succeed for those, `-A` of a rule
    /// containing `fail-me` fails.
    #[derive(Default)]
    struct Fake {
        present: Vec<String>,
        ran: Vec<String>,
    }

    impl Runner for Fake {
        fn run(&mut self, binary: &str, args: &[String]) -> std::io::Result<Ran> {
            let line = command_line(binary, args);
            self.ran.push(line.clone());
            let key = args[3..].join(" ");
            let success = match args[2].as_str() {
                "-S" | "-C" => self.present.contains(&key),
                _ => !line.contains("fail-me"),
            };
            Ok(Ran {
                success,
                status: if success {
                    "exit status: 0"
                } else {
                    "exit status: 1"
                }
                .into(),
                stdout: String::new(),
                stderr: if success {
                    String::new()
                } else {
                    "iptables v1.8.9 (nf_tables): bad rule\nTry `iptables -h'\n".into()
                },
            })
        }
    }

    fn step(unless: Option<&[&str]>, run: &[&str]) -> Step {
        let owned = |a: &[&str]| a.iter().map(|s| (*s).to_owned()).collect();
        Step {
            unless: unless.map(owned),
            run: owned(run),
        }
    }

    #[test]
    fn guarded_commands_are_skipped_when_the_check_succeeds() {
        let mut fake = Fake {
            present: vec!["X".into()],
            ..Fake::default()
        };
        let steps = [
            step(Some(&["-t", "nat", "-S", "X"]), &["-t", "nat", "-N", "X"]),
            step(Some(&["-t", "nat", "-S", "Y"]), &["-t", "nat", "-N", "Y"]),
            step(None, &["-t", "nat", "-F", "X"]),
        ];
        assert_eq!(apply(&steps, "iptables", &mut fake), Ok(2));
        assert_eq!(
            fake.ran,
            [
                "iptables -t nat -S X",
                "iptables -t nat -S Y",
                "iptables -t nat -N Y",
                "iptables -t nat -F X"
            ]
        );
    }

    #[test]
    fn a_failure_names_the_command_and_quotes_iptables() {
        let mut fake = Fake::default();
        let steps = [
            step(None, &["-t", "nat", "-A", "X", "--comment", "fail-me now"]),
            step(None, &["-t", "nat", "-F", "X"]),
        ];
        let err = apply(&steps, "iptables", &mut fake).unwrap_err();
        assert_eq!(
            err.to_string(),
            "`iptables -t nat -A X --comment 'fail-me now'` failed (exit status: 1): iptables v1.8.9 (nf_tables): bad rule; Try `iptables -h'"
        );
        assert_eq!(fake.ran.len(), 1, "nothing runs after a failure");
    }
}
