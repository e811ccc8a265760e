//! Gathering the spec's settings with where each came from: flags and their environment variables (as
//! clap reports them), then the downward-API annotations file. Shared by the proxy's run flags ([`crate::cli`])
//! and `init-iptables` ([`crate::iptables`]), which read the same settings and must name a bad value the same
//! way. (Not in [`crate::config`], which stays free of I/O so the injector can reuse it.)

use std::path::{Path, PathBuf};

use clap::parser::ValueSource;
use clap::ArgMatches;

use crate::config::{parse_annotations_file, AnnotationsFileError, RawSettings, Setting, Source};

/// Why the annotations file could not give its settings.
#[derive(Debug, thiserror::Error)]
pub enum AnnotationsError {
    #[error("cannot read annotations file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: {source}")]
    Parse {
        path: PathBuf,
        source: AnnotationsFileError,
    },
}

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
) -> Result<RawSettings, AnnotationsError> {
    let mut settings = explicit.clone();
    if let Some(path) = annotations {
        let text = std::fs::read_to_string(path).map_err(|source| AnnotationsError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        let from_file =
            parse_annotations_file(&text).map_err(|source| AnnotationsError::Parse {
                path: path.to_path_buf(),
                source,
            })?;
        settings.merge(&from_file);
    }
    Ok(settings)
}
