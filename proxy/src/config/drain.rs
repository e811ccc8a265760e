//! The drain at shutdown: how long, after SIGTERM, the listeners keep serving new connections while the
//! pod leaves its Services' endpoints. A setting like the spec's (flag, variable, annotation), so a pod
//! sets it with `sidecar.speedscale.com/drain-duration` and the injector refuses a bad value up front.

use std::time::Duration;

use super::error::ConfigError;
use super::settings::{RawSettings, Setting};
use super::validate::source_of;

/// Endpoint removal reaches kube-proxy and the other pods' load balancers within a few seconds in most
/// clusters; 5 s is what istio waits (`terminationDrainDuration`) and fits in Kubernetes' default 30 s
/// termination grace period with the sidecar's own shutdown grace after it.
pub const DEFAULT_DRAIN_DURATION: Duration = Duration::from_secs(5);
/// Far beyond any sensible drain: a pod is killed after its termination grace period anyway.
pub const MAX_DRAIN_DURATION: Duration = Duration::from_secs(3600);

/// `drain-duration` (default [`DEFAULT_DRAIN_DURATION`]): a duration like `5s` or `500ms`, `0s` for none.
pub fn drain_duration(raw: &RawSettings) -> Result<Duration, ConfigError> {
    let (value, setting) = source_of(raw, Setting::DrainDuration);
    let Some(value) = value else {
        return Ok(DEFAULT_DRAIN_DURATION);
    };
    parse_shutdown_duration(value).ok_or_else(|| ConfigError::InvalidDrainDuration {
        setting,
        value: value.to_owned(),
    })
}

/// A duration of the shutdown sequence (the drain, the classic layout's preStop wait): `5s`, `500ms`,
/// `1m`, from zero to [`MAX_DRAIN_DURATION`].
pub fn parse_shutdown_duration(text: &str) -> Option<Duration> {
    humantime::parse_duration(text.trim())
        .ok()
        .filter(|duration| *duration <= MAX_DRAIN_DURATION)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Source;

    fn with(value: &str, source: Source) -> Result<Duration, ConfigError> {
        let mut raw = RawSettings::default();
        raw.offer(Setting::DrainDuration, value, source);
        drain_duration(&raw)
    }

    #[test]
    fn absent_is_five_seconds_and_zero_is_allowed() {
        assert_eq!(
            drain_duration(&RawSettings::default()),
            Ok(Duration::from_secs(5))
        );
        assert_eq!(with("0s", Source::Flag), Ok(Duration::ZERO));
        assert_eq!(with(" 1m ", Source::Env), Ok(Duration::from_secs(60)));
        assert_eq!(
            with("250ms", Source::Annotation),
            Ok(Duration::from_millis(250))
        );
    }

    #[test]
    fn a_bad_value_names_the_setting_as_written() {
        assert_eq!(
            with("5", Source::Annotation).unwrap_err().to_string(),
            "invalid sidecar.speedscale.com/drain-duration \"5\": allowed values are durations from 0s to 1h, like 5s, 500ms or 1m (0s closes the listeners at once)"
        );
        assert!(with("2h", Source::Env)
            .unwrap_err()
            .to_string()
            .starts_with("invalid PROXY_DRAIN_DURATION \"2h\""));
        assert!(with("-1s", Source::Flag)
            .unwrap_err()
            .to_string()
            .starts_with("invalid --drain-duration \"-1s\""));
    }
}
