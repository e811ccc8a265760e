//! clap's own errors (a value its parser refused, an unknown flag) quote the value whole: a 100 KB flag or
//! environment value came back whole on the terminal or in the container's log. [`exit`] prints them with
//! such a value cut to its beginning and its length, as the configuration's own errors quote one
//! ([`crate::config::Quoted`]).

use std::ffi::OsString;

use clap::error::{ContextKind, ContextValue, ErrorKind};

use crate::config::{excerpt, QUOTE_LIMIT};

/// Prints `error` as clap would, with every value it quotes that is longer than [`QUOTE_LIMIT`] cut to its
/// beginning, then exits with clap's status (2 for a bad value; 0 after `--help`).
pub fn exit(error: clap::Error) -> ! {
    let long_values: Vec<String> = [ContextKind::InvalidValue, ContextKind::InvalidArg]
        .into_iter()
        .filter_map(|kind| match error.get(kind) {
            Some(ContextValue::String(value)) if value.len() > QUOTE_LIMIT => Some(value.clone()),
            _ => None,
        })
        .collect();
    if long_values.is_empty() {
        error.exit()
    }
    eprint!("{}", shortened(&error.render().to_string(), &long_values));
    std::process::exit(error.exit_code())
}

/// clap names the flag when it refuses a value that came from the flag's environment variable
/// (`PROXY_CAPTURE_PAYLOAD=1` → "invalid value '1' for '--capture-payload <BOOL>'"), sending the user to look
/// for a flag nobody passed. When the flag is not among `args` and its variable is set, the message names
/// the variable instead, the flag beside it.
pub(super) fn naming_the_variable(
    error: clap::Error,
    command: &clap::Command,
    args: &[OsString],
) -> clap::Error {
    if !matches!(
        error.kind(),
        ErrorKind::InvalidValue | ErrorKind::ValueValidation
    ) {
        return error;
    }
    let Some(ContextValue::String(shown)) = error.get(ContextKind::InvalidArg) else {
        return error;
    };
    let Some(arg) = command.get_arguments().find(|arg| {
        arg.get_long().is_some_and(|long| {
            shown
                .strip_prefix("--")
                .and_then(|rest| rest.strip_prefix(long))
                .is_some_and(|after| after.is_empty() || after.starts_with(' '))
        })
    }) else {
        return error;
    };
    let (Some(long), Some(variable)) = (arg.get_long(), arg.get_env()) else {
        return error;
    };
    let flag = format!("--{long}");
    let passed = args.iter().skip(1).any(|a| {
        let a = a.to_string_lossy();
        a == flag || a.starts_with(&format!("{flag}="))
    });
    if passed || std::env::var_os(variable).is_none() {
        return error;
    }
    let variable = variable.to_string_lossy();
    let rendered = error.render().to_string();
    let message = rendered
        .strip_prefix("error: ")
        .unwrap_or(&rendered)
        .replacen(
            &format!("for '{shown}'"),
            &format!("in environment variable {variable} (the variable of '{shown}')"),
            1,
        );
    let long_values: Vec<String> = match error.get(ContextKind::InvalidValue) {
        Some(ContextValue::String(value)) if value.len() > QUOTE_LIMIT => vec![value.clone()],
        _ => Vec::new(),
    };
    clap::Error::raw(error.kind(), shortened(&message, &long_values)).with_cmd(command)
}

/// `--port` is the flag newcomers guess first, and clap's nearest match for it is `--proxy-type`: the tip
/// names the two port settings they meant instead.
pub(super) fn with_port_tip(error: clap::Error, command: &clap::Command) -> clap::Error {
    let unknown_port = error.kind() == ErrorKind::UnknownArgument
        && matches!(
            error.get(ContextKind::InvalidArg),
            Some(ContextValue::String(arg)) if arg == "--port" || arg.starts_with("--port=")
        );
    if !unknown_port {
        return error;
    }
    let rendered = error.render().to_string();
    let Some((before, after)) = rendered.split_once("  tip: ") else {
        return error;
    };
    let after = after.split_once('\n').map_or("", |(_, rest)| rest);
    let message = format!(
        "{}  tip: the app's port is --proxy-port (PROXY_PORT); the ports the sidecar listens on are \
         --proxy-in-port and --proxy-out-port\n{after}",
        before.strip_prefix("error: ").unwrap_or(before)
    );
    clap::Error::raw(ErrorKind::UnknownArgument, message).with_cmd(command)
}

/// `message` with each of `values` replaced by its [`excerpt`].
fn shortened(message: &str, values: &[String]) -> String {
    values.iter().fold(message.to_owned(), |message, value| {
        message.replace(value.as_str(), &excerpt(value))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_long_value_is_cut_wherever_the_message_quotes_it() {
        let value = "x".repeat(100_000);
        let message = format!("error: invalid value '{value}' for '--flag <N>': {value} is bad\n");
        let shown = shortened(&message, std::slice::from_ref(&value));
        let cut = format!("{}… (100000 bytes in all)", "x".repeat(QUOTE_LIMIT));
        assert_eq!(
            shown,
            format!("error: invalid value '{cut}' for '--flag <N>': {cut} is bad\n")
        );
    }
}
