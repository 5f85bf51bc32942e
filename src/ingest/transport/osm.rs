//! OpenStreetMap minutely replication. (Being written.)

use crate::config::SourceConfig;
use crate::ingest::Delivery;

pub async fn run(_url: &str, _config: &SourceConfig, _out: Delivery) {
    std::future::pending::<()>().await
}
