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

use super::address::{self, AddrMatcher};
use super::config::{self, Category};
use super::error::{read, toml_error};
use super::matcher::{normalize, DomainTrie};
use super::model::{CatalogVersion, Override, OverrideKind, Vendor};
use super::{CatalogMatch, Policy, PolicyError, Service};

/// The loaded catalogue, before the policy is compiled against it.
#[derive(Default)]
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
    /// Services' `addresses` and port-only services.
    pub(super) addrs: AddrMatcher,
}

/// The clinic's file inside the catalogue directory (the rest of it is vendor data).
pub const LOCAL_FILE: &str = "local.toml";
/// The clinic's directory of catalogue files, beside `catalog/` in the policy directory.
pub const LOCAL_DIR: &str = "local";

/// The `*.toml` files of `dir`, sorted (an error if the directory cannot be read).
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

/// Read the clinic's files for their claims alone (before the vendor files are loaded, so a
/// vendor entry the clinic overrides is set aside as it is met). Unreadable files are skipped.
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
                names.extend(region_names(t.get_ref(), &s.regions));
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

/// Load the vendor files (in file name order), then the clinic's files, into one catalogue; then
/// check that each service's domains lie under its vendor's (vendors may come in any file).
fn load_from(cat_dir: &Path, local_dir: Option<&Path>, errs: &mut Vec<PolicyError>) -> Catalog {
    let (vendor_files, mut local_files) = catalogue_dir_files(cat_dir, errs);
    local_files.extend(clinic_dir_files(local_dir, errs));
    let mut loader = Loader {
        cat: Catalog::default(),
        owner: HashMap::new(),
        to_check: Vec::new(),
        clinic: claims(&local_files),
    };
    let files = vendor_files
        .iter()
        .map(|f| (f, Layer::Vendor))
        .chain(local_files.iter().map(|f| (f, Layer::Clinic)));
    for (path, layer) in files {
        let Some((text, file)) = parse_file(path, errs) else {
            continue;
        };
        let src = Source {
            path,
            text: &text,
            layer,
        };
        loader.file(src, file, errs);
    }
    loader.check_vendor_domains(errs);
    loader.cat
}

/// The `*.toml` files of the catalogue directory, split into vendor files and the clinic's
/// `local.toml`. A missing or unreadable directory is an error (it is the catalogue).
fn catalogue_dir_files(
    cat_dir: &Path,
    errs: &mut Vec<PolicyError>,
) -> (Vec<PathBuf>, Vec<PathBuf>) {
    match toml_files(cat_dir) {
        Ok(all) => all
            .into_iter()
            .partition(|f| f.file_name().is_none_or(|n| n != LOCAL_FILE)),
        Err(e) => {
            errs.push(
                PolicyError::new(cat_dir, format!("cannot read the catalogue directory: {e}"))
                    .hint("a policy directory holds policy.toml and catalog/*.toml (see policies/ in the source tree)"),
            );
            (Vec::new(), Vec::new())
        }
    }
}

/// The `*.toml` files of the clinic's own directory (`local/`). It is optional: a missing one
/// is fine, an unreadable one is an error.
fn clinic_dir_files(local_dir: Option<&Path>, errs: &mut Vec<PolicyError>) -> Vec<PathBuf> {
    let Some(dir) = local_dir else {
        return Vec::new();
    };
    match toml_files(dir) {
        Ok(v) => v,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
        Err(e) => {
            errs.push(
                PolicyError::new(dir, format!("cannot read the clinic's catalogue directory: {e}"))
                    .hint("it holds the clinic's own services and overrides (*.toml); remove it if there are none"),
            );
            Vec::new()
        }
    }
}

/// Read and parse one catalogue file; `None` (with the error in `errs`) if it cannot be read or
/// is not a valid catalogue file.
fn parse_file(path: &Path, errs: &mut Vec<PolicyError>) -> Option<(String, config::CatalogFile)> {
    let text = match read(path) {
        Ok(t) => t,
        Err(e) => {
            errs.push(e);
            return None;
        }
    };
    match toml::from_str(&text) {
        Ok(file) => Some((text, file)),
        Err(e) => {
            errs.push(toml_error(path, &text, e));
            None
        }
    }
}

/// The names a template stands for: one per region, `{region}` replaced.
fn region_names<'a>(template: &'a str, regions: &'a [String]) -> impl Iterator<Item = String> + 'a {
    regions.iter().map(move |r| template.replace("{region}", r))
}

/// Which layer a catalogue file belongs to: the vendor's (replaced on upgrade) or the clinic's
/// own (`catalog/local.toml`, `local/*.toml`), whose entries win over the vendor's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Layer {
    Vendor,
    Clinic,
}

/// One catalogue file being loaded: its path, its text (errors point into it) and its layer.
#[derive(Clone, Copy)]
struct Source<'a> {
    path: &'a Path,
    text: &'a str,
    layer: Layer,
}

impl Source<'_> {
    /// An error in this file at byte offset `at` (line and column are computed from the text).
    fn error_at(&self, message: impl Into<String>, at: usize) -> PolicyError {
        PolicyError::new(self.path, message).at(self.text, at)
    }
}

/// Whether a service name is a domain the vendor owns (checked against the vendor's registrable
/// domains) or an exact tenant host on a shared platform (not checked: the platform owns it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum NameKind {
    Domain,
    TenantHost,
}

/// One name a service lists, before it is validated: as written (templates already expanded),
/// its offset in the file for errors, and its kind.
struct ServiceName {
    name: String,
    at: usize,
    kind: NameKind,
}

/// A service domain waiting for the vendor-ownership check (vendors may be declared in a later
/// file): the normalised pattern, its service, and an error already pointing at it.
struct Owned {
    pattern: String,
    service: usize,
    at: PolicyError,
}

/// The catalogue as it is built, file after file, with what the checks across files need.
struct Loader {
    cat: Catalog,
    /// Normalised pattern -> (service index, file): a name belongs to one service.
    owner: HashMap<String, (usize, PathBuf)>,
    /// Service domains to check against their vendor's domains once every file is read.
    to_check: Vec<Owned>,
    /// What the clinic's files claim, so vendor entries they override are set aside.
    clinic: Claims,
}

impl Loader {
    /// One parsed file: its `[catalog]` version, its vendors, then its services.
    fn file(&mut self, src: Source<'_>, file: config::CatalogFile, errs: &mut Vec<PolicyError>) {
        self.catalog_version(src, file.catalog, errs);
        for vdef in file.vendor {
            self.vendor(src, vdef, errs);
        }
        for sdef in file.service {
            self.service(src, sdef, errs);
        }
    }

    /// A vendor file's `[catalog]` table is its version (the date must be a date); a clinic file
    /// has none, since it would pass the clinic's data off as a vendor release.
    fn catalog_version(
        &mut self,
        src: Source<'_>,
        meta: Option<config::CatalogMeta>,
        errs: &mut Vec<PolicyError>,
    ) {
        let Some(meta) = meta else {
            return;
        };
        if src.layer == Layer::Clinic {
            errs.push(
                PolicyError::new(src.path, "a clinic file has a [catalog] table (a vendor catalogue version)")
                    .hint("[catalog] marks vendor data: remove it here, or move the file into catalog/ if it is a vendor catalogue"),
            );
            return;
        }
        if !valid_date(&meta.date, false) {
            errs.push(
                PolicyError::new(
                    src.path,
                    format!("[catalog] date {:?} is not a date", meta.date),
                )
                .hint("write it as YYYY-MM-DD"),
            );
        }
        self.cat.versions.push(CatalogVersion {
            file: src.path.to_path_buf(),
            version: meta.version,
            date: meta.date,
        });
    }

    /// A `[[vendor]]`: declared once, with registrable domains no other vendor owns.
    fn vendor(
        &mut self,
        src: Source<'_>,
        vdef: toml::Spanned<config::VendorDef>,
        errs: &mut Vec<PolicyError>,
    ) {
        let span = vdef.span();
        let v = vdef.into_inner();
        if let Some(prev) = self.cat.vendors.iter().find(|p| p.name == v.name) {
            errs.push(
                src.error_at(format!("vendor {:?} is declared twice", v.name), span.start)
                    .hint(format!(
                        "the other declaration is in {}; list all its domains there",
                        prev.file.display()
                    )),
            );
            return;
        }
        let domains = v
            .domains
            .iter()
            .filter_map(|d| self.vendor_domain(src, &v.name, d, errs))
            .collect();
        self.cat.vendors.push(Vendor {
            name: v.name,
            domains,
            file: src.path.to_path_buf(),
        });
    }

    /// One vendor domain, normalised: an exact registrable domain (its subdomains come with it,
    /// so a wildcard is an error). A domain another vendor owns is reported but kept.
    fn vendor_domain(
        &self,
        src: Source<'_>,
        vendor: &str,
        d: &toml::Spanned<String>,
        errs: &mut Vec<PolicyError>,
    ) -> Option<String> {
        let at = d.span().start;
        match pattern(d.get_ref()) {
            Ok(p) if !p.starts_with("*.") => {
                if let Some(other) = self.cat.vendors.iter().find(|o| o.domains.contains(&p)) {
                    errs.push(
                        src.error_at(
                            format!(
                                "domain {p:?} of vendor {vendor:?} is already owned by vendor {:?}",
                                other.name
                            ),
                            at,
                        )
                        .hint("a registrable domain has one owner; remove it from one of them"),
                    );
                }
                Some(p)
            }
            Ok(p) => {
                errs.push(
                    src.error_at(format!("vendor domain {p:?} is a wildcard"), at)
                        .hint("list the registrable domain the vendor owns (claude.ai); it covers its subdomains"),
                );
                None
            }
            Err(m) => {
                errs.push(src.error_at(m, at));
                None
            }
        }
    }

    /// A `[[service]]`: set aside if the clinic replaces it, else checked (unique id, some
    /// domains, a valid source date) and added with every name it may claim.
    fn service(
        &mut self,
        src: Source<'_>,
        sdef: toml::Spanned<config::ServiceDef>,
        errs: &mut Vec<PolicyError>,
    ) {
        let span = sdef.span();
        let s = sdef.into_inner();
        if src.layer == Layer::Vendor && self.replaced_by_clinic(src, &s.id) {
            return;
        }
        if self.defined_before(src, &s.id, span.start, errs) {
            return;
        }
        let names = service_names(src, &s, errs);
        if names.is_empty()
            && s.addresses.is_empty()
            && s.ports.is_empty()
            && s.category != Category::ApprovedRoute
        {
            errs.push(
                src.error_at(format!("service {:?} has no domains", s.id), span.start)
                    .hint("give it domains, or addresses (its own dedicated addresses) or ports"),
            );
        }
        check_source_date(src, &s, errs);
        let idx = self.cat.services.len();
        let (patterns, tenant_hosts) = self.claim_names(src, &s.id, idx, names, errs);
        let (addresses, ports) = self.claim_addresses(src, &s, idx, errs);
        self.cat.ids.insert(s.id.clone(), idx);
        let mut svc = new_service(s, src.path, patterns, tenant_hosts);
        svc.addresses = addresses;
        svc.ports = ports;
        self.cat.services.push(svc);
    }

    /// Service `idx`'s `addresses` and `ports`, validated and entered in the address matcher:
    /// each prefix belongs to one service, a port-only port to one service, and `ports` without
    /// `addresses` is a port-only service (no names).
    fn claim_addresses(
        &mut self,
        src: Source<'_>,
        s: &config::ServiceDef,
        idx: usize,
        errs: &mut Vec<PolicyError>,
    ) -> (Vec<ipnet::IpNet>, Vec<u16>) {
        let mut ports = Vec::new();
        for p in &s.ports {
            let port = *p.get_ref();
            if port == 0 {
                errs.push(
                    src.error_at(
                        format!("port 0 of service {:?} is no port", s.id),
                        p.span().start,
                    )
                    .hint("list TCP/UDP server ports (1-65535), such as 853"),
                );
            } else if !ports.contains(&port) {
                ports.push(port);
            }
        }
        let mut nets = Vec::new();
        for a in &s.addresses {
            let net = match address::parse(a.get_ref()) {
                Ok(n) => n,
                Err((m, hint)) => {
                    errs.push(src.error_at(m, a.span().start).hint(hint));
                    continue;
                }
            };
            if let Some(other) = self.cat.addrs.owner(&net) {
                if other != idx {
                    errs.push(
                        src.error_at(
                            format!(
                                "address {} of service {:?} is already listed by service {:?}",
                                address::show(&net),
                                s.id,
                                self.cat.services[other].id
                            ),
                            a.span().start,
                        )
                        .hint(format!("an address belongs to one service; remove it from one of them (other: {}); a clinic entry replaces a vendor service by using its id", self.cat.services[other].file.display())),
                    );
                }
                continue;
            }
            self.cat.addrs.insert(net, &ports, idx);
            nets.push(net);
        }
        let named = !(s.domains.is_empty() && s.tenant_hosts.is_empty() && s.templates.is_empty());
        if s.addresses.is_empty() && !ports.is_empty() {
            if named {
                let at = s.ports.first().map_or(0, |p| p.span().start);
                errs.push(
                    src.error_at(format!("service {:?} has ports but no addresses", s.id), at)
                        .hint("ports narrow `addresses`; a service with `ports` alone (no domains) matches any server on them: put such an entry in a service of its own"),
                );
            } else {
                for p in s.ports.iter().filter(|p| *p.get_ref() != 0) {
                    let port = *p.get_ref();
                    match self.cat.addrs.port_owner(port) {
                        Some(other) if other != idx => errs.push(
                            src.error_at(
                                format!(
                                    "port {port} of service {:?} is already the port of service {:?}",
                                    s.id, self.cat.services[other].id
                                ),
                                p.span().start,
                            )
                            .hint("a port-only entry matches every server on the port: one service per port"),
                        ),
                        _ => self.cat.addrs.insert_port(port, idx),
                    }
                }
            }
        }
        (nets, ports)
    }

    /// A service id already defined (ids are unique across both layers): an error pointing at
    /// the other definition.
    fn defined_before(
        &self,
        src: Source<'_>,
        id: &str,
        at: usize,
        errs: &mut Vec<PolicyError>,
    ) -> bool {
        let Some(&prev) = self.cat.ids.get(id) else {
            return false;
        };
        errs.push(
            src.error_at(format!("service id {id:?} is defined twice"), at)
                .hint(format!(
                    "the other definition is in {}; ids must be unique",
                    self.cat.services[prev].file.display()
                )),
        );
        true
    }

    /// Enter service `idx`'s names (see [`Loader::service_name`]). Returns the patterns it owns
    /// and, among them, its tenant hosts; its domains wait for the vendor check.
    fn claim_names(
        &mut self,
        src: Source<'_>,
        id: &str,
        idx: usize,
        names: Vec<ServiceName>,
        errs: &mut Vec<PolicyError>,
    ) -> (Vec<String>, Vec<String>) {
        let (mut patterns, mut tenant_hosts) = (Vec::new(), Vec::new());
        for n in names {
            let Some(p) = self.service_name(src, id, idx, &n, errs) else {
                continue;
            };
            patterns.push(p.clone());
            match n.kind {
                NameKind::TenantHost => tenant_hosts.push(p),
                NameKind::Domain => self.to_check.push(Owned {
                    pattern: p,
                    service: idx,
                    at: src.error_at(String::new(), n.at),
                }),
            }
        }
        (patterns, tenant_hosts)
    }

    /// A vendor service the clinic defines under the same id: the clinic's entry wins, and the
    /// override is kept for `policy check` and `catalog list` to report.
    fn replaced_by_clinic(&mut self, src: Source<'_>, id: &str) -> bool {
        let Some(by) = self.clinic.ids.get(id) else {
            return false;
        };
        self.cat.overrides.push(Override {
            kind: OverrideKind::Replaces,
            service: id.to_string(),
            vendor_file: src.path.to_path_buf(),
            by: id.to_string(),
            file: by.clone(),
            pattern: None,
        });
        true
    }

    /// One name of service `idx`: validated and normalised, then entered in the matcher unless
    /// the clinic claims it (vendor files) or another service has it. Returns the pattern if
    /// the service now owns it.
    fn service_name(
        &mut self,
        src: Source<'_>,
        id: &str,
        idx: usize,
        n: &ServiceName,
        errs: &mut Vec<PolicyError>,
    ) -> Option<String> {
        let p = match pattern(&n.name) {
            Ok(p) => p,
            Err(m) => {
                errs.push(
                    src.error_at(m, n.at)
                        .hint("use exact names (claude.ai) or suffix wildcards (*.claude.ai)"),
                );
                return None;
            }
        };
        if n.kind == NameKind::TenantHost && !is_one_host(&p) {
            errs.push(
                src.error_at(format!("tenant host {p:?} of service {id:?} must be one exact host name on a shared platform"), n.at)
                    .hint("list the tenant's own host (bucket.s3.amazonaws.com), never the platform suffix; names the vendor owns go in `domains`"),
            );
            return None;
        }
        if src.layer == Layer::Vendor && self.claimed_by_clinic(src, id, &p) {
            return None;
        }
        if let Some((other, ofile)) = self.owner.get(&p) {
            if *other != idx {
                errs.push(
                    src.error_at(
                        format!(
                            "domain {p:?} of service {id:?} is already claimed by service {:?}",
                            self.cat.services[*other].id
                        ),
                        n.at,
                    )
                    .hint(format!(
                        "a name belongs to one service; remove it from one of them (other: {})",
                        ofile.display()
                    )),
                );
            }
            return None;
        }
        self.enter(src, idx, &p);
        Some(p)
    }

    /// A vendor service's name that a clinic service lists: the clinic's service keeps it, and
    /// the override is kept for `policy check` and `catalog list` to report.
    fn claimed_by_clinic(&mut self, src: Source<'_>, id: &str, p: &str) -> bool {
        let Some((by, bfile)) = self.clinic.patterns.get(p) else {
            return false;
        };
        self.cat.overrides.push(Override {
            kind: OverrideKind::Claims,
            service: id.to_string(),
            vendor_file: src.path.to_path_buf(),
            by: by.clone(),
            file: bfile.clone(),
            pattern: Some(p.to_string()),
        });
        true
    }

    /// Give pattern `p` to service `idx`: its owner, its index in `patterns`, its matcher entry.
    fn enter(&mut self, src: Source<'_>, idx: usize, p: &str) {
        let cat = &mut self.cat;
        self.owner
            .insert(p.to_string(), (idx, src.path.to_path_buf()));
        cat.patterns.push(p.to_string());
        cat.pattern_services.push(idx);
        cat.catalog.insert(p, (idx, cat.patterns.len() - 1));
    }

    /// A declared vendor's services list only names under the vendor's own domains (a service
    /// whose vendor is not declared is not checked). Runs once every file is loaded.
    fn check_vendor_domains(&mut self, errs: &mut Vec<PolicyError>) {
        for o in std::mem::take(&mut self.to_check) {
            let s = &self.cat.services[o.service];
            let vendors = &self.cat.vendors;
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
    }
}

/// Every name a service lists, in the order errors are reported: its domains, its templates
/// expanded per region (a template without `{region}` or `regions` is an error), its tenant hosts.
fn service_names(
    src: Source<'_>,
    s: &config::ServiceDef,
    errs: &mut Vec<PolicyError>,
) -> Vec<ServiceName> {
    let entry = |kind| {
        move |d: &toml::Spanned<String>| ServiceName {
            name: d.get_ref().clone(),
            at: d.span().start,
            kind,
        }
    };
    let mut names: Vec<ServiceName> = s.domains.iter().map(entry(NameKind::Domain)).collect();
    for t in &s.templates {
        if !t.get_ref().contains("{region}") || s.regions.is_empty() {
            errs.push(src.error_at(
                format!(
                    "template {:?} needs a {{region}} placeholder and a `regions` list",
                    t.get_ref()
                ),
                t.span().start,
            ));
            continue;
        }
        names.extend(
            region_names(t.get_ref(), &s.regions).map(|name| ServiceName {
                name,
                at: t.span().start,
                kind: NameKind::Domain,
            }),
        );
    }
    names.extend(s.tenant_hosts.iter().map(entry(NameKind::TenantHost)));
    names
}

/// The loaded service: its definition with the patterns it owns and the file it came from.
fn new_service(
    s: config::ServiceDef,
    file: &Path,
    patterns: Vec<String>,
    tenant_hosts: Vec<String>,
) -> Service {
    Service {
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
        file: file.to_path_buf(),
        patterns,
        addresses: Vec::new(),
        ports: Vec::new(),
    }
}

/// A service's `source_date` (of its BAA source) is a date or a month.
fn check_source_date(src: Source<'_>, s: &config::ServiceDef, errs: &mut Vec<PolicyError>) {
    let Some(d) = &s.source_date else {
        return;
    };
    if !valid_date(d.get_ref(), true) {
        errs.push(
            src.error_at(
                format!(
                    "source_date {:?} of service {:?} is not a date",
                    d.get_ref(),
                    s.id
                ),
                d.span().start,
            )
            .hint("write the date of the BAA source as YYYY-MM-DD (or YYYY-MM)"),
        );
    }
}

/// A tenant host is one exact name with at least three labels (`bucket.s3.amazonaws.com`): a
/// wildcard or a bare registrable domain would take the whole shared platform.
fn is_one_host(p: &str) -> bool {
    !p.starts_with("*.") && p.split('.').count() >= 3
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
