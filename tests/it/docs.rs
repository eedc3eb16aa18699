//! The documentation: the mdBook in `docs/` builds, every relative link and `#anchor` in the
//! generated HTML resolves, every page of `docs/src/` is in `SUMMARY.md`, the links of
//! README.md (and the other Markdown files at the top) resolve, and the configuration reference
//! names every key the configuration accepts (the keys are a contract).
//!
//! Needs `mdbook` (`.ci/run` installs it: `cargo install mdbook --locked --version 0.4.52`).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::common::files::{root, TempDir};

/// The `mdbook` program: on the PATH, else where `cargo install` puts it.
fn mdbook() -> PathBuf {
    let on_path = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .unwrap_or_default();
    let cargo_home = std::env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cargo")));
    on_path
        .into_iter()
        .chain(cargo_home.map(|c| c.join("bin")))
        .map(|d| d.join("mdbook"))
        .find(|p| p.is_file())
        .unwrap_or_else(|| {
            panic!(
                "mdbook is not installed (not on the PATH nor in ~/.cargo/bin): run \
                 `cargo install mdbook --locked --version 0.4.52 --no-default-features --features search` \
                 (.ci/run does)"
            )
        })
}

/// Every file under `dir` with extension `ext`, sorted.
fn files(dir: &Path, ext: &str, out: &mut Vec<PathBuf>) {
    let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .collect();
    entries.sort();
    for p in entries {
        if p.is_dir() {
            files(&p, ext, out);
        } else if p.extension().is_some_and(|x| x == ext) {
            out.push(p);
        }
    }
}

/// The values of `attr="..."` in an HTML text.
fn attr_values<'a>(html: &'a str, attr: &str) -> Vec<&'a str> {
    let pat = format!(" {attr}=\"");
    html.match_indices(&pat)
        .filter_map(|(at, _)| {
            let rest = &html[at + pat.len()..];
            rest.find('"').map(|end| &rest[..end])
        })
        .collect()
}

/// `%20` and the other escapes mdBook writes in links, decoded.
fn unescape(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            if let Ok(v) = u8::from_str_radix(&s[i + 1..i + 3], 16) {
                out.push(v);
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).replace("&amp;", "&")
}

/// A link that leaves the book or the checkout (not checked here).
fn external(link: &str) -> bool {
    link.contains("://") || link.starts_with("mailto:") || link.starts_with("javascript:")
}

#[test]
fn the_book_builds_and_every_link_and_anchor_resolves() {
    let out = TempDir::new("docs", "book");
    let built = Command::new(mdbook())
        .arg("build")
        .arg(root().join("docs"))
        .arg("--dest-dir")
        .arg(&out.0)
        .output()
        .unwrap();
    assert!(
        built.status.success(),
        "mdbook build docs failed (a chapter in SUMMARY.md without its file is an error: \
         create-missing = false):\n{}",
        String::from_utf8_lossy(&built.stderr)
    );

    let mut pages = Vec::new();
    files(&out.0, "html", &mut pages);
    // 404.html links from the site root ("/"), which only a web server resolves.
    pages.retain(|p| p.file_name().is_some_and(|n| n != "404.html"));
    assert!(pages.len() > 10, "the book has pages: {pages:?}");
    let ids: BTreeMap<PathBuf, BTreeSet<String>> = pages
        .iter()
        .map(|p| {
            let html = std::fs::read_to_string(p).unwrap();
            let ids = attr_values(&html, "id").into_iter().map(unescape).collect();
            (p.clone(), ids)
        })
        .collect();

    let mut broken = Vec::new();
    let mut checked = 0;
    for page in &pages {
        let html = std::fs::read_to_string(page).unwrap();
        for link in attr_values(&html, "href") {
            if external(link) || link.is_empty() {
                continue;
            }
            let (path, anchor) = match link.split_once('#') {
                Some((p, a)) => (p, Some(unescape(a))),
                None => (link, None),
            };
            let target = if path.is_empty() {
                page.clone()
            } else {
                page.parent().unwrap().join(unescape(path))
            };
            let name = page.strip_prefix(&out.0).unwrap().display().to_string();
            checked += 1;
            if !target.exists() {
                broken.push(format!("{name}: {link} (no such file)"));
                continue;
            }
            if let Some(a) = anchor.filter(|a| !a.is_empty()) {
                let target = std::fs::canonicalize(&target).unwrap();
                let found = ids
                    .iter()
                    .find(|(p, _)| std::fs::canonicalize(p).unwrap() == target)
                    .is_some_and(|(_, set)| set.contains(&a));
                if !found {
                    broken.push(format!("{name}: {link} (no id {a:?} there)"));
                }
            }
        }
    }
    assert!(checked > 100, "links checked: {checked}");
    assert!(
        broken.is_empty(),
        "broken links in the book (fix the Markdown in docs/src/):\n{}",
        broken.join("\n")
    );
}

/// The Markdown links `[text](target)` of a text, without the ones in code.
fn markdown_links(text: &str) -> Vec<String> {
    let mut links = Vec::new();
    let mut in_fence = false;
    for line in text.lines() {
        if line.trim_start().starts_with("```") {
            in_fence = !in_fence;
            continue;
        }
        if in_fence {
            continue;
        }
        // Inline code spans hold no links.
        let plain: String = line
            .split('`')
            .enumerate()
            .filter(|(i, _)| i % 2 == 0)
            .map(|(_, s)| s)
            .collect::<Vec<_>>()
            .join(" ");
        for (at, _) in plain.match_indices("](") {
            let rest = &plain[at + 2..];
            if let Some(end) = rest.find(')') {
                links.push(rest[..end].to_string());
            }
        }
    }
    links
}

/// The anchors a Markdown file's headings get (GitHub's and mdBook's rule: lower case, spaces
/// to `-`, punctuation but `-` and `_` dropped).
fn heading_anchors(text: &str) -> BTreeSet<String> {
    let mut in_fence = false;
    let mut out = BTreeSet::new();
    for line in text.lines() {
        if line.trim_start().starts_with("```") {
            in_fence = !in_fence;
        }
        if in_fence || !line.starts_with('#') {
            continue;
        }
        let title = line.trim_start_matches('#').trim();
        let slug: String = title
            .chars()
            .filter_map(|c| {
                if c.is_alphanumeric() || c == '-' || c == '_' {
                    Some(c.to_lowercase().next().unwrap())
                } else if c == ' ' {
                    Some('-')
                } else {
                    None
                }
            })
            .collect();
        out.insert(slug);
    }
    out
}

#[test]
fn readme_and_top_level_markdown_links_resolve() {
    let mut broken = Vec::new();
    let mut checked = 0;
    for doc in ["README.md", "ARCHITECTURE.md", "deploy/OPERATIONS.md"] {
        let file = root().join(doc);
        let text = std::fs::read_to_string(&file).unwrap();
        for link in markdown_links(&text) {
            if external(&link) {
                continue;
            }
            checked += 1;
            let (path, anchor) = match link.split_once('#') {
                Some((p, a)) => (p.to_string(), Some(a.to_string())),
                None => (link.clone(), None),
            };
            let target = if path.is_empty() {
                file.clone()
            } else {
                file.parent().unwrap().join(&path)
            };
            if !target.exists() {
                broken.push(format!("{doc}: {link} (no such file)"));
                continue;
            }
            if let Some(a) = anchor {
                let t = std::fs::read_to_string(&target).unwrap_or_default();
                if !heading_anchors(&t).contains(&a) {
                    broken.push(format!("{doc}: {link} (no heading gives #{a})"));
                }
            }
        }
    }
    assert!(checked >= 20, "README.md links checked: {checked}");
    assert!(broken.is_empty(), "broken links:\n{}", broken.join("\n"));
}

#[test]
fn every_page_of_the_book_is_in_its_summary() {
    let src = root().join("docs/src");
    let summary = std::fs::read_to_string(src.join("SUMMARY.md")).unwrap();
    let listed: BTreeSet<String> = markdown_links(&summary).into_iter().collect();
    let mut pages = Vec::new();
    files(&src, "md", &mut pages);
    let orphans: Vec<String> = pages
        .iter()
        .map(|p| p.strip_prefix(&src).unwrap().display().to_string())
        .filter(|p| p != "SUMMARY.md" && !listed.contains(p))
        .collect();
    assert!(
        orphans.is_empty(),
        "pages of docs/src/ missing from SUMMARY.md (mdBook would not build them): {orphans:?}"
    );
}

/// The keys a section of `shadowgate.toml` accepts, as the loader says when it meets an unknown
/// one ("unknown field `zz_unknown`, expected one of `a`, `b`").
fn accepted_keys(dir: &Path, toml: &str) -> Vec<String> {
    let f = dir.join("keys.toml");
    std::fs::write(&f, toml).unwrap();
    let e = shadowgate::config::Config::load(&f)
        .err()
        .unwrap_or_else(|| panic!("{toml:?} loaded, with an unknown key"))
        .to_string();
    let expected = e
        .split_once("expected")
        .unwrap_or_else(|| panic!("{toml:?}: {e}"))
        .1;
    let keys: Vec<String> = expected
        .split('`')
        .skip(1)
        .step_by(2)
        .map(str::to_string)
        .collect();
    assert!(!keys.is_empty(), "{toml:?}: {e}");
    keys
}

#[test]
fn the_configuration_reference_names_every_key() {
    let dir = TempDir::new("docs", "keys");
    let doc = std::fs::read_to_string(root().join("docs/src/configuration.md")).unwrap();
    // The part of the page about `section`: from its heading to the next one of its level.
    let part = |section: &str| -> String {
        let head = format!("## `{section}`");
        let at = doc
            .find(&head)
            .unwrap_or_else(|| panic!("docs/src/configuration.md has no heading {head}"));
        let rest = &doc[at + head.len()..];
        rest[..rest.find("\n## ").unwrap_or(rest.len())].to_string()
    };
    let cases: &[(&str, &str, &str)] = &[
        ("", "zz_unknown = 1\n", "the sections"),
        ("[sensor]", "[sensor]\nzz_unknown = 1\n", "[sensor]"),
        ("[policy]", "[policy]\nzz_unknown = 1\n", "[policy]"),
        ("[store]", "[store]\nzz_unknown = 1\n", "[store]"),
        (
            "[[sink]]",
            "[[sink]]\nname = \"a\"\ntype = \"jsonl\"\nzz_unknown = 1\n",
            "jsonl sink",
        ),
        (
            "[[sink]]",
            "[[sink]]\nname = \"a\"\ntype = \"syslog\"\nzz_unknown = 1\n",
            "syslog sink",
        ),
        (
            "[[sink]]",
            "[[sink]]\nname = \"a\"\ntype = \"webhook\"\nzz_unknown = 1\n",
            "webhook sink",
        ),
        ("[capture]", "[capture]\nzz_unknown = 1\n", "[capture]"),
        ("[enforce]", "[enforce]\nzz_unknown = 1\n", "[enforce]"),
        ("[dns]", "[dns]\nzz_unknown = 1\n", "[dns]"),
        ("[portal]", "[portal]\nzz_unknown = 1\n", "[portal]"),
        ("[metrics]", "[metrics]\nzz_unknown = 1\n", "[metrics]"),
        ("[devices]", "[devices]\nzz_unknown = 1\n", "[devices]"),
        ("[report]", "[report]\nzz_unknown = 1\n", "[report]"),
        (
            "[report]",
            "[report.smtp]\nzz_unknown = 1\n",
            "[report.smtp]",
        ),
        (
            "[report]",
            "[report.schedule]\nzz_unknown = 1\n",
            "[report] schedule",
        ),
    ];
    let mut missing = Vec::new();
    for (section, toml, what) in cases {
        let text = if section.is_empty() {
            doc.clone()
        } else {
            part(section)
        };
        for key in accepted_keys(&dir.0, toml) {
            let named = if section.is_empty() {
                // A section is documented by its heading: `[name]` or `[[name]]`.
                text.contains(&format!("`[{key}]`")) || text.contains(&format!("`[[{key}]]`"))
            } else {
                text.contains(&format!("`{key}`"))
            };
            if !named {
                missing.push(format!("{what}: `{key}`"));
            }
        }
    }
    assert!(
        missing.is_empty(),
        "keys the configuration accepts that docs/src/configuration.md does not document:\n{}",
        missing.join("\n")
    );
}
