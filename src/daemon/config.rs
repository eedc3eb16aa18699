//! The `[metrics]` section of `shadowgate.toml`: where Prometheus `/metrics` and `/healthz` listen.
//! Its keys are a contract (operators and the acceptance checks use them): keep them stable.

use std::net::SocketAddr;

use serde::Deserialize;

/// `[metrics]`: Prometheus `/metrics` and `/healthz`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MetricsConf {
    pub listen: SocketAddr,
}
