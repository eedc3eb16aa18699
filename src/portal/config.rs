//! The `[portal]` section of `shadowgate.toml`: where steered and coached names resolve, and how
//! the page looks. Its keys are a contract (operators and the acceptance checks use them): keep
//! them stable.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;

use serde::Deserialize;

/// `[portal]`: where steered and coached names resolve, and how the page looks.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PortalConf {
    pub address: IpAddr,
    #[serde(default)]
    pub address6: Option<IpAddr>,
    /// Listen addresses (default: `address` on ports 80 and 443).
    #[serde(default)]
    pub http: Option<SocketAddr>,
    #[serde(default)]
    pub https: Option<SocketAddr>,
    /// The portal CA (`shadowgate portal ca`); without it steering covers plain HTTP only.
    #[serde(default)]
    pub ca_cert: Option<PathBuf>,
    #[serde(default)]
    pub ca_key: Option<PathBuf>,
    #[serde(default = "default_clinic")]
    pub clinic_name: String,
    #[serde(default)]
    pub logo_text: Option<String>,
    #[serde(default)]
    pub colour_primary: Option<String>,
    #[serde(default)]
    pub colour_accent: Option<String>,
    /// Whom staff contact (text; an e-mail address or phone number).
    #[serde(default)]
    pub contact: Option<String>,
    #[serde(default = "default_language")]
    pub language: String,
    /// How long a coach acknowledgement allows the service (minutes).
    #[serde(default = "default_grant_min")]
    pub grant_minutes: u64,
    /// Page requests per minute per client.
    #[serde(default = "default_portal_rate")]
    pub rate_per_client: u32,
    /// Test setups only: the grant length in seconds (overrides `grant_minutes`).
    #[serde(default)]
    pub grant_seconds: Option<u64>,
    /// Lifetime of the leaf certificates the portal mints (hours; renewed at half-life).
    #[serde(default = "default_leaf_hours")]
    pub leaf_hours: u64,
    /// Minted leaves kept (one per name; the oldest goes first).
    #[serde(default = "default_cert_cache")]
    pub cert_cache: usize,
    /// Longest coach justification accepted (characters).
    #[serde(default = "default_justification")]
    pub justification_max: usize,
}

fn default_clinic() -> String {
    "the clinic".into()
}

fn default_language() -> String {
    "en".into()
}

fn default_grant_min() -> u64 {
    30
}

fn default_portal_rate() -> u32 {
    60
}

fn default_leaf_hours() -> u64 {
    24
}

fn default_cert_cache() -> usize {
    1024
}

fn default_justification() -> usize {
    200
}
