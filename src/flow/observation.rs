//! What the sensor reports: one observation per DNS question/answer, TLS or QUIC ClientHello, HTTP
//! request and proxy request. `kind` and `name` are the stable fields scripts rely on (docs/src/decoding.md).

use std::net::IpAddr;

use serde::{Serialize, Serializer};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    DnsQuery,
    DnsAnswer,
    TlsClientHello,
    QuicInitial,
    HttpRequest,
    /// A proxy asked to connect to a named destination (SOCKS 4a/5, HTTP CONNECT).
    ProxyConnect,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::DnsQuery => "dns_query",
            Kind::DnsAnswer => "dns_answer",
            Kind::TlsClientHello => "tls_client_hello",
            Kind::QuicInitial => "quic_initial",
            Kind::HttpRequest => "http_request",
            Kind::ProxyConnect => "proxy_connect",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Transport {
    Tcp,
    Udp,
}

impl Transport {
    pub fn as_str(self) -> &'static str {
        match self {
            Transport::Tcp => "tcp",
            Transport::Udp => "udp",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Endpoint {
    pub ip: IpAddr,
    pub port: u16,
    #[serde(skip_serializing_if = "Option::is_none", serialize_with = "ser_mac")]
    pub mac: Option<[u8; 6]>,
    /// DHCP host name of the client, when DHCP was seen.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hostname: Option<String>,
}

/// `02:1a:2b:3c:4d:5e`.
pub fn mac_string(m: &[u8; 6]) -> String {
    let b = mac_bytes(m);
    String::from_utf8_lossy(&b).into_owned()
}

/// [`mac_string`] without an allocation (it runs for both endpoints of every observation).
pub fn mac_bytes(m: &[u8; 6]) -> [u8; 17] {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut b = [b':'; 17];
    for (i, x) in m.iter().enumerate() {
        b[i * 3] = HEX[(x >> 4) as usize];
        b[i * 3 + 1] = HEX[(x & 15) as usize];
    }
    b
}

fn ser_mac<S: Serializer>(m: &Option<[u8; 6]>, s: S) -> Result<S::Ok, S::Error> {
    match m {
        Some(m) => {
            let b = mac_bytes(m);
            s.serialize_str(std::str::from_utf8(&b).unwrap_or_default())
        }
        None => s.serialize_none(),
    }
}

/// Observation flags (serialised as lower-case words).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Flag {
    /// ClientHello carries the Encrypted Client Hello extension (or a DNS answer an ECH config).
    Ech,
    /// ClientHello carries the draft encrypted SNI extension.
    Esni,
    /// `inferred_names` come from earlier DNS answers for the server address.
    Inferred,
    /// A DNS answer to a query the sensor did not see.
    Unmatched,
    /// The message was reassembled from several TCP segments.
    Segmented,
    /// The ClientHello spanned several TLS records.
    MultiRecord,
    /// The QUIC ClientHello was reassembled from several Initial packets.
    MultiPacket,
    /// The packet was reassembled from IP fragments.
    Fragmented,
    /// The packet was carried in a tunnel (IP-in-IP, GRE, VXLAN, Teredo, GTP-U).
    Tunneled,
    /// Only part of the message could be decoded (e.g. DNS questions without answers).
    Partial,
    /// DNS over TCP.
    DnsTcp,
    /// A non-standard port for the protocol (recognised by content).
    OffPort,
    /// Seen inside a proxy tunnel (SOCKS, HTTP CONNECT).
    Proxied,
    /// The message breaks its protocol in a way that can hide a name: DNS with QDCOUNT above 1
    /// (RFC 9619; decoded in part), two SNI host names, repeated or conflicting HTTP Host
    /// headers, a Host that disagrees with an absolute-form target, a UTF-8 name where the
    /// protocol carries A-labels.
    Anomaly,
    /// TCP: the sensor did not see this connection's handshake with matching numbers (the
    /// segment does not acknowledge the server's SYN-ACK, or no SYN-ACK was seen), so the source
    /// address may be forged. Decided and recorded, never acted on.
    UnverifiedSource,
    /// TCP: decided on another version of the client's first flight than an earlier decision
    /// of the same connection (a fake then the real hello; `anomaly` too). QUIC: another
    /// ClientHello on the same 4-tuple (a new DCID, or different CRYPTO bytes).
    Desync,
    /// HTTP/2 over cleartext TCP (h2c): the request, or a DNS query sent in one (DNS over
    /// HTTPS without TLS).
    H2c,
}

impl Flag {
    pub fn as_str(self) -> &'static str {
        match self {
            Flag::Ech => "ech",
            Flag::Esni => "esni",
            Flag::Inferred => "inferred",
            Flag::Unmatched => "unmatched",
            Flag::Segmented => "segmented",
            Flag::MultiRecord => "multi_record",
            Flag::MultiPacket => "multi_packet",
            Flag::Fragmented => "fragmented",
            Flag::Tunneled => "tunneled",
            Flag::Partial => "partial",
            Flag::DnsTcp => "dns_tcp",
            Flag::OffPort => "off_port",
            Flag::Proxied => "proxied",
            Flag::Anomaly => "anomaly",
            Flag::UnverifiedSource => "unverified_source",
            Flag::Desync => "desync",
            Flag::H2c => "h2c",
        }
    }
}

/// How strongly the traffic shows a name, strongest first: the name on the wire (SNI, Host, DNS
/// question), the client's own DNS lookup of the server address, a lookup by a configured
/// internal resolver, another client's lookup, an answer to no query the sensor saw.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Evidence {
    Wire,
    OwnLookup,
    ResolverLookup,
    OtherClient,
    UnmatchedAnswer,
}

impl Evidence {
    pub const NAMES: [&'static str; 5] = [
        "wire",
        "own_lookup",
        "resolver_lookup",
        "other_client",
        "unmatched_answer",
    ];
    const ALL: [Evidence; 5] = [
        Evidence::Wire,
        Evidence::OwnLookup,
        Evidence::ResolverLookup,
        Evidence::OtherClient,
        Evidence::UnmatchedAnswer,
    ];

    pub fn as_str(self) -> &'static str {
        Self::NAMES[self as usize]
    }

    pub fn parse(s: &str) -> Option<Evidence> {
        Self::NAMES
            .iter()
            .position(|n| *n == s)
            .map(|i| Self::ALL[i])
    }

    /// Is this evidence at least as strong as `min`?
    pub fn meets(self, min: Evidence) -> bool {
        self <= min
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TlsInfo {
    pub versions: Vec<String>,
    pub alpn: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct QuicInfo {
    pub version: String,
    pub dcid: String,
    pub versions: Vec<String>,
    pub alpn: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DnsAnswer {
    pub name: String,
    #[serde(rename = "type")]
    pub rtype: String,
    pub ttl: u32,
    pub data: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DnsInfo {
    pub id: u16,
    pub qtype: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rcode: Option<&'static str>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub answers: Vec<DnsAnswer>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct HttpInfo {
    pub method: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ProxyInfo {
    /// `socks4a`, `socks5` or `http` (CONNECT).
    pub protocol: &'static str,
    /// Destination port asked for.
    pub port: u16,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Observation {
    #[serde(serialize_with = "ser_ts")]
    pub ts: u64,
    pub kind: Kind,
    /// Name as seen on the wire: DNS question, SNI, HTTP Host or target, proxy destination
    /// (lower-case, no trailing dot; a UTF-8 name as its A-label, `xn--...`).
    pub name: Option<String>,
    /// Other distinct names the same message carried (a second SNI, a conflicting Host): each
    /// is decided too and the most restrictive decision wins.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub wire_names: Vec<String>,
    /// Names from the DNS name cache for the server address (only when the wire shows no name,
    /// or only an ECH public name), strongest evidence first.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub inferred_names: Vec<String>,
    /// The evidence for each of `inferred_names`, in the same order.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub inferred_evidence: Vec<Evidence>,
    pub transport: Transport,
    pub client: Endpoint,
    pub server: Endpoint,
    pub flags: Vec<Flag>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dns: Option<DnsInfo>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls: Option<TlsInfo>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub quic: Option<QuicInfo>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub http: Option<HttpInfo>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub proxy: Option<ProxyInfo>,
    /// 1-based frame number in the capture (0 for live capture).
    pub frame: u64,
    /// TCP: the sequence numbers of the client segment that completed the message (what an
    /// enforcer needs to reset the flow exactly; not part of the JSON schema).
    #[serde(skip)]
    pub tcp: Option<TcpSeq>,
    /// QUIC: the server never answered within the wait (a hello from a source that may be
    /// forged, or to a server that is gone): decided and recorded, never acted on (not part of
    /// the JSON schema).
    #[serde(skip)]
    pub unanswered: bool,
}

impl Observation {
    /// An observation of `kind` about `name` between two sockets, with nothing else known yet
    /// (no flags, no protocol details, no device): what the resolver and the portal see.
    pub fn between(
        ts: u64,
        kind: Kind,
        name: Option<String>,
        transport: Transport,
        client: std::net::SocketAddr,
        server: std::net::SocketAddr,
    ) -> Observation {
        let ep = |a: std::net::SocketAddr| Endpoint {
            ip: a.ip(),
            port: a.port(),
            mac: None,
            hostname: None,
        };
        Observation {
            ts,
            kind,
            name,
            wire_names: Vec::new(),
            inferred_names: Vec::new(),
            inferred_evidence: Vec::new(),
            transport,
            client: ep(client),
            server: ep(server),
            flags: Vec::new(),
            dns: None,
            tls: None,
            quic: None,
            http: None,
            proxy: None,
            frame: 0,
            tcp: None,
            unanswered: false,
        }
    }
}

/// Traffic the gateway cannot name: a tunnel or relay that hides where a device goes (docs/src/decoding.md,
/// "Blind spots"). Not an observation: the sensor counts it (`Stats::blind`) and hands it to
/// the pipeline, which records a `blind_spot` system event per device and kind at most once a
/// minute of capture time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Blind {
    /// A WireGuard handshake (initiation or response).
    Wireguard,
    /// An OpenVPN client's hard reset over UDP.
    Openvpn,
    /// An IKEv1 or IKEv2 message on UDP 500 or 4500 (IPsec).
    Ike,
    /// Apple iCloud Private Relay: a hello to, or a lookup of, its ingress names.
    PrivateRelay,
    /// A TLS or QUIC ClientHello with Encrypted Client Hello and no name from DNS for its server.
    EchNoDns,
}

impl Blind {
    pub const ALL: [Blind; 5] = [
        Blind::Wireguard,
        Blind::Openvpn,
        Blind::Ike,
        Blind::PrivateRelay,
        Blind::EchNoDns,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Blind::Wireguard => "wireguard",
            Blind::Openvpn => "openvpn",
            Blind::Ike => "ike",
            Blind::PrivateRelay => "private_relay",
            Blind::EchNoDns => "ech_no_dns",
        }
    }

    pub fn parse(s: &str) -> Option<Blind> {
        Blind::ALL.into_iter().find(|b| b.as_str() == s)
    }

    /// Is it a VPN handshake (not counted for `[sensor] known_tunnels`)?
    pub fn is_vpn(self) -> bool {
        matches!(self, Blind::Wireguard | Blind::Openvpn | Blind::Ike)
    }
}

/// One sighting of traffic the gateway cannot name: when, what, and between whom (the client is
/// the device that starts the tunnel or sends the hello or lookup).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BlindSpot {
    #[serde(serialize_with = "ser_ts")]
    pub ts: u64,
    pub kind: Blind,
    pub transport: Transport,
    pub client: Endpoint,
    pub server: Endpoint,
    /// 1-based frame number in the capture (0 for live capture).
    pub frame: u64,
}

/// Where a TCP flow stood when the client segment that completed a message was seen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TcpSeq {
    /// The client's next sequence number (segment sequence + data length): the server expects
    /// it, so a reset to the server carries it.
    pub client_next: u32,
    /// The segment's acknowledgement number: the server's next sequence number, which the
    /// client expects, so a reset to the client carries it.
    pub server_next: u32,
    /// The segment carried an ACK (without one `server_next` means nothing).
    pub has_ack: bool,
}

/// RFC 3339 UTC with microseconds.
pub fn format_ts(ns: u64) -> String {
    crate::time::rfc3339_micros(ns)
}

fn ser_ts<S: Serializer>(ns: &u64, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&format_ts(*ns))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mac_text_is_lower_case_hex_with_colons() {
        for m in [
            [0u8; 6],
            [0x02, 0x1a, 0x2b, 0x3c, 0x4d, 0x5e],
            [0xff; 6],
            [9, 10, 160, 15, 240, 1],
        ] {
            let want = format!(
                "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
                m[0], m[1], m[2], m[3], m[4], m[5]
            );
            assert_eq!(mac_string(&m), want);
            let e = Endpoint {
                ip: [1, 2, 3, 4].into(),
                port: 5,
                mac: Some(m),
                hostname: None,
            };
            let json = serde_json::to_string(&e).unwrap();
            assert!(json.contains(&format!("\"mac\":\"{want}\"")), "{json}");
        }
    }
}
