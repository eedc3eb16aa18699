//! TLS first flight (records -> ClientHello) and a bare handshake message.
#![no_main]
use libfuzzer_sys::fuzz_target;
use shadowgate::decode::tls;

fuzz_target!(|data: &[u8]| {
    let _ = tls::parse_first_flight(data);
    let _ = tls::parse_handshake(data);
    let _ = shadowgate::decode::http::parse_request(data);
    let _ = shadowgate::decode::socks::parse(data);
});
