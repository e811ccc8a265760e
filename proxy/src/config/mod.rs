//! The sidecar's configuration model: the spec's annotations (or the equivalent flags and environment)
//! turned into one validated value. Pure: no I/O, so the injector can reuse it for admission decisions.

mod annotations;
mod error;
mod ignored;
mod model;
mod ports;
mod quoted;
mod redirect;
mod settings;
mod tls_out;
mod validate;

pub use annotations::{parse_annotations_file, AnnotationsFileError};
pub use error::ConfigError;
pub use ignored::ignored_settings;
pub use model::{
    InboundProtocol, OutboundProtocol, ProtocolSetting, ProxyConfig, ProxyType, ReverseTarget,
    DEFAULT_APP_HOST, DEFAULT_APP_PORT, DEFAULT_IN_PORT, DEFAULT_OUT_PORT,
};
pub use ports::{PortList, PortListProblem, PortRange};
pub use quoted::{excerpt, Quoted, QUOTE_LIMIT};
pub use redirect::RedirectSettings;
pub use settings::{RawSettings, RawValue, Setting, SettingName, Source, ANNOTATION_PREFIX};
pub use tls_out::{HostPattern, TlsOutSettings};
