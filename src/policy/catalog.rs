//! The service catalogue: loading `catalog/*.toml` into services and a domain matcher, checking
//! and normalising its domain patterns, and looking a name up in it.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use super::config::{self, Category};
use super::error::{read, toml_error};
use super::matcher::{normalize, DomainTrie};
use super::{CatalogMatch, Policy, PolicyError, Service};

/// The loaded catalogue, before the policy is compiled against it.
pub(super) struct Catalog {
    pub(super) services: Vec<Service>,
    /// Pattern -> (service index, index into `patterns`).
    pub(super) catalog: DomainTrie<(usize, usize)>,
    pub(super) patterns: Vec<String>,
    /// Service id -> service index.
    pub(super) ids: HashMap<String, usize>,
}

/// Load `dir/catalog/*.toml` (in file name order). All errors are collected in `errs`.
pub(super) fn load(dir: &Path, errs: &mut Vec<PolicyError>) -> Catalog {
    let mut services = Vec::new();
    let mut catalog = DomainTrie::new();
    let mut patterns = Vec::new();
    let mut owner: HashMap<String, (usize, PathBuf)> = HashMap::new();
    let mut ids: HashMap<String, usize> = HashMap::new();

    let cat_dir = dir.join("catalog");
    let mut files: Vec<PathBuf> = match std::fs::read_dir(&cat_dir) {
        Ok(rd) => rd
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|e| e == "toml"))
            .collect(),
        Err(e) => {
            errs.push(
                PolicyError::new(&cat_dir, format!("cannot read the catalogue directory: {e}"))
                    .hint("a policy directory holds policy.toml and catalog/*.toml (see policies/ in the source tree)"),
            );
            Vec::new()
        }
    };
    files.sort();
    for f in &files {
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
        for sdef in file.service {
            let span = sdef.span();
            let s = sdef.into_inner();
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
            let mut all: Vec<(String, usize)> = s
                .domains
                .iter()
                .map(|d| (d.get_ref().clone(), d.span().start))
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
                    all.push((t.get_ref().replace("{region}", r), t.span().start));
                }
            }
            if all.is_empty() && s.category != Category::ApprovedRoute {
                errs.push(
                    PolicyError::new(f, format!("service {:?} has no domains", s.id))
                        .at(&text, span.start),
                );
            }
            let mut own = Vec::new();
            for (d, at) in all {
                match pattern(&d) {
                    Ok(p) => {
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
                        catalog.insert(&p, (idx, patterns.len() - 1));
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
                shared_tenant: s.shared_tenant,
                file: f.clone(),
                patterns: own,
            });
        }
    }
    Catalog {
        services,
        catalog,
        patterns,
        ids,
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
    fn patterns() {
        assert_eq!(pattern("*.Claude.AI").unwrap(), "*.claude.ai");
        assert!(pattern("claude.*").is_err());
        assert!(pattern("com").is_err());
        assert!(pattern("*.com").is_ok());
    }
}
