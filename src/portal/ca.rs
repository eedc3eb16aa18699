//! The portal CA: `shadowgate portal ca` makes an ECDSA CA whose X.509 name constraints permit
//! only what the policy may steer or coach ([`PortalScope`]: never the approved route, enterprise
//! AI APIs or DNS resolvers; no IP addresses); the portal mints short-lived ECDSA leaves from it
//! and refuses to start with a CA that reaches further ([`PortalCa::fits`]).

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rcgen::{
    BasicConstraints, CertificateParams, CidrSubnet, DistinguishedName, DnType,
    ExtendedKeyUsagePurpose, GeneralSubtree, IsCa, Issuer, KeyPair, KeyUsagePurpose,
    NameConstraints, PKCS_ECDSA_P256_SHA256,
};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use rustls::sign::CertifiedKey;

pub use crate::policy::scope::covers;
use crate::policy::{Overreach, Policy, PortalScope};

/// The scope of a portal CA for the policy in `policy_dir`, loaded with the policy loader (the
/// one catalogue reader). Fails if the policy is invalid or nothing can be certified.
pub fn policy_scope(policy_dir: &Path) -> Result<PortalScope, String> {
    let p = Policy::load(policy_dir).map_err(|e| {
        format!(
            "{e}\nfix the policy first (`shadowgate policy check {}`)",
            policy_dir.display()
        )
    })?;
    let scope = p.portal_scope();
    if scope.permitted.is_empty() {
        return Err(format!(
            "{}: no steer or coach rule selects a domain the portal may certify (the approved route, enterprise AI APIs and DNS resolvers never are): the portal needs no CA; leave [portal] ca_cert and ca_key unset (HTTP only)",
            policy_dir.display()
        ));
    }
    Ok(scope)
}

/// A new portal CA for a scope: (certificate PEM, private key PEM).
pub fn make_ca_for(
    scope: &PortalScope,
    days: u32,
    clinic: &str,
) -> Result<(String, String), String> {
    make_ca(&scope.permitted, &scope.excluded_subtrees(), days, clinic)
}

/// A new portal CA permitting the DNS subtrees `domains` except `excluded`, and no IP address:
/// (certificate PEM, private key PEM).
pub fn make_ca(
    domains: &[String],
    excluded: &[String],
    days: u32,
    clinic: &str,
) -> Result<(String, String), String> {
    let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).map_err(|e| e.to_string())?;
    let mut p = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    let cn: String = format!("shadowgate portal CA ({clinic})")
        .chars()
        .take(64)
        .collect();
    dn.push(DnType::CommonName, cn);
    dn.push(DnType::OrganizationName, "shadowgate steering portal");
    p.distinguished_name = dn;
    p.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    p.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let now = time::OffsetDateTime::now_utc();
    p.not_before = now - time::Duration::hours(1);
    p.not_after = now + time::Duration::days(days.max(1) as i64);
    p.name_constraints = Some(NameConstraints {
        permitted_subtrees: domains
            .iter()
            .map(|d| GeneralSubtree::DnsName(d.clone()))
            .collect(),
        // Never-certified names inside permitted subtrees, and no IP address at all.
        excluded_subtrees: excluded
            .iter()
            .map(|d| GeneralSubtree::DnsName(d.clone()))
            .chain([
                GeneralSubtree::IpAddress(CidrSubnet::V4([0; 4], [0; 4])),
                GeneralSubtree::IpAddress(CidrSubnet::V6([0; 16], [0; 16])),
            ])
            .collect(),
    });
    let cert = p.self_signed(&key).map_err(|e| e.to_string())?;
    Ok((cert.pem(), key.serialize_pem()))
}

/// A minted leaf, ready for rustls.
#[derive(Debug)]
pub struct Leaf {
    pub key: Arc<CertifiedKey>,
    pub minted: Instant,
}

/// The loaded CA and its bounded cache of leaves (one per name).
pub struct PortalCa {
    issuer: Issuer<'static, KeyPair>,
    ca_der: CertificateDer<'static>,
    permitted: Vec<String>,
    excluded: Vec<String>,
    validity: Duration,
    cap: usize,
    cache: Mutex<HashMap<String, Arc<Leaf>>>,
}

impl std::fmt::Debug for PortalCa {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PortalCa")
            .field("permitted", &self.permitted.len())
            .finish()
    }
}

impl PortalCa {
    /// Read the CA certificate and key once. The key must be owned by the user the daemon runs
    /// as (or root) with mode 0600: see [`check_key_file`].
    pub fn load(cert: &Path, key: &Path, validity: Duration, cap: usize) -> Result<Self, String> {
        check_key_file(key)?;
        let cert_pem = std::fs::read_to_string(cert).map_err(|e| {
            format!(
                "{}: cannot read the portal CA certificate: {e} (make one with `shadowgate portal ca`)",
                cert.display()
            )
        })?;
        let key_pem = std::fs::read_to_string(key).map_err(|e| {
            let hint = if e.kind() == std::io::ErrorKind::PermissionDenied {
                format!(
                    " (the daemon's user must own it: {})",
                    KEY_FIX.replace("KEY", &key.display().to_string())
                )
            } else {
                String::new()
            };
            format!(
                "{}: cannot read the portal CA key: {e}{hint}",
                key.display()
            )
        })?;
        Self::from_pem(&cert_pem, &key_pem, validity, cap)
            .map_err(|e| format!("{} / {}: {e}", cert.display(), key.display()))
    }

    pub fn from_pem(
        cert_pem: &str,
        key_pem: &str,
        validity: Duration,
        cap: usize,
    ) -> Result<Self, String> {
        let key = KeyPair::from_pem(key_pem).map_err(|e| {
            format!("not a PEM private key ({e}); use the files `shadowgate portal ca` wrote")
        })?;
        let der = pem_der(cert_pem)?;
        let (permitted, excluded) = dns_constraints(&der)?;
        if permitted.is_empty() {
            return Err(
                "the CA has no DNS name constraints; refusing to use an unconstrained CA (make one with `shadowgate portal ca`)"
                    .into(),
            );
        }
        let issuer = Issuer::from_ca_cert_der(&der, key)
            .map_err(|e| format!("not a usable CA certificate ({e})"))?;
        Ok(PortalCa {
            issuer,
            ca_der: der,
            permitted,
            excluded,
            validity,
            cap: cap.max(1),
            cache: Mutex::new(HashMap::new()),
        })
    }

    /// The CA certificate (DER).
    pub fn ca_der(&self) -> &CertificateDer<'static> {
        &self.ca_der
    }

    /// Is `name` inside the CA's name constraints?
    pub fn permits(&self, name: &str) -> bool {
        self.permitted.iter().any(|b| covers(b, name))
            && !self.excluded.iter().any(|b| covers(b, name))
    }

    /// The CA's permitted and excluded DNS subtrees.
    pub fn constraints(&self) -> (&[String], &[String]) {
        (&self.permitted, &self.excluded)
    }

    /// Where the CA reaches beyond what `scope` may certify (empty: it fits).
    pub fn overreach(&self, scope: &PortalScope) -> Vec<Overreach> {
        scope.overreach(&self.permitted, &self.excluded)
    }

    /// Refuse a CA that reaches beyond `scope`: the error names each subtree and gives the
    /// command that makes a CA for the policy (`fix`, see [`new_ca_command`]).
    pub fn fits(&self, scope: &PortalScope, cert: &Path, fix: &str) -> Result<(), String> {
        let over = self.overreach(scope);
        if over.is_empty() {
            return Ok(());
        }
        Err(too_wide(cert, &over, fix))
    }

    /// The cached leaf for `name`, or a new one (`true`: minted now). Refuses names outside the
    /// constraints: a browser would refuse them anyway.
    pub fn leaf(&self, name: &str) -> Result<(Arc<Leaf>, bool), String> {
        if !self.permits(name) {
            return Err(format!(
                "{name} is outside the portal CA's name constraints"
            ));
        }
        let now = Instant::now();
        let mut c = self.cache.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(l) = c.get(name) {
            // Renew at half-life so a served leaf always has time left.
            if now.duration_since(l.minted) < self.validity / 2 {
                return Ok((Arc::clone(l), false));
            }
        }
        drop(c);
        let leaf = Arc::new(self.mint(name)?);
        c = self.cache.lock().unwrap_or_else(|e| e.into_inner());
        if c.len() >= self.cap && !c.contains_key(name) {
            if let Some(k) = c
                .iter()
                .min_by_key(|(_, l)| l.minted)
                .map(|(k, _)| k.clone())
            {
                c.remove(&k);
            }
        }
        c.insert(name.to_string(), Arc::clone(&leaf));
        Ok((leaf, true))
    }

    /// Leaves in the cache.
    pub fn cached(&self) -> usize {
        self.cache.lock().map(|c| c.len()).unwrap_or(0)
    }

    /// Mint a leaf for `name` without the cache (and without the constraint check: tests use it
    /// to show that verifiers refuse names outside the constraints).
    pub fn mint(&self, name: &str) -> Result<Leaf, String> {
        let (der, key) = self.mint_der(name)?;
        let provider = rustls::crypto::ring::default_provider();
        let signing = provider
            .key_provider
            .load_private_key(PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key)))
            .map_err(|e| e.to_string())?;
        Ok(Leaf {
            key: Arc::new(CertifiedKey::new(vec![der, self.ca_der.clone()], signing)),
            minted: Instant::now(),
        })
    }

    /// A leaf for `name`: (certificate DER, PKCS#8 key DER).
    pub fn mint_der(&self, name: &str) -> Result<(CertificateDer<'static>, Vec<u8>), String> {
        let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).map_err(|e| e.to_string())?;
        let mut p = CertificateParams::new(vec![name.to_string()])
            .map_err(|e| format!("{name}: cannot be put in a certificate ({e})"))?;
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, name);
        p.distinguished_name = dn;
        p.is_ca = IsCa::ExplicitNoCa;
        p.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        p.use_authority_key_identifier_extension = true;
        let now = time::OffsetDateTime::now_utc();
        p.not_before = now - time::Duration::minutes(5);
        p.not_after = now + time::Duration::seconds(self.validity.as_secs().max(60) as i64);
        let cert = p.signed_by(&key, &self.issuer).map_err(|e| e.to_string())?;
        Ok((cert.der().clone(), key.serialize_der()))
    }
}

/// How to give the portal CA key its one mode (`KEY`: the key's path).
pub const KEY_FIX: &str = "`chown shadowgate:shadowgate KEY && chmod 0600 KEY`";

/// The one rule for the portal CA key: mode 0600 (no group or other bits) and owned by the user
/// the daemon runs as (`shadowgate` under deploy/shadowgate.service) or by root (a daemon started
/// by hand as root).
///
/// Why not `root:shadowgate 0640` like the configuration and the SIEM client key: this key signs
/// certificates the clinic's workstations trust, so it should be readable by exactly one account,
/// the daemon's. Group read would hand it to anything else running with the `shadowgate` group
/// (an operator added to read the configuration, `sudo -u` tools); a third owner could read it
/// too. The daemon cannot rewrite or re-mode it under the unit's `ProtectSystem=strict`
/// (/etc is read-only to it), which was the one thing root ownership added.
pub fn check_key_file(key: &Path) -> Result<(), String> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::{MetadataExt, PermissionsExt};
        let fix = KEY_FIX.replace("KEY", &key.display().to_string());
        let m = std::fs::metadata(key)
            .map_err(|e| format!("{}: cannot read the portal CA key: {e}", key.display()))?;
        let mode = m.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            return Err(format!(
                "{}: the portal CA key has mode {mode:04o}: group or others can read it; it must be 0600 and owned by the daemon's user: {fix}",
                key.display()
            ));
        }
        // SAFETY: geteuid has no preconditions and cannot fail.
        let me = unsafe { libc::geteuid() };
        if m.uid() != me && m.uid() != 0 {
            return Err(format!(
                "{}: the portal CA key is owned by uid {}, not by the daemon's user (uid {me}) or root: that account can read it; {fix}",
                key.display(),
                m.uid()
            ));
        }
    }
    Ok(())
}

fn pem_der(pem: &str) -> Result<CertificateDer<'static>, String> {
    use rustls::pki_types::pem::PemObject;
    CertificateDer::from_pem_slice(pem.as_bytes())
        .map_err(|e| format!("not a PEM certificate ({e})"))
}

/// The permitted DNS subtrees of a CA certificate's name constraints.
pub fn permitted_dns(der: &[u8]) -> Result<Vec<String>, String> {
    dns_constraints(der).map(|(p, _)| p)
}

/// The permitted and the excluded DNS subtrees of a CA certificate's name constraints.
pub fn dns_constraints(der: &[u8]) -> Result<(Vec<String>, Vec<String>), String> {
    use x509_parser::extensions::GeneralName;
    let (_, x) = x509_parser::parse_x509_certificate(der)
        .map_err(|e| format!("not an X.509 certificate ({e})"))?;
    let nc = x
        .name_constraints()
        .map_err(|e| format!("bad name constraints ({e})"))?;
    let dns = |subtrees: Option<&Vec<x509_parser::extensions::GeneralSubtree>>| -> Vec<String> {
        subtrees
            .into_iter()
            .flatten()
            .filter_map(|s| match s.base {
                GeneralName::DNSName(d) => Some(d.trim_start_matches('.').to_ascii_lowercase()),
                _ => None,
            })
            .collect()
    };
    Ok(match nc {
        Some(nc) => (
            dns(nc.value.permitted_subtrees.as_ref()),
            dns(nc.value.excluded_subtrees.as_ref()),
        ),
        None => (Vec::new(), Vec::new()),
    })
}

/// The command that makes a portal CA fitting the policy in `policy_dir`, written where
/// `ca_cert` is (`--force`: it replaces the old one). Names other than portal-ca.pem and
/// portal-ca.key get a note to point the configuration at the new files.
pub fn new_ca_command(policy_dir: &Path, ca_cert: &Path, ca_key: &Path, clinic: &str) -> String {
    let out = ca_cert
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let mut cmd = format!(
        "shadowgate portal ca --policy {} --out {} --clinic {} --force",
        shell_word(&policy_dir.display().to_string()),
        shell_word(&out.display().to_string()),
        shell_word(clinic)
    );
    if ca_cert != out.join("portal-ca.pem") || ca_key != out.join("portal-ca.key") {
        cmd.push_str(&format!(
            " (then set [portal] ca_cert = \"{}\" and ca_key = \"{}\")",
            out.join("portal-ca.pem").display(),
            out.join("portal-ca.key").display()
        ));
    }
    cmd
}

/// `s` as one shell word (single-quoted unless plainly safe).
fn shell_word(s: &str) -> String {
    if !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"/._-+:@,=".contains(&b))
    {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', "'\\''"))
    }
}

/// The refusal of a CA that reaches beyond the policy.
pub fn too_wide(cert: &Path, over: &[Overreach], fix: &str) -> String {
    let mut s = format!(
        "{}: this portal CA may certify names the policy never steers or coaches (the approved route, enterprise AI APIs and DNS resolvers are never certified):",
        cert.display()
    );
    for o in over {
        s.push_str("\n  ");
        s.push_str(&o.to_string());
    }
    s.push_str(&format!(
        "\nits key sits in the LAN-facing portal, so it must reach no further. Make a new CA with\n  {fix}\nthen install the new portal-ca.pem on the workstations and remove the old one from their trust stores"
    ));
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use rustls::client::danger::ServerCertVerifier;
    use rustls::pki_types::{ServerName, UnixTime};

    fn ca(domains: &[&str]) -> (PortalCa, String) {
        let d: Vec<String> = domains.iter().map(|s| s.to_string()).collect();
        let (cert, key) = make_ca(&d, &[], 2, "Test clinic").unwrap();
        (
            PortalCa::from_pem(&cert, &key, Duration::from_secs(3600), 4).unwrap(),
            cert,
        )
    }

    fn verify(ca: &PortalCa, leaf: &CertificateDer<'static>, name: &str) -> Result<(), String> {
        let mut roots = rustls::RootCertStore::empty();
        roots.add(ca.ca_der().clone()).unwrap();
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let v =
            rustls::client::WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider)
                .build()
                .unwrap();
        v.verify_server_cert(
            leaf,
            &[],
            &ServerName::try_from(name.to_string()).unwrap(),
            &[],
            UnixTime::now(),
        )
        .map(|_| ())
        .map_err(|e| e.to_string())
    }

    #[test]
    fn constraints_permit_catalogued_names_only() {
        let (ca, _) = ca(&["claude.ai", "chatgpt.com"]);
        // Inside: the name itself and a subdomain.
        for n in ["claude.ai", "www.chatgpt.com"] {
            let (der, _) = ca.mint_der(n).unwrap();
            verify(&ca, &der, n).unwrap_or_else(|e| panic!("{n}: {e}"));
        }
        // Outside: the CA signs it (mint_der skips the portal's own check), the verifier refuses.
        for n in ["bank.example", "claude.ai.evil.example", "notclaude.ai"] {
            let (der, _) = ca.mint_der(n).unwrap();
            let e = verify(&ca, &der, n).unwrap_err();
            assert!(e.to_lowercase().contains("constraint"), "{n}: {e}");
        }
        // The portal itself never mints outside.
        assert!(ca.leaf("bank.example").is_err());
        assert!(ca.leaf("claude.ai").is_ok());
    }

    #[test]
    fn ca_has_critical_constraints_and_no_ip_names() {
        let (_, pem) = ca(&["claude.ai"]);
        let der = pem_der(&pem).unwrap();
        let (_, x) = x509_parser::parse_x509_certificate(&der).unwrap();
        let nc = x.name_constraints().unwrap().unwrap();
        assert!(nc.critical);
        assert_eq!(permitted_dns(&der).unwrap(), vec!["claude.ai".to_string()]);
        let excluded = nc.value.excluded_subtrees.as_ref().unwrap();
        assert_eq!(excluded.len(), 2, "all IPv4 and IPv6 addresses excluded");
        let bc = x.basic_constraints().unwrap().unwrap().value;
        assert!(bc.ca);
        assert_eq!(bc.path_len_constraint, Some(0));
    }

    #[test]
    fn leaf_cache_is_bounded_and_reused() {
        let (ca, _) = ca(&["example.net"]);
        let (a, new) = ca.leaf("a.example.net").unwrap();
        assert!(new);
        let (a2, new2) = ca.leaf("a.example.net").unwrap();
        assert!(!new2);
        assert!(Arc::ptr_eq(&a, &a2));
        for i in 0..10 {
            ca.leaf(&format!("n{i}.example.net")).unwrap();
        }
        assert_eq!(ca.cached(), 4);
    }

    #[test]
    fn bundled_policy_ca_reaches_no_api_resolver_or_approved_route() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("policies");
        let scope = policy_scope(&dir).unwrap();
        let (cert, key) = make_ca_for(&scope, 2, "Test clinic").unwrap();
        let ca = PortalCa::from_pem(&cert, &key, Duration::from_secs(3600), 4).unwrap();
        let (permitted, excluded) = ca.constraints();
        assert!(permitted.contains(&"claude.ai".to_string()));
        assert!(permitted.contains(&"openai.com".to_string()));
        // chat.openai.com is under openai.com: one subtree covers both.
        assert!(!permitted.contains(&"chat.openai.com".to_string()));
        assert!(permitted.iter().all(|x| !x.starts_with("*.")));
        assert!(excluded.contains(&"api.openai.com".to_string()));
        let policy = Policy::load(&dir).unwrap();
        let mut never = vec![
            "bedrock-runtime.us-east-1.amazonaws.com".to_string(),
            "api.anthropic.com".to_string(),
            "api.openai.com".to_string(),
        ];
        for s in policy.services() {
            if crate::policy::scope::NEVER_CERTIFIED.contains(&s.category) {
                never.extend(
                    s.patterns
                        .iter()
                        .map(|p| p.trim_start_matches("*.").to_string()),
                );
            }
        }
        assert!(never.iter().any(|n| n == "dns.google"));
        assert!(never.iter().any(|n| n == "ai.clinic.example"));
        for n in &never {
            assert!(!ca.permits(n), "{n}");
        }
        for n in ["claude.ai", "chatgpt.com", "www.chatgpt.com"] {
            assert!(ca.permits(n), "{n}");
        }
        // What a browser does: a leaf for the API host under anthropic.com is refused by the
        // excluded subtree, one for the consumer site is accepted.
        let (der, _) = ca.mint_der("api.anthropic.com").unwrap();
        let e = verify(&ca, &der, "api.anthropic.com").unwrap_err();
        assert!(e.to_lowercase().contains("constraint"), "{e}");
        let (der, _) = ca.mint_der("www.anthropic.com").unwrap();
        verify(&ca, &der, "www.anthropic.com").unwrap();
        assert!(ca.overreach(&scope).is_empty());
    }

    #[test]
    fn a_wider_ca_is_refused_with_the_fix() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("policies");
        let scope = policy_scope(&dir).unwrap();
        let wide: Vec<String> = ["claude.ai", "anthropic.com", "amazonaws.com", "dns.google"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        let (cert, key) = make_ca(&wide, &[], 2, "Test clinic").unwrap();
        let ca = PortalCa::from_pem(&cert, &key, Duration::from_secs(3600), 4).unwrap();
        let pem = Path::new("/etc/shadowgate/portal-ca/portal-ca.pem");
        let fix = new_ca_command(
            &dir,
            pem,
            Path::new("/etc/shadowgate/portal-ca/portal-ca.key"),
            "Elm Street's clinic",
        );
        assert!(fix.starts_with("shadowgate portal ca --policy "), "{fix}");
        assert!(fix.contains("--out /etc/shadowgate/portal-ca "), "{fix}");
        assert!(
            fix.contains("--clinic 'Elm Street'\\''s clinic' --force"),
            "{fix}"
        );
        let e = ca.fits(&scope, pem, &fix).unwrap_err();
        for n in [
            "amazonaws.com",
            "dns.google",
            "api.anthropic.com",
            "enterprise_ai_api",
        ] {
            assert!(e.contains(n), "{n}: {e}");
        }
        assert!(e.contains(&fix), "{e}");
        assert!(!e.contains("\n  claude.ai"), "{e}");
        // Other file names: the command says to point the configuration at the new ones.
        let fix2 = new_ca_command(&dir, Path::new("ca.pem"), Path::new("ca.key"), "c");
        assert!(
            fix2.contains("--out . ") && fix2.contains("ca_cert = \"./portal-ca.pem\""),
            "{fix2}"
        );
    }

    #[test]
    fn key_file_rule() {
        use std::os::unix::fs::PermissionsExt;
        let d = std::env::temp_dir().join(format!("sg-cakey-{}", std::process::id()));
        std::fs::create_dir_all(&d).unwrap();
        let k = d.join("k.key");
        std::fs::write(&k, "x").unwrap();
        for (mode, ok) in [(0o600, true), (0o400, true), (0o640, false), (0o604, false)] {
            std::fs::set_permissions(&k, std::fs::Permissions::from_mode(mode)).unwrap();
            let r = check_key_file(&k);
            assert_eq!(r.is_ok(), ok, "{mode:o}: {r:?}");
            if let Err(e) = r {
                assert!(
                    e.contains("chmod 0600") && e.contains("chown shadowgate"),
                    "{e}"
                );
            }
        }
        let _ = std::fs::remove_dir_all(&d);
    }
}
