//! Well-known ports the layers agree on. A leaf module: UDP, the TCP stream classifier and the
//! fast path all ask it, and it imports none of them.

/// DNS (53), multicast DNS (5353) and LLMNR (5355): the DNS wire format on its own ports, read
/// without a flow entry over UDP and as DNS over TCP without looking at the bytes first.
#[inline]
pub(super) fn is_dns_port(p: u16) -> bool {
    matches!(p, 53 | 5353 | 5355)
}
