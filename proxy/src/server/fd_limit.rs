//! The process's file-descriptor limit. Every relayed connection holds two descriptors (the client's and
//! the upstream's), and the soft limit a container starts with can be as low as 1024, so the sidecar raises
//! it to the hard limit at startup, as most servers do, and says when even that is short of what
//! `--max-connections` may need. (Through nix's safe wrapper: the sidecar's code stays free of `unsafe`.)

use nix::sys::resource::{getrlimit, setrlimit, Resource};
use tracing::{debug, info, warn};

/// Descriptors the process needs besides its connections: listeners, the runtime, the capture file.
const RESERVED: u64 = 64;

/// Raises the soft limit on open files to the hard limit, and warns when the result is short of what
/// `max_connections` per direction (for `directions` directions) may need. Returns the soft limit in
/// force afterwards, if it could be read.
pub fn raise_to_hard_limit(max_connections: usize, directions: usize) -> Option<u64> {
    let (soft, hard) = match getrlimit(Resource::RLIMIT_NOFILE) {
        Ok(limits) => limits,
        Err(e) => {
            warn!(error = %e, "cannot read the file-descriptor limit");
            return None;
        }
    };
    let in_force = if soft < hard {
        match setrlimit(Resource::RLIMIT_NOFILE, hard, hard) {
            Ok(()) => {
                info!(
                    from = soft,
                    to = hard,
                    "raised the file-descriptor limit to its hard limit"
                );
                hard
            }
            Err(e) => {
                warn!(error = %e, soft, hard, "cannot raise the file-descriptor limit");
                soft
            }
        }
    } else {
        debug!(
            limit = soft,
            "file-descriptor limit already at its hard limit"
        );
        soft
    };
    let needed = (max_connections as u64)
        .saturating_mul(directions as u64)
        .saturating_mul(2)
        .saturating_add(RESERVED);
    if in_force < needed {
        warn!(
            limit = in_force,
            needed,
            max_connections,
            "the file-descriptor limit is below what --max-connections may need; past it, new connections wait in the listen backlog until descriptors free up (raise the limit, or lower --max-connections)"
        );
    }
    Some(in_force)
}
