//! Gathering the spec's settings with where each came from: flags and their environment variables (as
//! clap reports them), then the downward-API annotations file. Shared by the proxy's run flags and
//! `init-iptables`, which read the same settings and must name a bad value the same way.

use std::path::Path;

use clap::parser::ValueSource;
use clap::ArgMatches;

use super::InvocationError;
use crate::config::{parse_annotations_file, RawSettings, Setting, Source};

/// The settings among `fields` (setting, clap argument id, parsed value) that were given, each with its
/// source, so that a message about a bad value names it as written (`--proxy-port` or `PROXY_PORT`).
pub(crate) fn settings_from_flags_and_env<'a>(
    matches: &ArgMatches,
    fields: impl IntoIterator<Item = (Setting, &'a str, &'a Option<String>)>,
) -> RawSettings {
    let mut settings = RawSettings::default();
    for (setting, id, value) in fields {
        if let Some(value) = value {
            let source = match matches.value_source(id) {
                Some(ValueSource::EnvVariable) => Source::Env,
                _ => Source::Flag,
            };
            settings.offer(setting, value.clone(), source);
        }
    }
    settings
}

/// `explicit` (flags and environment) with the annotations file, if any, filling what they left unset.
pub(crate) fn with_annotations_file(
    explicit: &RawSettings,
    annotations: Option<&Path>,
) -> Result<RawSettings, InvocationError> {
    let mut settings = explicit.clone();
    if let Some(path) = annotations {
        let text =
            std::fs::read_to_string(path).map_err(|source| InvocationError::ReadAnnotations {
                path: path.to_path_buf(),
                source,
            })?;
        let from_file =
            parse_annotations_file(&text).map_err(|source| InvocationError::Annotations {
                path: path.to_path_buf(),
                source,
            })?;
        settings.merge(&from_file);
    }
    Ok(settings)
}
