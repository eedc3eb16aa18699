//! Name normalisation (IDN to punycode) and catalogue lookup on arbitrary names, with the
//! bundled policy, and the domain-trie insert path with arbitrary patterns.
#![no_main]
use std::sync::LazyLock;

use libfuzzer_sys::fuzz_target;
use shadowgate::policy::matcher::{normalize, DomainTrie};
use shadowgate::policy::Policy;

static POLICY: LazyLock<Policy> =
    LazyLock::new(|| Policy::load(std::path::Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../policies"))).expect("bundled policy"));

fuzz_target!(|data: &[u8]| {
    let Ok(s) = std::str::from_utf8(data) else { return };
    if let Ok(n) = normalize(s) {
        let _ = POLICY.classify(&n);
        let mut t = DomainTrie::new();
        t.insert(&n, ());
        assert!(t.lookup(&n).is_some() || n.starts_with("*."));
    }
});
