//! DNS message decoder (also as DNS over TCP framing through the header heuristic), and the
//! ECHConfigList reader of HTTPS/SVCB answers.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = shadowgate::decode::dns::looks_like_dns(data);
    if let Ok(m) = shadowgate::decode::dns::parse(data) {
        let _ = m.ech();
    }
    let _ = shadowgate::decode::ech::public_names(data);
});
