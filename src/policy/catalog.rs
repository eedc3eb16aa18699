//! The service catalogue: loading `catalog/*.toml` into services and a domain matcher, checking
//! and normalising its domain patterns, and looking a name up in it.
//!
//! Two layers: the vendor catalogue (every `catalog/*.toml` but `catalog/local.toml`; what an
//! upgrade replaces) and the clinic's own files (`catalog/local.toml` and `local/*.toml`; never
//! shipped, never overwritten). The clinic's entries win: a clinic service with the id of a
//! vendor service replaces it, and a clinic domain a vendor service lists is taken from that
//! service. Each such override is kept ([`Override`]) and reported.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use super::config::{self, Category};
use super::error::{read, toml_error};
use super::matcher::{normalize, DomainTrie};
use super::model::{CatalogVersion, Override, OverrideKind, Vendor};
use super::{CatalogMatch, Policy, PolicyError, Service};

/// The loaded catalogue, before the policy is compiled against it.
pub(super) struct Catalog {
    pub(super) services: Vec<Service>,
    /// Pattern -> (service index, index into `patterns`).
    pub(super) catalog: DomainTrie<(usize, usize)>,
    pub(super) patterns: Vec<String>,
    /// Index into `patterns` -> service index.
    pub(super) pattern_services: Vec<usize>,
    /// Service id -> service index.
    pub(super) ids: HashMap<String, usize>,
    pub(super) vendors: Vec<Vendor>,
    pub(super) versions: Vec<CatalogVersion>,
    pub(super) overrides: Vec<Override>,
}

/// The clinic's file inside the catalogue directory (the rest of it is vendor data).
pub const LOCAL_FILE: &str = "local.toml";
/// The clinic's directory of catalogue files, beside `catalog/` in the policy directory.
pub const LOCAL_DIR: &str = "local";

/// The `*.toml` files of `dir`, sorted; `None` when the directory does not exist.
fn toml_files(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)?
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "toml") && p.is_file())
        .collect();
    v.sort();
    Ok(v)
}

/// What the clinic's files claim: service ids and normalised domain patterns (errors are
/// reported when the files are loaded in earnest).
#[derive(Default)]
struct Claims {
    ids: HashMap<String, PathBuf>,
    patterns: HashMap<String, (String, PathBuf)>,
}

fn claims(files: &[PathBuf]) -> Claims {
    let mut c = Claims::default();
    for f in files {
        let Ok(text) = std::fs::read_to_string(f) else {
            continue;
        };
        let Ok(file) = toml::from_str::<config::CatalogFile>(&text) else {
            continue;
        };
        for sdef in file.service {
            let s = sdef.into_inner();
            let mut names: Vec<String> = s.domains.iter().map(|d| d.get_ref().clone()).collect();
            names.extend(s.tenant_hosts.iter().map(|d| d.get_ref().clone()));
            for t in &s.templates {
                for r in &s.regions {
                    names.push(t.get_ref().replace("{region}", r));
                }
            }
            for n in names {
                if let Ok(p) = pattern(&n) {
                    c.patterns.entry(p).or_insert((s.id.clone(), f.clone()));
                }
            }
            c.ids.entry(s.id).or_insert(f.clone());
        }
    }
    c
}

/// A service domain waiting for the vendor-ownership check (vendors may be declared in a later
/// file): the normalised pattern, its service, and an error already pointing at it.
struct Owned {
    pattern: String,
    service: usize,
    at: PolicyError,
}

/// Load `dir/catalog/*.toml` (vendor files in file name order) and the clinic's files
/// (`catalog/local.toml`, `dir/local/*.toml`). All errors are collected in `errs`.
pub(super) fn load(dir: &Path, errs: &mut Vec<PolicyError>) -> Catalog {
    load_from(&dir.join("catalog"), Some(&dir.join(LOCAL_DIR)), errs)
}

/// The catalogue of a directory on its own (for `shadowgate catalog`): a policy directory (with
/// `catalog/`) or a catalogue directory itself. No `policy.toml` is needed.
pub fn load_catalog(dir: &Path) -> Result<CatalogView, super::PolicyErrors> {
    let mut errs = Vec::new();
    let c = if dir.join("catalog").is_dir() {
        load(dir, &mut errs)
    } else {
        load_from(dir, None, &mut errs)
    };
    if !errs.is_empty() {
        return Err(super::PolicyErrors(errs));
    }
    Ok(CatalogView {
        dir: dir.to_path_buf(),
        services: c.services,
        vendors: c.vendors,
        versions: c.versions,
        overrides: c.overrides,
    })
}

/// A catalogue loaded without a policy (see [`load_catalog`]).
#[derive(Debug, Clone)]
pub struct CatalogView {
    pub dir: PathBuf,
    pub services: Vec<Service>,
    pub vendors: Vec<Vendor>,
    pub versions: Vec<CatalogVersion>,
    pub overrides: Vec<Override>,
}

fn load_from(cat_dir: &Path, local_dir: Option<&Path>, errs: &mut Vec<PolicyError>) -> Catalog {
    let mut services: Vec<Service> = Vec::new();
    let mut catalog = DomainTrie::new();
    let mut patterns = Vec::new();
    let mut pattern_services = Vec::new();
    let mut owner: HashMap<String, (usize, PathBuf)> = HashMap::new();
    let mut ids: HashMap<String, usize> = HashMap::new();
    let mut vendors: Vec<Vendor> = Vec::new();
    let mut versions = Vec::new();
    let mut to_check: Vec<Owned> = Vec::new();

    let mut vendor_files = Vec::new();
    let mut local_files = Vec::new();
    match toml_files(cat_dir) {
        Ok(all) => {
            for f in all {
                if f.file_name().is_some_and(|n| n == LOCAL_FILE) {
                    local_files.push(f);
                } else {
                    vendor_files.push(f);
                }
            }
        }
        Err(e) => errs.push(
            PolicyError::new(cat_dir, format!("cannot read the catalogue directory: {e}"))
                .hint("a policy directory holds policy.toml and catalog/*.toml (see policies/ in the source tree)"),
        ),
    }
    match local_dir.map(toml_files) {
        None => {}
        Some(Ok(v)) => local_files.extend(v),
        Some(Err(e)) if e.kind() == std::io::ErrorKind::NotFound => {}
        Some(Err(e)) => errs.push(
            PolicyError::new(local_dir.unwrap_or(cat_dir), format!("cannot read the clinic's catalogue directory: {e}"))
                .hint("it holds the clinic's own services and overrides (*.toml); remove it if there are none"),
        ),
    }
    let clinic = claims(&local_files);
    let mut overrides: Vec<Override> = Vec::new();
    let files: Vec<(PathBuf, bool)> = vendor_files
        .into_iter()
        .map(|f| (f, false))
        .chain(local_files.into_iter().map(|f| (f, true)))
        .collect();
    for (f, is_local) in &files {
        let (f, is_local) = (f, *is_local);
        let text = match read(f) {
            Ok(t) => t,
            Err(e) => {
                errs.push(e);
                continue;
            }
        };
        let file: config::CatalogFile = match toml::from_str(&text) {
            Ok(v) => v,
            Err(e) => {
                errs.push(toml_error(f, &text, e));
                continue;
            }
        };
        if let (true, Some(_)) = (is_local, &file.catalog) {
            errs.push(
                PolicyError::new(f, "a clinic file has a [catalog] table (a vendor catalogue version)")
                    .hint("[catalog] marks vendor data: remove it here, or move the file into catalog/ if it is a vendor catalogue"),
            );
        }
        if let (false, Some(meta)) = (is_local, file.catalog) {
            if !valid_date(&meta.date, false) {
                errs.push(
                    PolicyError::new(f, format!("[catalog] date {:?} is not a date", meta.date))
                        .hint("write it as YYYY-MM-DD"),
                );
            }
            versions.push(CatalogVersion {
                file: f.clone(),
                version: meta.version,
                date: meta.date,
            });
        }
        for vdef in file.vendor {
            let span = vdef.span();
            let v = vdef.into_inner();
            if let Some(prev) = vendors.iter().find(|p| p.name == v.name) {
                errs.push(
                    PolicyError::new(f, format!("vendor {:?} is declared twice", v.name))
                        .at(&text, span.start)
                        .hint(format!(
                            "the other declaration is in {}; list all its domains there",
                            prev.file.display()
                        )),
                );
                continue;
            }
            let mut domains = Vec::new();
            for d in &v.domains {
                match pattern(d.get_ref()) {
                    Ok(p) if !p.starts_with("*.") => {
                        if let Some(other) = vendors.iter().find(|o| o.domains.contains(&p)) {
                            errs.push(
                                PolicyError::new(f, format!("domain {p:?} of vendor {:?} is already owned by vendor {:?}", v.name, other.name))
                                    .at(&text, d.span().start)
                                    .hint("a registrable domain has one owner; remove it from one of them"),
                            );
                        }
                        domains.push(p);
                    }
                    Ok(p) => errs.push(
                        PolicyError::new(f, format!("vendor domain {p:?} is a wildcard"))
                            .at(&text, d.span().start)
                            .hint("list the registrable domain the vendor owns (claude.ai); it covers its subdomains"),
                    ),
                    Err(m) => errs.push(PolicyError::new(f, m).at(&text, d.span().start)),
                }
            }
            vendors.push(Vendor {
                name: v.name,
                domains,
                file: f.clone(),
            });
        }
        for sdef in file.service {
            let span = sdef.span();
            let s = sdef.into_inner();
            if !is_local {
                if let Some(by) = clinic.ids.get(&s.id) {
                    overrides.push(Override {
                        kind: OverrideKind::Replaces,
                        service: s.id.clone(),
                        vendor_file: f.clone(),
                        by: s.id.clone(),
                        file: by.clone(),
                        pattern: None,
                    });
                    continue;
                }
            }
            if let Some(&prev) = ids.get(&s.id) {
                let other: &Service = &services[prev];
                errs.push(
                    PolicyError::new(f, format!("service id {:?} is defined twice", s.id))
                        .at(&text, span.start)
                        .hint(format!(
                            "the other definition is in {}; ids must be unique",
                            other.file.display()
                        )),
                );
                continue;
            }
            let idx = services.len();
            // (pattern, offset, tenant host)
            let mut all: Vec<(String, usize, bool)> = s
                .domains
                .iter()
                .map(|d| (d.get_ref().clone(), d.span().start, false))
                .collect();
            for t in &s.templates {
                if !t.get_ref().contains("{region}") || s.regions.is_empty() {
                    errs.push(
                        PolicyError::new(
                            f,
                            format!(
                                "template {:?} needs a {{region}} placeholder and a `regions` list",
                                t.get_ref()
                            ),
                        )
                        .at(&text, t.span().start),
                    );
                    continue;
                }
                for r in &s.regions {
                    all.push((t.get_ref().replace("{region}", r), t.span().start, false));
                }
            }
            for h in &s.tenant_hosts {
                all.push((h.get_ref().clone(), h.span().start, true));
            }
            if all.is_empty() && s.category != Category::ApprovedRoute {
                errs.push(
                    PolicyError::new(f, format!("service {:?} has no domains", s.id))
                        .at(&text, span.start),
                );
            }
            let mut own = Vec::new();
            if let Some(d) = &s.source_date {
                if !valid_date(d.get_ref(), true) {
                    errs.push(
                        PolicyError::new(
                            f,
                            format!(
                                "source_date {:?} of service {:?} is not a date",
                                d.get_ref(),
                                s.id
                            ),
                        )
                        .at(&text, d.span().start)
                        .hint("write the date of the BAA source as YYYY-MM-DD (or YYYY-MM)"),
                    );
                }
            }
            let mut tenant_hosts = Vec::new();
            for (d, at, tenant) in all {
                match pattern(&d) {
                    Ok(p) if tenant && (p.starts_with("*.") || p.split('.').count() < 3) => errs.push(
                        PolicyError::new(f, format!("tenant host {p:?} of service {:?} must be one exact host name on a shared platform", s.id))
                            .at(&text, at)
                            .hint("list the tenant's own host (bucket.s3.amazonaws.com), never the platform suffix; names the vendor owns go in `domains`"),
                    ),
                    Ok(p) => {
                        if !is_local {
                            if let Some((by, bfile)) = clinic.patterns.get(&p) {
                                overrides.push(Override {
                                    kind: OverrideKind::Claims,
                                    service: s.id.clone(),
                                    vendor_file: f.clone(),
                                    by: by.clone(),
                                    file: bfile.clone(),
                                    pattern: Some(p),
                                });
                                continue;
                            }
                        }
                        if let Some((other, ofile)) = owner.get(&p) {
                            if *other != idx {
                                errs.push(
                                    PolicyError::new(f, format!("domain {p:?} of service {:?} is already claimed by service {:?}", s.id, services[*other].id))
                                        .at(&text, at)
                                        .hint(format!("a name belongs to one service; remove it from one of them (other: {})", ofile.display())),
                                );
                            }
                            continue;
                        }
                        owner.insert(p.clone(), (idx, f.clone()));
                        own.push(p.clone());
                        patterns.push(p.clone());
                        pattern_services.push(idx);
                        catalog.insert(&p, (idx, patterns.len() - 1));
                        if tenant {
                            tenant_hosts.push(p);
                        } else {
                            to_check.push(Owned {
                                pattern: p,
                                service: idx,
                                at: PolicyError::new(f, String::new()).at(&text, at),
                            });
                        }
                    }
                    Err(m) => errs.push(
                        PolicyError::new(f, m)
                            .at(&text, at)
                            .hint("use exact names (claude.ai) or suffix wildcards (*.claude.ai)"),
                    ),
                }
            }
            ids.insert(s.id.clone(), idx);
            services.push(Service {
                id: s.id,
                name: s.name,
                vendor: s.vendor,
                category: s.category,
                kind: s.kind,
                baa: s.baa,
                baa_source: s.baa_source,
                source_date: s.source_date.map(|d| d.into_inner()),
                tenant_hosts,
                shared_tenant: s.shared_tenant,
                file: f.clone(),
                patterns: own,
            });
        }
    }
    // A declared vendor's services list only names under the vendor's own domains.
    for o in to_check {
        let s = &services[o.service];
        let Some(v) = vendors.iter().find(|v| v.name == s.vendor) else {
            continue;
        };
        let name = o.pattern.strip_prefix("*.").unwrap_or(&o.pattern);
        if v.domains.iter().any(|d| under(name, d)) {
            continue;
        }
        let owned_by = vendors
            .iter()
            .find(|w| w.domains.iter().any(|d| under(name, d)))
            .map(|w| format!(" (it is listed under vendor {:?})", w.name))
            .unwrap_or_default();
        let mut e = o.at;
        e.message = format!(
            "domain {:?} of service {:?} is not a domain of its vendor {:?}{owned_by}",
            o.pattern, s.id, s.vendor
        );
        errs.push(e.hint(format!(
            "add the registrable domain to vendor {:?} (in {}) if that vendor owns it; a host on a shared platform goes in `tenant_hosts`",
            v.name,
            v.file.display()
        )));
    }
    Catalog {
        services,
        catalog,
        patterns,
        pattern_services,
        ids,
        vendors,
        versions,
        overrides,
    }
}

/// `name` is `domain` or one of its subdomains.
fn under(name: &str, domain: &str) -> bool {
    name == domain
        || (name.len() > domain.len()
            && name.ends_with(domain)
            && name.as_bytes()[name.len() - domain.len() - 1] == b'.')
}

/// `YYYY-MM-DD`, or also `YYYY-MM` when `month_ok`.
fn valid_date(s: &str, month_ok: bool) -> bool {
    let parts: Vec<&str> = s.split('-').collect();
    let num = |p: &str, len: usize, lo: u32, hi: u32| {
        p.len() == len
            && p.bytes().all(|b| b.is_ascii_digit())
            && p.parse::<u32>().is_ok_and(|n| (lo..=hi).contains(&n))
    };
    match parts.as_slice() {
        [y, m] => month_ok && num(y, 4, 1970, 9999) && num(m, 2, 1, 12),
        [y, m, d] => num(y, 4, 1970, 9999) && num(m, 2, 1, 12) && num(d, 2, 1, 31),
        _ => false,
    }
}

/// Validate and normalise one domain pattern.
pub(super) fn pattern(p: &str) -> Result<String, String> {
    let (wild, rest) = match p.strip_prefix("*.") {
        Some(r) => (true, r),
        None => (false, p),
    };
    if rest.contains('*') {
        return Err(format!(
            "{p:?}: `*` is only allowed as a leading `*.` (suffix wildcard)"
        ));
    }
    let n = normalize(rest).map_err(|e| format!("{p:?}: {e}"))?;
    if n.split('.').any(|l| l.is_empty() || l.len() > 63) {
        return Err(format!("{p:?}: empty or over-long label"));
    }
    if !wild && !n.contains('.') {
        return Err(format!(
            "{p:?}: a bare top-level domain would match too much"
        ));
    }
    Ok(if wild {
        format!("*.{n}")
    } else {
        n.into_owned()
    })
}

impl Policy {
    /// Catalogue lookup of an already normalised name (no allocation).
    #[inline]
    pub fn classify(&self, name: &str) -> Option<CatalogMatch<'_>> {
        self.catalog.lookup(name).map(|m| CatalogMatch {
            service: &self.services[m.value.0],
            index: m.value.0,
            pattern: &self.patterns[m.value.1],
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_and_suffixes() {
        assert!(valid_date("2026-12-01", false));
        assert!(!valid_date("2026-12", false));
        assert!(valid_date("2026-12", true));
        assert!(!valid_date("2026-13-01", false));
        assert!(!valid_date("Dec 2026", true));
        assert!(under("gemini.google.com", "google.com"));
        assert!(under("google.com", "google.com"));
        assert!(!under("notgoogle.com", "google.com"));
    }

    #[test]
    fn patterns() {
        assert_eq!(pattern("*.Claude.AI").unwrap(), "*.claude.ai");
        assert!(pattern("claude.*").is_err());
        assert!(pattern("com").is_err());
        assert!(pattern("*.com").is_ok());
    }
}
