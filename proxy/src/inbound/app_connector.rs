//! A hyper connector that always dials the app, whatever authority the request names, so the caller's
//! Host (HTTP/1) or :authority (HTTP/2) reaches the app unchanged.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use http::Uri;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

use crate::net::{dial, DialError, Target};

#[derive(Clone, Debug)]
pub struct AppConnector {
    app: Arc<Target>,
    timeout: Duration,
}

impl AppConnector {
    pub fn new(app: Target, timeout: Duration) -> Self {
        AppConnector {
            app: Arc::new(app),
            timeout,
        }
    }
}

impl tower_service::Service<Uri> for AppConnector {
    type Response = TokioIo<TcpStream>;
    type Error = DialError;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, DialError>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), DialError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, _uri: Uri) -> Self::Future {
        let app = self.app.clone();
        let timeout = self.timeout;
        Box::pin(async move { dial(&app, timeout).await.map(TokioIo::new) })
    }
}
