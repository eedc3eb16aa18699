//! Transport checksums as the receiving host checks them: a segment with a wrong checksum never
//! reaches the server's socket (a desync trick), so it may be decided on but must never settle
//! a flow. Checked only where the capture has them whole ([`super::emit::Ctx::check`]).

use std::net::IpAddr;

use etherparse::{TcpSlice, UdpSlice};

use super::emit::Ctx;

/// Is the TCP checksum right (or not checkable)?
pub(super) fn tcp_ok(cx: &Ctx, t: &TcpSlice<'_>) -> bool {
    if !cx.check {
        return true;
    }
    let calc = match (cx.src, cx.dst) {
        (IpAddr::V4(s), IpAddr::V4(d)) => t.calc_checksum_ipv4(s.octets(), d.octets()).ok(),
        (IpAddr::V6(s), IpAddr::V6(d)) => t.calc_checksum_ipv6(s.octets(), d.octets()).ok(),
        _ => None,
    };
    calc.is_none_or(|c| c == t.checksum())
}

/// Is the UDP checksum right (or absent: zero over IPv4, or not checkable)?
pub(super) fn udp_ok(cx: &Ctx, u: &UdpSlice<'_>) -> bool {
    if !cx.check || u.checksum() == 0 && cx.src.is_ipv4() {
        return true;
    }
    let h = u.to_header();
    let calc = match (cx.src, cx.dst) {
        (IpAddr::V4(s), IpAddr::V4(d)) => h
            .calc_checksum_ipv4_raw(s.octets(), d.octets(), u.payload())
            .ok(),
        (IpAddr::V6(s), IpAddr::V6(d)) => h
            .calc_checksum_ipv6_raw(s.octets(), d.octets(), u.payload())
            .ok(),
        _ => None,
    };
    calc.is_none_or(|c| c == u.checksum())
}
