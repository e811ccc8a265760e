//! How the writer thread writes a tap's exchange as a `sidecar.capture/v1` record: the heads are parsed
//! there ([`super::record_parts`]), and the record is encoded straight from them through a borrowed view
//! ([`crate::capture::record_view`]), without building a `Record` of owned strings first.

use std::mem::MaybeUninit;

use super::exchange::{RawExchange, MAX_FIELDS};
use super::record_parts::{request_view, response_view};
use crate::capture::output::{RecordKind, WrittenRecord};
use crate::capture::record_view::{
    write_with_shared, DetailView, HeadView, HttpView, RestView, Start, Uid,
};
use crate::capture::EncodeRecord;

impl EncodeRecord for RawExchange {
    fn encode(&self, line: &mut Vec<u8>) -> Option<WrittenRecord<'static>> {
        let origin = &*self.origin;
        // The heads' fields are parsed into arrays on the stack; trailers, rare, into vectors.
        let mut request_fields = [MaybeUninit::uninit(); MAX_FIELDS];
        let mut request_trailers = Vec::new();
        let request = request_view(
            &self.request,
            origin,
            &mut request_fields,
            &mut request_trailers,
        )?;
        let mut response_fields = [MaybeUninit::uninit(); MAX_FIELDS];
        let mut response_trailers = Vec::new();
        let response = self.response.as_ref().and_then(|response| {
            response_view(
                response,
                origin,
                &mut response_fields,
                &mut response_trailers,
            )
        });
        let detail = DetailView::Http(HttpView {
            request,
            response,
            error: self.error.as_deref(),
            upgraded: self.upgraded.as_deref(),
            mock: None,
        });
        let shared = origin.shared();
        let head = HeadView {
            id: self.id,
            uid: Uid::Of(self.id),
        };
        let rest = RestView {
            caused_by: self.caused_by.map(Uid::Of),
            start: Start::At(self.start),
            // As `Origin::record` computes an owned record's.
            duration_ms: self.duration.as_secs_f64() * 1000.0,
            detail,
        };
        write_with_shared(line, &head, shared, &rest);
        Some(WrittenRecord {
            kind: RecordKind::Http,
            id: self.id,
            uid: "",
        })
    }
}
