//! What every record of one tapped stream shares, captured once when the tap starts so that records can be
//! built on the writer thread without holding the connection (and its open-connection gauge).

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use crate::capture::record::{Detail, Record};
use crate::capture::{CaptureSettings, Origin, Route};

pub struct TapOrigin {
    origin: Origin,
    route: Arc<Route>,
    pub settings: Arc<CaptureSettings>,
}

impl TapOrigin {
    pub fn new(
        origin: Origin,
        route: Arc<Route>,
        settings: Arc<CaptureSettings>,
    ) -> Arc<TapOrigin> {
        Arc::new(TapOrigin {
            origin,
            route,
            settings,
        })
    }

    /// The scheme of the URLs this stream's requests were made to.
    pub fn scheme(&self) -> &'static str {
        if self.route.tls.is_some() {
            "https"
        } else {
            "http"
        }
    }

    pub fn record(&self, id: u64, start: SystemTime, duration: Duration, detail: Detail) -> Record {
        self.origin
            .record(id, Route::clone(&self.route), (start, duration), detail)
    }
}
