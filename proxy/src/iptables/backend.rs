//! Which iptables to run: iptables-legacy or iptables-nft.
//!
//! Both talk to the same kernel but keep separate rule sets, and both sets are evaluated: rules added with
//! the other backend than the one the node (or the CNI plugin, or another mesh's init container) uses work,
//! but stay invisible to that side's tools and are ordered against its rules by hook priority rather than
//! by position. linkerd2-proxy-init makes the operator pick (`--iptables-mode legacy|nft|plain`, from a
//! Helm value); Kubernetes' iptables-wrappers guess by counting the rules each `*-save` shows. `legacy`
//! and `nft` here are the former, `auto` is the latter: whichever of
//! iptables-legacy-save and iptables-nft-save already shows rules in this namespace wins (legacy only when
//! it shows more), and with none anywhere the system's own `iptables` (its update-alternatives choice)
//! decides. A re-run finds our own rules and so stays on the backend of the first run.

use super::exec::Runner;

/// The `--iptables-backend` flag.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum BackendChoice {
    /// Whichever backend already holds rules in this namespace, else the system's `iptables`
    Auto,
    /// iptables-legacy / ip6tables-legacy (x_tables)
    Legacy,
    /// iptables-nft / ip6tables-nft (nf_tables)
    Nft,
}

/// The binaries to run, and why they were chosen.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Backend {
    pub iptables: &'static str,
    pub ip6tables: &'static str,
    /// For the dry-run header and the summary line.
    pub reason: String,
}

const LEGACY: (&str, &str) = ("iptables-legacy", "ip6tables-legacy");
const NFT: (&str, &str) = ("iptables-nft", "ip6tables-nft");
const SYSTEM: (&str, &str) = ("iptables", "ip6tables");

impl Backend {
    fn of((iptables, ip6tables): (&'static str, &'static str), reason: String) -> Backend {
        Backend {
            iptables,
            ip6tables,
            reason,
        }
    }
}

/// Chooses the backend; `auto` only reads (runs the `*-save` tools).
pub fn select(choice: BackendChoice, runner: &mut dyn Runner) -> Backend {
    match choice {
        BackendChoice::Legacy => Backend::of(LEGACY, "legacy (--iptables-backend)".into()),
        BackendChoice::Nft => Backend::of(NFT, "nft (--iptables-backend)".into()),
        BackendChoice::Auto => {
            let legacy = rule_count(runner, &["iptables-legacy-save", "ip6tables-legacy-save"]);
            let nft = rule_count(runner, &["iptables-nft-save", "ip6tables-nft-save"]);
            let seen =
                format!("iptables-legacy-save shows {legacy} rules, iptables-nft-save {nft}");
            if legacy > nft {
                Backend::of(LEGACY, format!("legacy (auto: {seen})"))
            } else if nft > 0 {
                Backend::of(NFT, format!("nft (auto: {seen})"))
            } else {
                Backend::of(
                    SYSTEM,
                    "the system's iptables (auto: no rules yet in either backend)".into(),
                )
            }
        }
    }
}

/// Rules (`-A` lines) the save tools print, over every table; a missing tool counts none.
fn rule_count(runner: &mut dyn Runner, tools: &[&str]) -> usize {
    tools
        .iter()
        .filter_map(|tool| runner.run(tool, &[]).ok())
        .filter(|ran| ran.success)
        .map(|ran| ran.stdout.lines().filter(|l| l.starts_with("-A ")).count())
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::iptables::exec::Ran;

    /// Save tools that print `n` rules each; missing ones are not installed.
    struct Saves(Vec<(&'static str, usize)>);

    impl Runner for Saves {
        fn run(&mut self, binary: &str, _args: &[String]) -> std::io::Result<Ran> {
            let (_, rules) = self
                .0
                .iter()
                .find(|(name, _)| *name == binary)
                .ok_or_else(|| std::io::Error::from(std::io::ErrorKind::NotFound))?;
            Ok(Ran {
                success: true,
                status: "exit status: 0".into(),
                stdout: "*nat\n:PREROUTING ACCEPT [0:0]\n".to_owned()
                    + &"-A PREROUTING -j X\n".repeat(*rules)
                    + "COMMIT\n",
                stderr: String::new(),
            })
        }
    }

    fn auto(saves: Vec<(&'static str, usize)>) -> &'static str {
        select(BackendChoice::Auto, &mut Saves(saves)).iptables
    }

    #[test]
    fn auto_follows_the_rules_already_there() {
        assert_eq!(
            auto(vec![("iptables-legacy-save", 3), ("iptables-nft-save", 0)]),
            "iptables-legacy"
        );
        assert_eq!(
            auto(vec![("iptables-legacy-save", 0), ("ip6tables-nft-save", 2)]),
            "iptables-nft"
        );
        assert_eq!(
            auto(vec![("iptables-legacy-save", 2), ("iptables-nft-save", 2)]),
            "iptables-nft"
        );
    }

    #[test]
    fn auto_without_rules_or_tools_uses_the_system_iptables() {
        assert_eq!(auto(vec![("iptables-nft-save", 0)]), "iptables");
        assert_eq!(auto(vec![]), "iptables");
    }

    #[test]
    fn an_explicit_choice_runs_nothing() {
        let backend = select(BackendChoice::Legacy, &mut Saves(vec![]));
        assert_eq!(
            (backend.iptables, backend.ip6tables),
            ("iptables-legacy", "ip6tables-legacy")
        );
    }
}
