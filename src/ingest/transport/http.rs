//! Server-Sent Events and NDJSON over HTTP. (Being written.)

use crate::config::SourceConfig;
use crate::ingest::{Delivery, HttpLines};

pub async fn run(
    _url: &str,
    _lines: HttpLines,
    _bearer: Option<String>,
    _config: &SourceConfig,
    _out: Delivery,
) {
    std::future::pending::<()>().await
}
