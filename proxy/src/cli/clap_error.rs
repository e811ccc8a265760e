//! clap's own errors (a value its parser refused, an unknown flag) quote the value whole: a 100 KB flag or
//! environment value came back whole on the terminal or in the container's log. [`exit`] prints them with
//! such a value cut to its beginning and its length, as the configuration's own errors quote one
//! ([`crate::config::Quoted`]).

use clap::error::{ContextKind, ContextValue};

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
