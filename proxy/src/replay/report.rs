//! A replay's outcome for people (the summary on stdout), for scripts (`--report`, JSON) and for CI
//! (`--junit`, JUnit XML: one test case per exchange, a failure per differing answer).

use std::fmt::Write as _;

use super::run::{Outcome, ReplayedExchange};

/// One line per exchange (its differences under it), then the totals and the learned noise.
pub fn summary(outcome: &Outcome) -> String {
    let mut out = String::new();
    for exchange in &outcome.exchanges {
        let latency = match exchange.replayed_ms {
            Some(now) => format!("{:.1} ms then, {now:.1} ms now", exchange.recorded_ms),
            None => format!("{:.1} ms then", exchange.recorded_ms),
        };
        let _ = writeln!(
            out,
            "{:<8} record {:<6} {} {}  ({latency})",
            exchange.outcome, exchange.record, exchange.method, exchange.path
        );
        if let Some(error) = &exchange.error {
            let _ = writeln!(out, "    {error}");
        }
        for difference in &exchange.differences {
            let _ = writeln!(
                out,
                "    {}: recorded {}, now {}",
                difference.field, difference.recorded, difference.actual
            );
        }
    }
    let _ = writeln!(
        out,
        "replayed {} exchange{} to {}: {} matched, {} differed, {} failed{}",
        outcome.replayed,
        if outcome.replayed == 1 { "" } else { "s" },
        outcome.target,
        outcome.matched,
        outcome.differed,
        outcome.failed,
        match outcome.skipped {
            0 => String::new(),
            n => format!(" ({n} recorded without a response or upgraded, not replayed)"),
        }
    );
    if !outcome.learned_noise.is_empty() {
        let _ = writeln!(
            out,
            "not compared, because they already differ between repeats in the capture:"
        );
        for learned in &outcome.learned_noise {
            let _ = writeln!(out, "    {}: {}", learned.endpoint, learned.field);
        }
    }
    out
}

/// The outcome as one JSON document.
pub fn json(outcome: &Outcome) -> String {
    serde_json::to_string_pretty(outcome).expect("the outcome is plain data") + "\n"
}

/// The outcome as a JUnit XML test suite.
pub fn junit(outcome: &Outcome) -> String {
    let mut out = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    let _ = writeln!(
        out,
        "<testsuite name=\"sidecar-proxy replay {}\" tests=\"{}\" failures=\"{}\" errors=\"{}\" time=\"{:.3}\">",
        escape(&outcome.target),
        outcome.replayed,
        outcome.differed,
        outcome.failed,
        outcome.elapsed_ms / 1000.0
    );
    for exchange in &outcome.exchanges {
        let _ = write!(
            out,
            "  <testcase classname=\"replay\" name=\"{}\" time=\"{:.3}\"",
            escape(&case_name(exchange)),
            exchange.replayed_ms.unwrap_or(0.0) / 1000.0
        );
        match exchange.outcome {
            "matched" => out.push_str("/>\n"),
            "differed" => {
                let details: Vec<String> = exchange
                    .differences
                    .iter()
                    .map(|d| format!("{}: recorded {}, now {}", d.field, d.recorded, d.actual))
                    .collect();
                let fields: Vec<&str> = exchange
                    .differences
                    .iter()
                    .map(|d| d.field.as_str())
                    .collect();
                let _ = write!(
                    out,
                    ">\n    <failure message=\"differs in {}\">{}</failure>\n  </testcase>\n",
                    escape(&fields.join(", ")),
                    escape(&details.join("\n"))
                );
            }
            _ => {
                let _ = write!(
                    out,
                    ">\n    <error message=\"{}\"/>\n  </testcase>\n",
                    escape(exchange.error.as_deref().unwrap_or("failed"))
                );
            }
        }
    }
    out.push_str("</testsuite>\n");
    out
}

fn case_name(exchange: &ReplayedExchange) -> String {
    format!(
        "{} {} (record {})",
        exchange.method, exchange.path, exchange.record
    )
}

fn escape(text: &str) -> String {
    let mut escaped = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => escaped.push_str("&amp;"),
            '<' => escaped.push_str("&lt;"),
            '>' => escaped.push_str("&gt;"),
            '"' => escaped.push_str("&quot;"),
            '\'' => escaped.push_str("&apos;"),
            // XML 1.0 allows no other control characters, even escaped.
            c if c.is_control() && !matches!(c, '\n' | '\t' | '\r') => escaped.push('\u{fffd}'),
            c => escaped.push(c),
        }
    }
    escaped
}
