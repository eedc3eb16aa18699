//! The portal CA: `shadowgate portal ca` makes an ECDSA CA whose X.509 name constraints permit only
//! the catalogue's domains (no IP addresses); the portal mints short-lived ECDSA leaves from it.

use std::collections::{BTreeSet, HashMap};
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

use crate::policy::config::{CatalogFile, Category};

/// The domains a portal CA may certify: every catalogued domain pattern (templates expanded),
/// `*.` stripped (a DNS name constraint covers the name and its subdomains), those under another
/// listed domain dropped. The approved route is left out: the portal must never be able to
/// impersonate the clinic's own compliant service.
pub fn catalogue_domains(policy_dir: &Path) -> Result<Vec<String>, String> {
    let dir = policy_dir.join("catalog");
    let rd = std::fs::read_dir(&dir).map_err(|e| {
        format!(
            "{}: cannot read the catalogue ({e}); give --policy the policy directory (it holds catalog/*.toml)",
            dir.display()
        )
    })?;
    let mut files: Vec<_> = rd
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "toml"))
        .collect();
    files.sort();
    let mut all = BTreeSet::new();
    for f in &files {
        let text = std::fs::read_to_string(f).map_err(|e| format!("{}: {e}", f.display()))?;
        let cat: CatalogFile = toml::from_str(&text).map_err(|e| {
            format!(
                "{}: {} (run `shadowgate policy check` on the directory)",
                f.display(),
                e.message()
            )
        })?;
        for s in cat.service {
            let s = s.into_inner();
            if s.category == Category::ApprovedRoute {
                continue;
            }
            let mut pats: Vec<String> = s.domains.iter().map(|d| d.get_ref().clone()).collect();
            for t in &s.templates {
                for r in &s.regions {
                    pats.push(t.get_ref().replace("{region}", r));
                }
            }
            for p in pats {
                let p = p.trim().trim_end_matches('.').to_ascii_lowercase();
                let p = p.strip_prefix("*.").unwrap_or(&p).to_string();
                if !p.is_empty() && !p.contains('*') && !p.contains('{') {
                    all.insert(p);
                }
            }
        }
    }
    let keep: Vec<String> = all
        .iter()
        .filter(|d| !all.iter().any(|p| p != *d && covers(p, d)))
        .cloned()
        .collect();
    if keep.is_empty() {
        return Err(format!(
            "{}: the catalogue lists no domains; a portal CA must be limited to them",
            dir.display()
        ));
    }
    Ok(keep)
}

/// Does a DNS name constraint `base` cover `name` (the name itself or a subdomain)?
pub fn covers(base: &str, name: &str) -> bool {
    let (b, n) = (base.trim_end_matches('.'), name.trim_end_matches('.'));
    n.eq_ignore_ascii_case(b)
        || (n.len() > b.len()
            && n.as_bytes()[n.len() - b.len() - 1] == b'.'
            && n[n.len() - b.len()..].eq_ignore_ascii_case(b))
}

/// A new portal CA: (certificate PEM, private key PEM).
pub fn make_ca(domains: &[String], days: u32, clinic: &str) -> Result<(String, String), String> {
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
        // No IP address may be certified at all.
        excluded_subtrees: vec![
            GeneralSubtree::IpAddress(CidrSubnet::V4([0; 4], [0; 4])),
            GeneralSubtree::IpAddress(CidrSubnet::V6([0; 16], [0; 16])),
        ],
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
    /// Read the CA certificate and key once (the key must not be readable by group or others).
    pub fn load(cert: &Path, key: &Path, validity: Duration, cap: usize) -> Result<Self, String> {
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let m = std::fs::metadata(key)
                .map_err(|e| format!("{}: cannot read the portal CA key: {e}", key.display()))?;
            if m.permissions().mode() & 0o077 != 0 {
                return Err(format!(
                    "{}: the portal CA key is readable by others; run `chmod 600 {}`",
                    key.display(),
                    key.display()
                ));
            }
        }
        let cert_pem = std::fs::read_to_string(cert).map_err(|e| {
            format!(
                "{}: cannot read the portal CA certificate: {e} (make one with `shadowgate portal ca`)",
                cert.display()
            )
        })?;
        let key_pem = std::fs::read_to_string(key)
            .map_err(|e| format!("{}: cannot read the portal CA key: {e}", key.display()))?;
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
        let permitted = permitted_dns(&der)?;
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

fn pem_der(pem: &str) -> Result<CertificateDer<'static>, String> {
    use rustls::pki_types::pem::PemObject;
    CertificateDer::from_pem_slice(pem.as_bytes())
        .map_err(|e| format!("not a PEM certificate ({e})"))
}

/// The permitted DNS subtrees of a CA certificate's name constraints.
pub fn permitted_dns(der: &[u8]) -> Result<Vec<String>, String> {
    use x509_parser::extensions::GeneralName;
    let (_, x) = x509_parser::parse_x509_certificate(der)
        .map_err(|e| format!("not an X.509 certificate ({e})"))?;
    let nc = x
        .name_constraints()
        .map_err(|e| format!("bad name constraints ({e})"))?;
    let mut out = Vec::new();
    if let Some(nc) = nc {
        for s in nc.value.permitted_subtrees.iter().flatten() {
            if let GeneralName::DNSName(d) = s.base {
                out.push(d.to_ascii_lowercase());
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rustls::client::danger::ServerCertVerifier;
    use rustls::pki_types::{ServerName, UnixTime};

    fn ca(domains: &[&str]) -> (PortalCa, String) {
        let d: Vec<String> = domains.iter().map(|s| s.to_string()).collect();
        let (cert, key) = make_ca(&d, 2, "Test clinic").unwrap();
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
    fn catalogue_domains_are_reduced_to_subtrees() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("policies");
        let d = catalogue_domains(&dir).unwrap();
        assert!(d.contains(&"claude.ai".to_string()));
        assert!(d.contains(&"openai.com".to_string()));
        // chat.openai.com is under openai.com: one subtree covers both.
        assert!(!d.contains(&"chat.openai.com".to_string()));
        assert!(d.iter().all(|x| !x.starts_with("*.")));
        assert!(covers("openai.com", "chat.openai.com"));
        assert!(!covers("openai.com", "notopenai.com"));
    }
}
