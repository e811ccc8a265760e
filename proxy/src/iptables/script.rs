//! A rule set as the iptables commands that converge a namespace on it, and those commands as shell text.
//!
//! Each step is one command, optionally guarded by a check that makes it unnecessary: a chain is created
//! only if listing it fails, a jump is appended only if `-C` does not find it. Our chains are flushed and
//! refilled every time, so a re-run, with the same settings or new ones, ends with exactly one copy of
//! each rule. `--dry-run` prints these steps as shell lines (`check || command`), which is also what
//! running them means.

use super::rules::{RuleSet, TABLE};

/// One command (the arguments after the iptables binary), skipped when `unless` succeeds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Step {
    pub unless: Option<Vec<String>>,
    pub run: Vec<String>,
}

/// The steps, in order: create missing chains, flush them, append their rules, add missing jumps.
pub fn steps(rules: &RuleSet) -> Vec<Step> {
    let mut steps = Vec::new();
    for chain in &rules.chains {
        steps.push(Step {
            unless: Some(args(&["-S", chain])),
            run: args(&["-N", chain]),
        });
    }
    for chain in &rules.chains {
        steps.push(Step {
            unless: None,
            run: args(&["-F", chain]),
        });
    }
    for rule in &rules.rules {
        steps.push(Step {
            unless: None,
            run: rule_args("-A", rule.chain, &rule.spec),
        });
    }
    for jump in &rules.jumps {
        steps.push(Step {
            unless: Some(rule_args("-C", jump.chain, &jump.spec)),
            run: rule_args("-A", jump.chain, &jump.spec),
        });
    }
    steps
}

/// The steps as shell lines for `binary`, one per step.
pub fn render(steps: &[Step], binary: &str) -> String {
    let mut out = String::new();
    for step in steps {
        if let Some(check) = &step.unless {
            out.push_str(&command_line(binary, check));
            out.push_str(" >/dev/null 2>&1 || ");
        }
        out.push_str(&command_line(binary, &step.run));
        out.push('\n');
    }
    out
}

/// A command as a shell line: arguments quoted only where the shell needs it.
pub fn command_line(binary: &str, args: &[String]) -> String {
    std::iter::once(binary)
        .chain(args.iter().map(String::as_str))
        .map(shell_quote)
        .collect::<Vec<_>>()
        .join(" ")
}

fn shell_quote(word: &str) -> String {
    let plain = !word.is_empty()
        && word
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_./:=,+@%".contains(&b));
    if plain {
        word.to_owned()
    } else {
        format!("'{}'", word.replace('\'', r"'\''"))
    }
}

fn args(rest: &[&str]) -> Vec<String> {
    ["-t", TABLE]
        .iter()
        .chain(rest)
        .map(|s| (*s).to_owned())
        .collect()
}

fn rule_args(op: &str, chain: &str, spec: &[String]) -> Vec<String> {
    let mut all = args(&[op, chain]);
    all.extend(spec.iter().cloned());
    all
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quotes_only_what_the_shell_would_split() {
        assert_eq!(shell_quote("--dport"), "--dport");
        assert_eq!(shell_quote("8000:8100"), "8000:8100");
        assert_eq!(shell_quote("a b"), "'a b'");
        assert_eq!(shell_quote("it's"), r"'it'\''s'");
        assert_eq!(shell_quote(""), "''");
    }
}
