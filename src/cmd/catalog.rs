//! `shadowgate catalog list|diff`: the service catalogue of a policy (or catalogue) directory,
//! and what changed between two of them (a catalogue upgrade, before it is installed).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use serde_json::json;

use crate::policy::{load_catalog, CatalogView, Category, Service};

#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Table,
    Json,
}

#[derive(clap::Subcommand)]
pub enum Args {
    /// List the catalogued services: id, category, vendor, BAA summary, domain count.
    List {
        /// Policy directory (with catalog/ and the clinic's local/) or a catalogue directory.
        #[arg(default_value = "policies")]
        dir: PathBuf,
        /// Only services of this category.
        #[arg(long, value_parser = clap::builder::PossibleValuesParser::new(Category::ALL.map(Category::as_str)))]
        category: Option<String>,
        #[arg(long, value_enum, default_value = "table")]
        format: Format,
    },
    /// What changed from catalogue A to catalogue B: services added, removed, and those whose
    /// category or domains changed (exit 0 whatever the differences).
    Diff {
        /// The catalogue in force (policy or catalogue directory).
        a: PathBuf,
        /// The new catalogue.
        b: PathBuf,
        #[arg(long, value_enum, default_value = "table")]
        format: Format,
    },
}

pub fn run(a: Args) -> ExitCode {
    match a {
        Args::List {
            dir,
            category,
            format,
        } => list(&dir, category.as_deref(), format),
        Args::Diff { a, b, format } => diff(&a, &b, format),
    }
}

fn load(dir: &Path) -> Result<CatalogView, ExitCode> {
    load_catalog(dir).map_err(|e| {
        eprintln!(
            "{e}\nshadowgate: catalogue {}: fix it first (`shadowgate policy check`)",
            dir.display()
        );
        ExitCode::FAILURE
    })
}

/// The first sentence of a BAA statement, at most `max` characters.
fn baa_summary(baa: &str, max: usize) -> String {
    let first = baa
        .split_inclusive(". ")
        .next()
        .unwrap_or(baa)
        .trim()
        .trim_end_matches('.');
    if first.chars().count() <= max {
        first.to_string()
    } else {
        let cut: String = first.chars().take(max.saturating_sub(3)).collect();
        format!("{}...", cut.trim_end())
    }
}

fn versions(c: &CatalogView) -> String {
    let mut v: Vec<String> = Vec::new();
    for x in &c.versions {
        let s = format!("{} ({})", x.version, x.date);
        if !v.contains(&s) {
            v.push(s);
        }
    }
    if v.is_empty() {
        "no version".into()
    } else {
        v.join(", ")
    }
}

fn list(dir: &Path, category: Option<&str>, format: Format) -> ExitCode {
    let c = match load(dir) {
        Ok(c) => c,
        Err(code) => return code,
    };
    let services: Vec<&Service> = c
        .services
        .iter()
        .filter(|s| category.is_none_or(|k| s.category.as_str() == k))
        .collect();
    let r = super::out::print_with(|w| match format {
        Format::Json => {
            let v = json!({
                "dir": c.dir.display().to_string(),
                "versions": c.versions.iter().map(|v| json!({"file": v.file.display().to_string(), "version": v.version, "date": v.date})).collect::<Vec<_>>(),
                "overrides": c.overrides,
                "services": services.iter().map(|s| json!({
                    "id": s.id,
                    "name": s.name,
                    "category": s.category,
                    "vendor": s.vendor,
                    "kind": s.kind,
                    "baa": s.baa,
                    "baa_summary": baa_summary(&s.baa, 200),
                    "baa_source": s.baa_source,
                    "source_date": s.source_date,
                    "domains": s.patterns.len(),
                    "addresses": s.addresses.iter().map(|a| a.to_string()).collect::<Vec<_>>(),
                    "ports": s.ports,
                    "file": s.file.display().to_string(),
                })).collect::<Vec<_>>(),
            });
            serde_json::to_writer_pretty(&mut *w, &v)?;
            w.write_all(b"\n")
        }
        Format::Table => {
            let iw = services
                .iter()
                .map(|s| s.id.len())
                .max()
                .unwrap_or(2)
                .max(2);
            let cw = services
                .iter()
                .map(|s| s.category.as_str().len())
                .max()
                .unwrap_or(8)
                .max(8);
            let vw = services
                .iter()
                .map(|s| s.vendor.chars().count())
                .max()
                .unwrap_or(6)
                .clamp(6, 24);
            writeln!(
                w,
                "{:iw$}  {:cw$}  {:vw$}  {:>7}  BAA",
                "ID", "CATEGORY", "VENDOR", "DOMAINS"
            )?;
            for s in &services {
                let vendor: String = s.vendor.chars().take(vw).collect();
                writeln!(
                    w,
                    "{:iw$}  {:cw$}  {:vw$}  {:>7}  {}",
                    s.id,
                    s.category.as_str(),
                    vendor,
                    s.patterns.len(),
                    baa_summary(&s.baa, 70)
                )?;
            }
            writeln!(
                w,
                "{} services; catalogue {}; {} clinic override{}",
                services.len(),
                versions(&c),
                c.overrides.len(),
                if c.overrides.len() == 1 { "" } else { "s" }
            )?;
            for o in &c.overrides {
                writeln!(w, "override: {o}")?;
            }
            Ok(())
        }
    });
    super::out::exit(r, ExitCode::SUCCESS)
}

/// A service whose category or domains differ between the two catalogues.
struct Changed<'a> {
    id: &'a str,
    category: Option<(Category, Category)>,
    added: Vec<&'a str>,
    removed: Vec<&'a str>,
    /// `addresses` and `ports` (as `port N`) added and removed.
    addr_added: Vec<String>,
    addr_removed: Vec<String>,
}

/// A service's `addresses` and `ports` as words (`1.1.1.1/32`, `port 853`).
fn addr_words(s: &Service) -> BTreeSet<String> {
    s.addresses
        .iter()
        .map(|a| a.to_string())
        .chain(s.ports.iter().map(|p| format!("port {p}")))
        .collect()
}

fn diff(a: &Path, b: &Path, format: Format) -> ExitCode {
    let (ca, cb) = match (load(a), load(b)) {
        (Ok(x), Ok(y)) => (x, y),
        (Err(code), _) | (_, Err(code)) => return code,
    };
    let ids = |c: &'_ CatalogView| -> BTreeMap<String, usize> {
        c.services
            .iter()
            .enumerate()
            .map(|(i, s)| (s.id.clone(), i))
            .collect()
    };
    let (ia, ib) = (ids(&ca), ids(&cb));
    let added: Vec<&Service> = ib
        .iter()
        .filter(|(id, _)| !ia.contains_key(*id))
        .map(|(_, &i)| &cb.services[i])
        .collect();
    let removed: Vec<&Service> = ia
        .iter()
        .filter(|(id, _)| !ib.contains_key(*id))
        .map(|(_, &i)| &ca.services[i])
        .collect();
    let mut changed = Vec::new();
    for (id, &i) in &ia {
        let Some(&j) = ib.get(id) else { continue };
        let (x, y) = (&ca.services[i], &cb.services[j]);
        let px: BTreeSet<&str> = x.patterns.iter().map(String::as_str).collect();
        let py: BTreeSet<&str> = y.patterns.iter().map(String::as_str).collect();
        let (ax, ay) = (addr_words(x), addr_words(y));
        let c = Changed {
            id,
            category: (x.category != y.category).then_some((x.category, y.category)),
            added: py.difference(&px).copied().collect(),
            removed: px.difference(&py).copied().collect(),
            addr_added: ay.difference(&ax).cloned().collect(),
            addr_removed: ax.difference(&ay).cloned().collect(),
        };
        if c.category.is_some()
            || !c.added.is_empty()
            || !c.removed.is_empty()
            || !c.addr_added.is_empty()
            || !c.addr_removed.is_empty()
        {
            changed.push(c);
        }
    }
    let r = super::out::print_with(|w| match format {
        Format::Json => {
            let svc = |s: &&Service| json!({"id": s.id, "category": s.category, "vendor": s.vendor, "domains": s.patterns, "addresses": addr_words(s)});
            let v = json!({
                "a": {"dir": ca.dir.display().to_string(), "version": versions(&ca), "services": ca.services.len()},
                "b": {"dir": cb.dir.display().to_string(), "version": versions(&cb), "services": cb.services.len()},
                "added": added.iter().map(svc).collect::<Vec<_>>(),
                "removed": removed.iter().map(svc).collect::<Vec<_>>(),
                "changed": changed.iter().map(|c| json!({
                    "id": c.id,
                    "category": c.category.map(|(x, y)| json!({"from": x, "to": y})),
                    "domains_added": c.added,
                    "domains_removed": c.removed,
                    "addresses_added": c.addr_added,
                    "addresses_removed": c.addr_removed,
                })).collect::<Vec<_>>(),
            });
            serde_json::to_writer_pretty(&mut *w, &v)?;
            w.write_all(b"\n")
        }
        Format::Table => {
            writeln!(
                w,
                "A: {} ({} services, catalogue {})",
                ca.dir.display(),
                ca.services.len(),
                versions(&ca)
            )?;
            writeln!(
                w,
                "B: {} ({} services, catalogue {})",
                cb.dir.display(),
                cb.services.len(),
                versions(&cb)
            )?;
            for s in &added {
                let addrs = addr_words(s);
                let addrs = if addrs.is_empty() {
                    String::new()
                } else {
                    format!(
                        "; addresses: {}",
                        addrs.into_iter().collect::<Vec<_>>().join(" ")
                    )
                };
                writeln!(
                    w,
                    "+ {} ({}, {} domains: {}{addrs})",
                    s.id,
                    s.category.as_str(),
                    s.patterns.len(),
                    s.patterns.join(" ")
                )?;
            }
            for s in &removed {
                writeln!(w, "- {} ({})", s.id, s.category.as_str())?;
            }
            for c in &changed {
                let mut parts = Vec::new();
                if let Some((x, y)) = c.category {
                    parts.push(format!("category {} -> {}", x.as_str(), y.as_str()));
                }
                if !c.added.is_empty() {
                    parts.push(format!("domains added: {}", c.added.join(" ")));
                }
                if !c.removed.is_empty() {
                    parts.push(format!("domains removed: {}", c.removed.join(" ")));
                }
                if !c.addr_added.is_empty() {
                    parts.push(format!("addresses added: {}", c.addr_added.join(" ")));
                }
                if !c.addr_removed.is_empty() {
                    parts.push(format!("addresses removed: {}", c.addr_removed.join(" ")));
                }
                writeln!(w, "~ {}: {}", c.id, parts.join("; "))?;
            }
            writeln!(
                w,
                "{} added, {} removed, {} changed",
                added.len(),
                removed.len(),
                changed.len()
            )
        }
    });
    super::out::exit(r, ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn baa_summary_is_the_first_sentence_cut() {
        assert_eq!(
            baa_summary("Free plans: no BAA. Enterprise: on request.", 70),
            "Free plans: no BAA"
        );
        assert_eq!(baa_summary("abcdefghij", 6), "abc...");
        assert_eq!(baa_summary("", 6), "");
    }
}
