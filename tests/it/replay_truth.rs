//! Replays every capture under `pcaps/` that has a `.truth.json` (what tshark extracts from it)
//! and checks, per file and per kind, that shadowgate reports every SNI, QUIC SNI, DNS question
//! name and HTTP host in the truth file, and no name that is not there. Known differences are
//! listed in EXCEPTIONS with their reason; an exception that no longer applies fails the test.

use crate::common::captures::captures;
use crate::common::files::root;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use shadowgate::flow::{Config, Kind, Sensor};

/// (file suffix, category, name, reason): names tshark reports that shadowgate does not.
const MISSING_OK: &[(&str, &str, &str, &str)] = &[
    ("ndpi/malformed-dns.pcap", "dns", "<name too long>", "tshark prints a placeholder for a name over 255 bytes; shadowgate counts the message as malformed DNS"),
    ("tcpdump/dns-fwdptr.pcap", "dns", "<name too long>", "forward compression pointers make an over-long name; counted as malformed DNS"),
    ("zeek/dns-invalid-names.pcap", "dns", "<name contains a pointer that loops>", "compression loop; counted as malformed DNS"),
    ("suricata-verify/dns-over-http2-get.pcap", "dns", "*", "DNS inside cleartext HTTP/2 (h2c DoH) is not decoded; DoH in practice runs over TLS and is seen by its resolver SNI"),
    ("suricata-verify/dns-over-http2-post.pcap", "dns", "*", "DNS inside cleartext HTTP/2 (h2c DoH) is not decoded; see above"),
];

/// (file suffix, category, name, reason): names shadowgate reports that tshark does not.
const EXTRA_OK: &[(&str, &str, &str, &str)] = &[];

fn norm(n: &str) -> String {
    if n == "<Root>" {
        return ".".into();
    }
    let n = n.to_ascii_lowercase();
    n.strip_suffix('.').unwrap_or(&n).to_string()
}

fn host(h: &str) -> String {
    let h = h.trim();
    let h = if let Some(r) = h.strip_prefix('[') {
        r.split(']').next().unwrap_or("").to_string()
    } else if h.matches(':').count() == 1 {
        h.split(':').next().unwrap_or("").to_string()
    } else {
        h.to_string()
    };
    norm(&h)
}

fn truth_path(p: &Path) -> PathBuf {
    p.with_extension("truth.json")
}

const CATS: [&str; 4] = ["sni", "quic_sni", "dns", "http"];

#[test]
fn every_capture_matches_its_truth() {
    check_truth(1);
}

/// The same over a sharded replay on two threads (`replay --threads 2`).
#[test]
fn every_capture_matches_its_truth_on_two_threads() {
    check_truth(2);
}

fn check_truth(threads: usize) {
    let root = root().join("pcaps");
    let mut files = Vec::new();
    captures(&root, &mut files);
    files.sort();
    let files: Vec<PathBuf> = files
        .into_iter()
        .filter(|p| truth_path(p).exists())
        .collect();
    assert!(
        files.len() >= 82,
        "expected the bundled corpus under pcaps/, found {} captures",
        files.len()
    );
    let mut used_missing = BTreeSet::new();
    let mut failures = Vec::new();
    for f in &files {
        let rel = f
            .strip_prefix(&root)
            .unwrap()
            .to_string_lossy()
            .replace('\\', "/");
        let truth: serde_json::Value =
            serde_json::from_slice(&std::fs::read(truth_path(f)).unwrap()).unwrap();
        let list = |k: &str| -> Vec<String> {
            truth[k]
                .as_array()
                .map(|a| {
                    a.iter()
                        .filter_map(|v| v.as_str().map(str::to_string))
                        .collect()
                })
                .unwrap_or_default()
        };
        let expected: [BTreeSet<String>; 4] = [
            list("sni").iter().map(|s| norm(s)).collect(),
            list("quic_sni").iter().map(|s| norm(s)).collect(),
            list("dns_queries").iter().map(|s| norm(s)).collect(),
            // HTTP/1.x Host and, for h2c requests, HTTP/2's :authority.
            list("http_hosts")
                .iter()
                .chain(list("http2_authority").iter())
                .map(|s| host(s))
                .collect(),
        ];
        let mut got: [BTreeSet<String>; 4] = Default::default();
        let mut sensor = Sensor::new(Config::default());
        let mut shards = shadowgate::flow::sensor::shards(&Config::default(), threads);
        let mut record = |o: &shadowgate::flow::Observation| {
            let i = match o.kind {
                Kind::TlsClientHello => 0,
                Kind::QuicInitial => 1,
                Kind::DnsQuery | Kind::DnsAnswer => 2,
                Kind::HttpRequest => 3,
                // Proxy destinations have no tshark truth field.
                Kind::ProxyConnect => return,
            };
            if let Some(n) = &o.name {
                got[i].insert(n.clone());
            }
            // An mDNS message's further questions are its wire names (issue 23, part 6).
            if i == 2 {
                got[i].extend(o.wire_names.iter().cloned());
            }
        };
        if shards.is_empty() {
            let _ = shadowgate::replay::replay_file(f, &mut sensor, &mut record, |_| {});
            shadowgate::replay::finish(&mut sensor, &mut record);
        } else {
            let _ = shadowgate::replay::replay_file_sharded(
                f,
                &mut shards,
                &shadowgate::replay::NoPrepare,
                |o, (), _| record(o),
                |_| {},
            );
            shadowgate::replay::finish_sharded(&mut shards, &mut record);
        }
        for (i, cat) in CATS.iter().enumerate() {
            for name in expected[i].difference(&got[i]) {
                let ok = MISSING_OK.iter().position(|(file, c, n, _)| {
                    rel.ends_with(file) && c == cat && (*n == name || *n == "*")
                });
                match ok {
                    Some(k) => {
                        used_missing.insert(k);
                    }
                    None => failures.push(format!(
                        "{rel}: {cat} {name:?} is in the truth file but was not reported"
                    )),
                }
            }
            for name in got[i].difference(&expected[i]) {
                if !EXTRA_OK
                    .iter()
                    .any(|(file, c, n, _)| rel.ends_with(file) && c == cat && n == name)
                {
                    failures.push(format!(
                        "{rel}: {cat} {name:?} was reported but is not in the truth file"
                    ));
                }
            }
        }
    }
    for (k, (file, cat, name, _)) in MISSING_OK.iter().enumerate() {
        if !used_missing.contains(&k) {
            failures.push(format!(
                "exception no longer needed, remove it: {file} {cat} {name}"
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} mismatches over {} captures:\n{}",
        failures.len(),
        files.len(),
        failures.join("\n")
    );
}

#[test]
fn grease_ech_hellos_are_decided_by_their_sni() {
    // Chrome sends a GREASE ECH extension in every hello, with the real SNI in the clear: the
    // SNI decides, so no names are inferred from DNS even though the same capture resolved them.
    let root = root().join("pcaps/public");
    let mut sensor = Sensor::new(Config::default());
    let mut obs = Vec::new();
    let f = root.join("retina/quic-chrome-dns.pcap");
    shadowgate::replay::replay_file(&f, &mut sensor, |o| obs.push(o.clone()), |_| {}).unwrap();
    let ech: Vec<_> = obs.iter().filter(|o| o.kind == Kind::QuicInitial).collect();
    assert!(!ech.is_empty());
    for o in ech {
        assert!(o.flags.contains(&shadowgate::flow::Flag::Ech), "{o:?}");
        assert!(o.name.is_some(), "{o:?}");
        assert!(o.inferred_names.is_empty(), "{o:?}");
    }
}
