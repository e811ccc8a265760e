//! The capture `emptyDir`'s size and the sidecar's capture rotation, chosen together so the files always
//! fit: the kubelet evicts a pod whose `emptyDir` grows past its `sizeLimit`, and a volume without one
//! fills the node's disk instead.
//!
//! The sidecar keeps the current file and `keep` rotated ones, each starting anew once it reaches the
//! rotation size; a file can pass that size by the batch and the record being written when it got there
//! (under [`RECORD_HEADROOM`] with the sidecar's 1 MiB body limit). So `(keep + 1) × (rotate size +
//! headroom)` must fit in the limit. By default the limit is [`DEFAULT_SIZE_LIMIT`], five files are kept,
//! and the rotation size is three quarters of the limit shared among the files (128 MiB each for 1Gi),
//! leaving the last quarter as slack. Annotations change each; a combination that does not fit is refused
//! with what would.

use std::collections::BTreeMap;

use crate::annotations::{
    quantity_value, AnnotationError, CAPTURE_ROTATE_KEEP, CAPTURE_ROTATE_SIZE, CAPTURE_SIZE_LIMIT,
};
use crate::denial::Denial;
use sidecar_proxy::config::Quoted;

/// The capture volume's `sizeLimit` unless `capture-size-limit` says otherwise.
pub const DEFAULT_SIZE_LIMIT: &str = "1Gi";
/// Rotated files kept unless `capture-rotate-keep` says otherwise (the sidecar's own default).
pub const DEFAULT_KEEP: usize = 5;
/// The most rotated files an annotation may ask for.
pub const MAX_KEEP: usize = 100;
/// Room left above the rotation size for each file: one write batch (64 KiB) and one record (two bodies
/// of at most 1 MiB each, base64, with their heads).
pub const RECORD_HEADROOM: u64 = 4 * MIB;
/// The smallest rotation size: below it the headroom would dwarf the files.
pub const MIN_ROTATE_SIZE: u64 = MIB;

const MIB: u64 = 1024 * 1024;

/// The capture volume's limit and the sidecar's rotation, validated to fit together.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CapturePlan {
    /// The `emptyDir`'s `sizeLimit`, as written (a Kubernetes quantity).
    pub size_limit: String,
    /// The sidecar's `PROXY_CAPTURE_ROTATE_SIZE`, in bytes.
    pub rotate_size: u64,
    /// The sidecar's `PROXY_CAPTURE_ROTATE_KEEP`.
    pub keep: usize,
}

impl CapturePlan {
    /// The sidecar's environment for this rotation.
    pub fn sidecar_env(&self) -> [(&'static str, String); 2] {
        [
            ("PROXY_CAPTURE_ROTATE_SIZE", size_text(self.rotate_size)),
            ("PROXY_CAPTURE_ROTATE_KEEP", self.keep.to_string()),
        ]
    }
}

/// Reads and checks the capture annotations of a pod. `reserved`: bytes of the volume kept for something
/// else (the NATS sink's spool), which the files must leave free.
pub fn capture_plan(
    annotations: &BTreeMap<String, String>,
    reserved: u64,
) -> Result<CapturePlan, Denial> {
    let size_limit = annotations
        .get(CAPTURE_SIZE_LIMIT)
        .map_or(DEFAULT_SIZE_LIMIT, String::as_str);
    let limit_bytes = bytes(CAPTURE_SIZE_LIMIT, size_limit)?.saturating_sub(reserved);
    let keep = match annotations.get(CAPTURE_ROTATE_KEEP) {
        None => DEFAULT_KEEP,
        Some(text) => match text.trim().parse::<usize>() {
            Ok(keep) if (1..=MAX_KEEP).contains(&keep) => keep,
            _ => {
                return Err(Denial(format!(
                    "{CAPTURE_ROTATE_KEEP}: {} is not allowed; allowed: a whole number of rotated files from 1 to {MAX_KEEP}, like \"{DEFAULT_KEEP}\"",
                    Quoted(text)
                )))
            }
        },
    };
    let files = keep as u64 + 1;
    let share = limit_bytes / files;
    let rotate_size = match annotations.get(CAPTURE_ROTATE_SIZE) {
        Some(text) => {
            let rotate = bytes(CAPTURE_ROTATE_SIZE, text)?;
            // Each file at this size plus the headroom, times the files, within the limit.
            let largest = share.saturating_sub(RECORD_HEADROOM);
            if !(MIN_ROTATE_SIZE..=largest).contains(&rotate) {
                return Err(Denial(rotate_size_refused(
                    text, rotate, size_limit, keep, largest,
                )));
            }
            rotate
        }
        None => {
            // Three quarters of the limit shared among the files, in whole MiB; the last quarter is the
            // headroom, so each file's share must be at least four headrooms.
            let smallest_share = 4 * RECORD_HEADROOM;
            if share < smallest_share {
                // The volume must hold what is reserved (the NATS spool) besides the files.
                let spool = if reserved > 0 {
                    format!(" and the {} NATS spool", quantity_text(reserved))
                } else {
                    String::new()
                };
                return Err(Denial(format!(
                    "{CAPTURE_SIZE_LIMIT}: {} is too small for {files} capture files ({keep} rotated and the current one){spool}; allowed: at least {}, or fewer files with {CAPTURE_ROTATE_KEEP}",
                    Quoted(size_limit),
                    quantity_text(files * smallest_share + reserved)
                )));
            }
            limit_bytes / 4 * 3 / files / MIB * MIB
        }
    };
    Ok(CapturePlan {
        size_limit: size_limit.to_owned(),
        rotate_size,
        keep,
    })
}

/// A quantity annotation in bytes (rounded down), or the denial saying what a quantity is.
fn bytes(key: &str, text: &str) -> Result<u64, Denial> {
    match quantity_value(text) {
        // A quantity past u64 saturates; the size checks then refuse it.
        Some(value) => Ok(value.floor() as u64),
        None => Err(AnnotationError::NotAQuantity {
            key: key.to_owned(),
            value: text.to_owned(),
        }
        .into()),
    }
}

/// Why a `capture-rotate-size` of `bytes` (written `text`) is refused, `largest` being the most that fits.
fn rotate_size_refused(
    text: &str,
    bytes: u64,
    size_limit: &str,
    keep: usize,
    largest: u64,
) -> String {
    let files = keep + 1;
    let (rotate, size_limit) = (Quoted(text), Quoted(size_limit));
    if largest < MIN_ROTATE_SIZE {
        return format!(
            "{CAPTURE_ROTATE_SIZE}: {rotate} cannot fit: {CAPTURE_SIZE_LIMIT} {size_limit} is too small for {files} capture files ({keep} rotated and the current one) of at least 1Mi each, each with 4Mi of headroom; allowed: a larger {CAPTURE_SIZE_LIMIT} or a smaller {CAPTURE_ROTATE_KEEP}"
        );
    }
    let allowed = quantity_text(largest / MIB * MIB);
    if bytes < MIN_ROTATE_SIZE {
        return format!(
            "{CAPTURE_ROTATE_SIZE}: {rotate} is too small: each new file would hold little more than the record that started it; allowed: from 1Mi to {allowed}"
        );
    }
    format!(
        "{CAPTURE_ROTATE_SIZE}: {rotate} does not fit: {files} capture files ({keep} rotated and the current one) of that size, each with 4Mi of headroom for the record being written, would pass {CAPTURE_SIZE_LIMIT} {size_limit}, and the kubelet evicts a pod whose volume does; allowed: from 1Mi to {allowed}"
    )
}

/// A size as the sidecar's flags write it: `128MiB` when whole MiB, else bytes.
fn size_text(bytes: u64) -> String {
    if bytes.is_multiple_of(MIB) {
        format!("{}MiB", bytes / MIB)
    } else {
        bytes.to_string()
    }
}

/// A size as a Kubernetes quantity: `128Mi` when whole MiB, else bytes.
fn quantity_text(bytes: u64) -> String {
    if bytes.is_multiple_of(MIB) {
        format!("{}Mi", bytes / MIB)
    } else {
        bytes.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan(pairs: &[(&str, &str)]) -> Result<CapturePlan, String> {
        let annotations = pairs
            .iter()
            .map(|(k, v)| (format!("sidecar.speedscale.com/{k}"), (*v).to_owned()))
            .collect();
        capture_plan(&annotations, 0).map_err(|denial| denial.0)
    }

    /// What the files can take at most: every file at its rotation size plus the headroom.
    fn worst_case(plan: &CapturePlan) -> u64 {
        (plan.keep as u64 + 1) * (plan.rotate_size + RECORD_HEADROOM)
    }

    #[test]
    fn by_default_one_gibibyte_and_six_files_of_128_mib() {
        let plan = plan(&[]).unwrap();
        assert_eq!(
            plan,
            CapturePlan {
                size_limit: "1Gi".to_owned(),
                rotate_size: 128 * MIB,
                keep: 5
            }
        );
        assert_eq!(
            plan.sidecar_env(),
            [
                ("PROXY_CAPTURE_ROTATE_SIZE", "128MiB".to_owned()),
                ("PROXY_CAPTURE_ROTATE_KEEP", "5".to_owned()),
            ]
        );
        assert!(worst_case(&plan) <= 1024 * MIB);
    }

    #[test]
    fn the_rotation_follows_the_limit_and_the_files_kept() {
        let plan = plan(&[
            ("capture-size-limit", "200Mi"),
            ("capture-rotate-keep", "3"),
        ])
        .unwrap();
        assert_eq!((plan.rotate_size, plan.keep), (37 * MIB, 3));
        assert!(worst_case(&plan) <= 200 * MIB);
        let plan = super::tests::plan(&[("capture-size-limit", "10G")]).unwrap();
        assert!(worst_case(&plan) <= 10_000_000_000);
    }

    #[test]
    fn a_rotation_size_that_fits_is_taken_and_one_that_does_not_is_refused() {
        let fits = plan(&[("capture-rotate-size", "160Mi")]).unwrap();
        assert_eq!(fits.rotate_size, 160 * MIB);
        assert!(worst_case(&fits) <= 1024 * MIB);
        assert_eq!(
            plan(&[("capture-rotate-size", "200Mi")]).unwrap_err(),
            "sidecar.speedscale.com/capture-rotate-size: \"200Mi\" does not fit: 6 capture files (5 rotated and the current one) of that size, each with 4Mi of headroom for the record being written, would pass sidecar.speedscale.com/capture-size-limit \"1Gi\", and the kubelet evicts a pod whose volume does; allowed: from 1Mi to 166Mi"
        );
        assert!(plan(&[("capture-rotate-size", "100Ki")])
            .unwrap_err()
            .contains("allowed: from 1Mi to"));
    }

    #[test]
    fn a_limit_too_small_for_the_files_and_the_spool_says_what_would_fit_both() {
        let annotations: BTreeMap<String, String> = [(
            "sidecar.speedscale.com/capture-size-limit".to_owned(),
            "96Mi".to_owned(),
        )]
        .into();
        let denial = capture_plan(&annotations, 64 * MIB).unwrap_err().0;
        assert!(denial.contains("and the 64Mi NATS spool"), "{denial}");
        assert!(denial.contains("allowed: at least 160Mi"), "{denial}");
        let enough: BTreeMap<String, String> = [(
            "sidecar.speedscale.com/capture-size-limit".to_owned(),
            "160Mi".to_owned(),
        )]
        .into();
        assert!(capture_plan(&enough, 64 * MIB).is_ok());
    }

    #[test]
    fn bad_values_are_refused_with_what_is_allowed() {
        assert_eq!(
            plan(&[("capture-size-limit", "lots")]).unwrap_err(),
            "sidecar.speedscale.com/capture-size-limit: \"lots\" is not a Kubernetes quantity; allowed: a non-negative number with an optional suffix, like 100m, 0.5, 64Mi, 1G"
        );
        assert_eq!(
            plan(&[("capture-rotate-keep", "0")]).unwrap_err(),
            "sidecar.speedscale.com/capture-rotate-keep: \"0\" is not allowed; allowed: a whole number of rotated files from 1 to 100, like \"5\""
        );
        assert_eq!(
            plan(&[("capture-size-limit", "16Mi")]).unwrap_err(),
            "sidecar.speedscale.com/capture-size-limit: \"16Mi\" is too small for 6 capture files (5 rotated and the current one); allowed: at least 96Mi, or fewer files with sidecar.speedscale.com/capture-rotate-keep"
        );
    }
}
