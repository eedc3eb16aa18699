//! TLS first flight (records -> ClientHello) and a bare handshake message; HTTP and SOCKS
//! requests; VPN handshakes (on the IKE ports, with and without the NAT-T marker, and any other).
#![no_main]
use libfuzzer_sys::fuzz_target;
use shadowgate::decode::tls;

fuzz_target!(|data: &[u8]| {
    let _ = tls::parse_first_flight(data);
    let _ = tls::parse_handshake(data);
    let _ = shadowgate::decode::http::parse_request(data);
    let _ = shadowgate::decode::socks::parse(data);
    for ports in [(500, 500), (4500, 4500), (40000, 51820)] {
        let _ = shadowgate::decode::vpn::classify(ports.0, ports.1, data);
    }
});
