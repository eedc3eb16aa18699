//! `shadowgate.toml`, one file for replay and the daemon: the sensor id and the policy directory
//! here; every other section lives with the room it configures (`[store]` and `[[sink]]` in
//! `record::config`, `[capture]` in `capture::config`, `[enforce]` in `enforce::config`, `[dns]`
//! in `resolver::config`, `[portal]` in `portal::config`, `[devices]` in `devices::config`,
//! `[metrics]` in `daemon::config`, `[report]` in `report::config`). Relative paths are relative
//! to the file; errors name the file, line and column.

use std::path::{Path, PathBuf};

use serde::Deserialize;

pub use crate::capture::config::CaptureConf;
pub use crate::daemon::config::MetricsConf;
pub use crate::devices::config::DevicesConf;
pub use crate::enforce::config::{EnforceConf, EnforceMode};
use crate::policy::error::PolicyError;
pub use crate::portal::config::PortalConf;
pub use crate::record::config::{SinkConf, SinkKind, StoreConf};
pub use crate::resolver::config::{BlockAnswer, DnsConf};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    #[serde(default)]
    pub sensor: SensorConf,
    #[serde(default)]
    pub policy: Option<PolicyConf>,
    #[serde(default)]
    pub store: Option<StoreConf>,
    #[serde(default)]
    pub sink: Vec<SinkConf>,
    /// The daemon (`shadowgate run`): each section lives with the room it configures.
    #[serde(default)]
    pub capture: Option<CaptureConf>,
    #[serde(default)]
    pub enforce: Option<EnforceConf>,
    #[serde(default)]
    pub dns: Option<DnsConf>,
    #[serde(default)]
    pub portal: Option<PortalConf>,
    #[serde(default)]
    pub metrics: Option<MetricsConf>,
    #[serde(default)]
    pub devices: Option<DevicesConf>,
    /// The weekly report: see `report::config`.
    #[serde(default)]
    pub report: Option<crate::report::ReportConf>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SensorConf {
    #[serde(default = "default_sensor")]
    pub id: String,
    /// Outer SNIs of Encrypted Client Hellos (ECH public names), besides those learnt from DNS.
    #[serde(default = "default_ech_public_names")]
    pub ech_public_names: Vec<String>,
    /// Resolvers that look names up for the clients (e.g. a domain controller that forwards).
    #[serde(default)]
    pub internal_resolvers: Vec<std::net::IpAddr>,
    /// The clinic's own VPN endpoints (addresses or CIDRs): VPN handshakes to or from them are
    /// not counted as blind spots.
    #[serde(default, deserialize_with = "known_tunnels")]
    pub known_tunnels: Vec<ipnet::IpNet>,
    /// Seconds a TCP flow (UDP flow) stays in the flow table after its last packet (default 300
    /// and 60); a test bed that wants its steady state sooner makes them shorter.
    #[serde(default)]
    pub tcp_idle_s: Option<u64>,
    #[serde(default)]
    pub udp_idle_s: Option<u64>,
    /// Seconds a name learnt from DNS outlives its TTL (default 120).
    #[serde(default)]
    pub name_grace_s: Option<u64>,
}

/// `[sensor] known_tunnels`: each entry an address (`203.0.113.10`, a host) or a CIDR
/// (`198.51.100.0/28`); anything else is an error that says so.
fn known_tunnels<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<ipnet::IpNet>, D::Error> {
    let items = Vec::<String>::deserialize(d)?;
    items
        .iter()
        .map(|s| {
            let t = s.trim();
            t.parse::<ipnet::IpNet>()
                .map(|n| n.trunc())
                .or_else(|_| t.parse::<std::net::IpAddr>().map(ipnet::IpNet::from))
                .map_err(|_| {
                    serde::de::Error::custom(format!(
                        "known_tunnels: `{s}` is not an IP address or CIDR; list the clinic's own VPN endpoints as addresses or networks, e.g. [\"203.0.113.10\", \"198.51.100.0/28\"]"
                    ))
                })
        })
        .collect()
}

impl Default for SensorConf {
    fn default() -> Self {
        SensorConf {
            id: default_sensor(),
            ech_public_names: default_ech_public_names(),
            internal_resolvers: Vec::new(),
            known_tunnels: Vec::new(),
            tcp_idle_s: None,
            udp_idle_s: None,
            name_grace_s: None,
        }
    }
}

impl SensorConf {
    /// The sensor's limits with this configuration's trust settings.
    pub fn apply(&self, cfg: &mut crate::flow::Config) {
        cfg.ech_public_names = self.ech_public_names.clone();
        cfg.internal_resolvers = self.internal_resolvers.clone();
        cfg.known_tunnels = self.known_tunnels.clone();
        cfg.tcp_idle_s = self.tcp_idle_s.map_or(cfg.tcp_idle_s, |s| s.max(1));
        cfg.udp_idle_s = self.udp_idle_s.map_or(cfg.udp_idle_s, |s| s.max(1));
        cfg.name_grace_s = self.name_grace_s.unwrap_or(cfg.name_grace_s);
    }
}

fn default_ech_public_names() -> Vec<String> {
    crate::flow::config::DEFAULT_ECH_PUBLIC_NAMES
        .iter()
        .map(|s| s.to_string())
        .collect()
}

fn default_sensor() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|_| "shadowgate".into())
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicyConf {
    pub dir: PathBuf,
}

impl Config {
    /// The clinic's own resolvers: the addresses of `[dns] upstreams` and of `[sensor]
    /// internal_resolvers`. The policy never stops a DNS resolver service reached there
    /// (`PolicyHandle::load_with`).
    pub fn clinic_resolvers(&self) -> Vec<std::net::IpAddr> {
        let mut v: Vec<std::net::IpAddr> = self
            .dns
            .iter()
            .flat_map(|d| d.upstreams.iter().map(|a| a.ip()))
            .chain(self.sensor.internal_resolvers.iter().copied())
            .collect();
        v.sort_unstable();
        v.dedup();
        v
    }

    pub fn load(path: &Path) -> Result<Config, PolicyError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| PolicyError::new(path, format!("cannot read: {e}")))?;
        let mut c: Config = toml::from_str(&text).map_err(|e| {
            let err = PolicyError::new(path, e.message().trim().to_string());
            match e.span() {
                Some(s) => err.at(&text, s.start),
                None => err,
            }
        })?;
        // Relative paths are relative to the configuration file.
        let base = path.parent().unwrap_or(Path::new("."));
        let fix = |p: &mut PathBuf| {
            if p.is_relative() {
                *p = base.join(&*p);
            }
        };
        if let Some(p) = &mut c.policy {
            fix(&mut p.dir);
        }
        if let Some(s) = &mut c.store {
            fix(&mut s.path);
        }
        if let Some(p) = c.devices.as_mut().and_then(|d| d.leases_file.as_mut()) {
            fix(p);
        }
        if let Some(p) = &mut c.portal {
            for f in [&mut p.ca_cert, &mut p.ca_key].into_iter().flatten() {
                fix(f);
            }
        }
        if let Some(r) = &mut c.report {
            r.rebase(base);
        }
        for s in &mut c.sink {
            match &mut s.kind {
                SinkKind::Jsonl { path: Some(p), .. } => fix(p),
                SinkKind::Syslog {
                    ca_file,
                    cert_file,
                    key_file,
                    ..
                } => {
                    for p in [ca_file, cert_file, key_file].into_iter().flatten() {
                        fix(p);
                    }
                }
                SinkKind::Mail {
                    ca_file,
                    password_file,
                    ..
                } => {
                    for p in [ca_file, password_file].into_iter().flatten() {
                        fix(p);
                    }
                }
                _ => {}
            }
        }
        let mut names = std::collections::HashSet::new();
        for s in &c.sink {
            if !names.insert(s.name.clone()) {
                return Err(PolicyError::new(
                    path,
                    format!("sink name {:?} is used twice", s.name),
                )
                .hint("each sink keeps its own delivery cursor under its name"));
            }
            s.build().map_err(|e| PolicyError::new(path, e))?;
        }
        Ok(c)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::sinks::SyslogTransport;

    fn dir(tag: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("sg-config-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    fn load(d: &Path, sink: &str) -> Result<Config, String> {
        let p = d.join("shadowgate.toml");
        std::fs::write(
            &p,
            format!("[[sink]]\nname = \"s\"\ntype = \"syslog\"\n{sink}"),
        )
        .unwrap();
        Config::load(&p).map_err(|e| e.to_string())
    }

    #[test]
    fn relp_transports_and_tls_files_relative_to_the_file() {
        let d = dir("relp");
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = rcgen::CertificateParams::new(vec!["localhost".into()])
            .unwrap()
            .self_signed(&key)
            .unwrap();
        std::fs::write(d.join("ca.pem"), cert.pem()).unwrap();
        std::fs::write(d.join("me.pem"), cert.pem()).unwrap();
        std::fs::write(d.join("me.key"), key.serialize_pem()).unwrap();

        let c = load(&d, "transport = \"relp\"\naddress = \"127.0.0.1:2514\"\n").unwrap();
        assert!(matches!(
            c.sink[0].kind,
            SinkKind::Syslog {
                transport: SyslogTransport::Relp,
                ..
            }
        ));
        let c = load(
            &d,
            "transport = \"relp-tls\"\naddress = \"siem.example:2515\"\nca_file = \"ca.pem\"\ncert_file = \"me.pem\"\nkey_file = \"me.key\"\n",
        )
        .unwrap();
        match &c.sink[0].kind {
            SinkKind::Syslog {
                transport: SyslogTransport::RelpTls,
                ca_file: Some(ca),
                cert_file: Some(cert),
                key_file: Some(key),
                ..
            } => {
                assert_eq!(ca, &d.join("ca.pem"));
                assert_eq!(cert, &d.join("me.pem"));
                assert_eq!(key, &d.join("me.key"));
            }
            k => panic!("{k:?}"),
        }
        // The plain TLS transport takes a client certificate too.
        load(
            &d,
            "transport = \"tls\"\naddress = \"siem.example:6514\"\nca_file = \"ca.pem\"\ncert_file = \"me.pem\"\nkey_file = \"me.key\"\n",
        )
        .unwrap();

        let e = load(&d, "transport = \"relptls\"\naddress = \"a:1\"\n").unwrap_err();
        assert!(e.contains("relp-tls"), "{e}");
        let e = load(
            &d,
            "transport = \"relp-tls\"\naddress = \"a:1\"\ncert_file = \"me.pem\"\n",
        )
        .unwrap_err();
        assert!(e.contains("key_file"), "{e}");
        let e = load(
            &d,
            "transport = \"relp\"\naddress = \"a:1\"\ncert_file = \"me.pem\"\nkey_file = \"me.key\"\n",
        )
        .unwrap_err();
        assert!(e.contains("need transport"), "{e}");
        let e = load(
            &d,
            "transport = \"relp-tls\"\naddress = \"a:1\"\nca_file = \"missing.pem\"\n",
        )
        .unwrap_err();
        assert!(e.contains("missing.pem"), "{e}");
        let _ = std::fs::remove_dir_all(&d);
    }

    fn p_with(p: &Path, body: &str) -> PathBuf {
        std::fs::write(p, body).unwrap();
        p.to_path_buf()
    }

    #[test]
    fn sensor_trust_settings() {
        let d = dir("sensor");
        let p = d.join("shadowgate.toml");
        std::fs::write(
            &p,
            "[sensor]\nid = \"gw\"\nech_public_names = [\"ech.example\"]\ninternal_resolvers = [\"10.0.0.2\"]\n",
        )
        .unwrap();
        let c = Config::load(&p).unwrap();
        let mut f = crate::flow::Config::default();
        c.sensor.apply(&mut f);
        assert_eq!(f.ech_public_names, ["ech.example"]);
        assert_eq!(
            f.internal_resolvers,
            ["10.0.0.2".parse::<std::net::IpAddr>().unwrap()]
        );
        assert_eq!(
            Config::load(&{
                std::fs::write(&p, "[sensor]\nid = \"gw\"\n").unwrap();
                p.clone()
            })
            .unwrap()
            .sensor
            .ech_public_names,
            ["cloudflare-ech.com"]
        );
        std::fs::write(&p, "[sensor]\ninternal_resolvers = [\"10.0.0.300\"]\n").unwrap();
        let e = Config::load(&p).unwrap_err().to_string();
        assert!(e.contains("shadowgate.toml:2:"), "{e}");
        // The clinic's own VPN endpoints: addresses and CIDRs; anything else says what to do.
        std::fs::write(
            &p,
            "[sensor]\nknown_tunnels = [\"203.0.113.10\", \"198.51.100.7/28\", \"2001:db8::/64\"]\n",
        )
        .unwrap();
        let mut f = crate::flow::Config::default();
        Config::load(&p).unwrap().sensor.apply(&mut f);
        assert!(f.is_known_tunnel("203.0.113.10".parse().unwrap()));
        assert!(!f.is_known_tunnel("203.0.113.11".parse().unwrap()));
        assert!(f.is_known_tunnel("198.51.100.1".parse().unwrap()));
        assert!(f.is_known_tunnel("2001:db8::9".parse().unwrap()));
        std::fs::write(&p, "[sensor]\nknown_tunnels = [\"vpn.clinic.example\"]\n").unwrap();
        let e = Config::load(&p).unwrap_err().to_string();
        assert!(e.contains("shadowgate.toml:2:"), "{e}");
        assert!(e.contains("not an IP address or CIDR"), "{e}");
        // State lifetimes: the defaults unless given (a soak shortens them).
        let mut f = crate::flow::Config::default();
        Config::load(&p_with(&p, "[sensor]\nid = \"gw\"\n"))
            .unwrap()
            .sensor
            .apply(&mut f);
        assert_eq!((f.tcp_idle_s, f.udp_idle_s, f.name_grace_s), (300, 60, 120));
        let body = "[sensor]\ntcp_idle_s = 15\nudp_idle_s = 0\nname_grace_s = 5\n";
        Config::load(&p_with(&p, body))
            .unwrap()
            .sensor
            .apply(&mut f);
        assert_eq!((f.tcp_idle_s, f.udp_idle_s, f.name_grace_s), (15, 1, 5));
        let _ = std::fs::remove_dir_all(&d);
    }
}
