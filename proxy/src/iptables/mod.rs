//! Transparent mode's iptables setup (`sidecar-proxy init-iptables`), split by concern:
//!
//! - [`rules`]: settings → the nat-table rule set (pure);
//! - [`script`]: the rule set → idempotent iptables commands, and those as shell lines (pure);
//! - [`backend`]: iptables-legacy or iptables-nft;
//! - [`apply`]: running the commands, naming the one that failed;
//! - [`exec`]: the process runner; [`command`]: the subcommand's flags and flow.

pub mod apply;
pub mod backend;
pub mod command;
pub mod exec;
pub mod rules;
pub mod script;

pub use backend::BackendChoice;
pub use command::InitIptablesArgs;
pub use rules::{RuleInputs, RuleSet};
