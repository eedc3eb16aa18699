//! The `[devices]` section of `shadowgate.toml`: where MACs and host names come from besides the
//! wire. Its keys are a contract (operators and the acceptance checks use them): keep them stable.

use std::path::PathBuf;

use serde::Deserialize;

/// `[devices]`: where MACs and host names come from besides frames and DHCP on the wire.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DevicesConf {
    /// A DHCP server's leases file: dnsmasq, ISC dhcpd or Kea (memfile CSV); format detected.
    #[serde(default)]
    pub leases_file: Option<PathBuf>,
    /// Seconds between re-reads of the leases file and the neighbour table.
    #[serde(default = "default_devices_s")]
    pub refresh_s: u64,
    /// Read the kernel's neighbour table (ARP / NDP) at every refresh.
    #[serde(default = "yes")]
    pub neighbours: bool,
    /// Forget an address or MAC binding not seen (on the wire, in the neighbour table or the
    /// leases file) for this many seconds.
    #[serde(default = "default_forget_s")]
    pub forget_after_s: u64,
}

impl Default for DevicesConf {
    fn default() -> Self {
        DevicesConf {
            leases_file: None,
            refresh_s: default_devices_s(),
            neighbours: true,
            forget_after_s: default_forget_s(),
        }
    }
}

fn default_devices_s() -> u64 {
    30
}

fn default_forget_s() -> u64 {
    86_400
}

fn yes() -> bool {
    true
}
