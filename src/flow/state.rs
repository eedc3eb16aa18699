//! Per-flow state: the canonical flow key, what a flow has been classified as, and the TCP
//! stream and QUIC CRYPTO buffers it holds until it has yielded its names.

use std::net::IpAddr;

use crate::decode::quic;

use super::desync::Watch;
use super::reassembly::SparseBuf;
use super::table::Aged;

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(super) enum State {
    New,
    Tls,
    Http,
    DnsTcp,
    DnsUdp,
    Quic,
    Socks,
    /// HTTP/2 over cleartext TCP (prior knowledge): the first request's headers.
    H2c,
    /// Judged; the client's first flight is watched for a conflicting re-send ([`super::desync`]).
    Watch,
    Done,
}

/// A flow's endpoints in a fixed order, as plain integers (hashed and compared once per packet:
/// the fast path's lookup). An IPv4 address is its 32 bits, told from IPv6 by `proto`'s bit 8.
#[derive(Hash, PartialEq, Eq, Clone, Copy)]
pub(super) struct FlowKey {
    a: u128,
    b: u128,
    /// Port of `a` in the high half, of `b` in the low half.
    ports: u32,
    /// IP protocol, plus 0x100 for IPv6.
    proto: u16,
}

#[inline]
fn bits(ip: IpAddr) -> u128 {
    match ip {
        IpAddr::V4(v) => u32::from(v) as u128,
        IpAddr::V6(v) => u128::from(v),
    }
}

impl FlowKey {
    /// Canonical key and whether the source is endpoint `a`.
    #[inline]
    pub(super) fn new(src: IpAddr, sp: u16, dst: IpAddr, dp: u16, proto: u8) -> (FlowKey, bool) {
        let (s, d) = (bits(src), bits(dst));
        let proto = proto as u16 | ((src.is_ipv6() as u16) << 8);
        if (s, sp) <= (d, dp) {
            let ports = (sp as u32) << 16 | dp as u32;
            (
                FlowKey {
                    a: s,
                    b: d,
                    ports,
                    proto,
                },
                true,
            )
        } else {
            let ports = (dp as u32) << 16 | sp as u32;
            (
                FlowKey {
                    a: d,
                    b: s,
                    ports,
                    proto,
                },
                false,
            )
        }
    }
}

pub(super) struct Stream {
    /// Sequence number of `buf` offset 0.
    pub(super) base: u32,
    pub(super) buf: SparseBuf,
    pub(super) segments: u16,
    pub(super) consumed: bool,
}

pub(super) struct QuicConn {
    pub(super) dcid: Vec<u8>,
    pub(super) version: u32,
    pub(super) keys: quic::InitialKeys,
    pub(super) crypto: SparseBuf,
    pub(super) packets: u8,
    /// The hello in `crypto` was judged (reported, or malformed): later Initials are compared
    /// with it, and one with other bytes or a new DCID is another version.
    pub(super) judged: bool,
    /// Hellos judged on this 4-tuple.
    pub(super) hellos: u8,
    /// Capture time the watch of the 4-tuple ends (0 before the first hello).
    pub(super) until: u64,
    /// The first hello's names (SNI, further SNIs, hidden by ECH/ESNI): a later version with
    /// the same is a restart, not news.
    pub(super) first: Option<Box<FirstNames>>,
    /// This version opened a new connection on the 4-tuple inside the watch (a new DCID under
    /// the same QUIC version, with another hello: neither a Retry, whose client resends the
    /// same hello, nor a version negotiation): its hello is a new visit, reported even with the
    /// first's names.
    pub(super) visit: bool,
}

/// SNI, further SNI names, and whether ECH or ESNI hides the name.
pub(super) type FirstNames = (Option<String>, Vec<String>, bool);

pub(super) struct Flow {
    /// Latest capture time of a packet of the flow (never moved back by a stray timestamp).
    pub(super) last_ns: u64,
    pub(super) state: State,
    pub(super) udp: bool,
    /// Is endpoint `a` the client? Learned from SYN, or from who speaks a client protocol first.
    pub(super) client_a: Option<bool>,
    pub(super) tries: u8,
    /// Sequence number of the first data byte per direction (ISN + 1), from the SYNs.
    pub(super) isn: [Option<u32>; 2],
    /// The SYN-ACK acknowledged the SYN's number (the handshake matched so far).
    pub(super) synack_ok: bool,
    pub(super) streams: [Option<Box<Stream>>; 2],
    pub(super) quic: Option<Box<QuicConn>>,
    /// HTTP: requests seen and a hash of the last Host, to report each new host once per flow.
    pub(super) last_host: u64,
    /// The stream passed through a SOCKS handshake: what follows is proxied.
    pub(super) proxied: bool,
    /// QUIC: the ClientHello is held until the server answers (`Sensor::held`).
    pub(super) awaiting: bool,
    /// The versions of the client's first flight, watched for a while after it was judged.
    pub(super) watch: Option<Box<Watch>>,
    /// QUIC: a hash of the Destination Connection ID of the client's last connection on the
    /// 4-tuple (0: none). Once the flow is done, an Initial under another DCID that decrypts is
    /// a new connection on the same 4-tuple, judged afresh ([`super::quic::new_connection`]).
    pub(super) quic_dcid: u64,
    /// TCP: the first data sequence number (ISN + 1) of the latest SYN with another ISN on a
    /// connection whose handshake was seen. Ignored as a fake unless the server accepts it: its
    /// SYN-ACK acknowledging that SYN means a new connection on the reused 4-tuple (an HTTP flow
    /// is never done, so only the server's answer tells a reuse from a desync SYN).
    pub(super) pending_syn: Option<u32>,
}

impl Aged for Flow {
    fn last_seen(&self) -> u64 {
        self.last_ns
    }
}

impl Flow {
    pub(super) fn new(now: u64, udp: bool) -> Flow {
        Flow {
            last_ns: now,
            state: State::New,
            udp,
            client_a: None,
            tries: 0,
            isn: [None, None],
            synack_ok: false,
            streams: [None, None],
            quic: None,
            last_host: 0,
            proxied: false,
            awaiting: false,
            watch: None,
            quic_dcid: 0,
            pending_syn: None,
        }
    }

    pub(super) fn finish(&mut self) {
        self.state = State::Done;
        self.awaiting = false;
        self.watch = None;
        self.streams = [None, None];
        self.quic = None;
    }

    /// A new QUIC connection on this 4-tuple ([`super::quic::new_connection`]): the flow starts
    /// over as a QUIC flow of the same client, as a new flow would.
    pub(super) fn restart_quic(&mut self) {
        let (last_ns, client_a, dcid) = (self.last_ns, self.client_a, self.quic_dcid);
        *self = Flow::new(last_ns, true);
        self.state = State::Quic;
        self.client_a = client_a;
        self.quic_dcid = dcid;
    }

    /// After a stream parser says "no more": DNS over TCP and HTTP keep going, others are done.
    pub(super) fn finish_unless_ongoing(&mut self) {
        if !matches!(self.state, State::DnsTcp | State::Http) {
            self.finish();
        }
    }
}
