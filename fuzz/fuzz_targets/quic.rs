//! QUIC long header parsing, Initial decryption with keys derived from the packet's own DCID,
//! and CRYPTO frame walking on the plaintext (and on the raw input, to reach frame parsing
//! without needing a valid AEAD tag).
#![no_main]
use libfuzzer_sys::fuzz_target;
use shadowgate::decode::quic;

fuzz_target!(|data: &[u8]| {
    let _ = quic::looks_like_quic_long(data);
    if let Ok(h) = quic::parse_long_header(data) {
        if let Some(keys) = quic::InitialKeys::client(h.version, h.dcid) {
            if let Ok(plain) = keys.decrypt(&data[..h.packet_len().min(data.len())], &h) {
                let _ = quic::crypto_frames(&plain);
            }
        }
    }
    let _ = quic::crypto_frames(data);
});
