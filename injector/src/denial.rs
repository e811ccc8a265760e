//! Why a pod is refused. Its own module because every step of the decision (the plan, the capture volume,
//! the resources) produces one, and none of them should have to import another to say no.

use thiserror::Error;

use crate::annotations::AnnotationError;

/// Why a pod is refused: one line, naming the annotation and what is allowed.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("{0}")]
pub struct Denial(pub String);

impl From<AnnotationError> for Denial {
    fn from(error: AnnotationError) -> Self {
        Denial(error.to_string())
    }
}
