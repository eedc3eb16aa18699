//! The contents of `inet shadowgate`: the forward filter chain (grants, stopped flows, QUIC
//! drops, optional all-QUIC drop, each with a counter), the DNS intercept chain, and set keys.

use std::ffi::CString;
use std::net::{IpAddr, SocketAddr};

use ipnet::IpNet;
use nftnl::expr::{Counter, RejectionType, Verdict};
use nftnl::{Batch, Chain, ChainType, Hook, MsgType, Policy, ProtoFamily, Rule, Table};

use super::msgs::*;

pub const TABLE: &str = "shadowgate";
pub const FILTER_CHAIN: &str = "forward";
pub const NAT_CHAIN: &str = "dns_intercept";
pub const GUARD_CHAIN: &str = "dns_guard";

/// What the DNS source guard does with a query whose (address, MAC) pair contradicts the
/// gateway's own binding of the address (`[dns] source_guard`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum GuardMode {
    #[default]
    Off,
    /// Send it to the resolver's guard socket: answered, never recorded in the address's name,
    /// rate-limited with every other such query.
    Log,
    /// Drop it before it reaches any resolver.
    Drop,
}

/// Where `Log` sends a contradicted query: the resolver's guard socket for one listen address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GuardTarget {
    /// The listen address the query was sent to.
    pub listen: SocketAddr,
    /// The resolver's guard socket on the same address.
    pub guard: SocketAddr,
}

/// What the table enforces besides the sets (fixed for the daemon's life).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TableSpec {
    /// Clinic-side interfaces (`[capture] interfaces`): the all-QUIC drop and the DNS intercept
    /// apply to what arrives on them.
    pub lan_interfaces: Vec<String>,
    /// Clinic networks (`[enforce] lan`): when given, the all-QUIC drop and the DNS intercept
    /// match these source networks instead of the interfaces.
    pub lan_nets: Vec<IpNet>,
    /// Drop all QUIC (UDP 443) from the LAN.
    pub block_all_quic: bool,
    /// Redirect LAN DNS (UDP and TCP 53) sent to any other resolver here: one address per
    /// family at most (the first of each family counts), e.g. `[dns] listen`.
    pub intercept: Vec<SocketAddr>,
    /// Most elements per set (default 65,536 when 0).
    pub max_elements: u32,
    /// The DNS source guard (its chain exists unless `Off`).
    pub guard: GuardMode,
    /// `Log`: the resolver's guard sockets (given once the resolver has bound them).
    pub guard_targets: Vec<GuardTarget>,
    /// Remove elements one at a time with a plain delete, as on Linux < 6.3 (which has no
    /// DESTROYSETELEM; found out at open). Set to test that path on a newer kernel.
    pub plain_deletes: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Fam {
    V4,
    V6,
}

impl Fam {
    pub fn of(ip: &IpAddr) -> Fam {
        match ip {
            IpAddr::V4(_) => Fam::V4,
            IpAddr::V6(_) => Fam::V6,
        }
    }
    fn nfproto(self) -> u8 {
        match self {
            Fam::V4 => libc::NFPROTO_IPV4 as u8,
            Fam::V6 => libc::NFPROTO_IPV6 as u8,
        }
    }
    fn alen(self) -> u32 {
        match self {
            Fam::V4 => 4,
            Fam::V6 => 16,
        }
    }
    fn saddr_off(self) -> u32 {
        match self {
            Fam::V4 => 12,
            Fam::V6 => 8,
        }
    }
    fn daddr_off(self) -> u32 {
        match self {
            Fam::V4 => 16,
            Fam::V6 => 24,
        }
    }
    fn addr_type(self) -> u32 {
        match self {
            Fam::V4 => TYPE_IPV4,
            Fam::V6 => TYPE_IPV6,
        }
    }
    fn suffix(self) -> &'static str {
        match self {
            Fam::V4 => "4",
            Fam::V6 => "6",
        }
    }
}

/// The kinds of set, one of each per family.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum SetKind {
    /// client addr . client port . server addr . server port (TCP flows stopped)
    Stop,
    /// client addr . server addr (QUIC dropped)
    Quic,
    /// client addr . server addr (coach grants, accepted first)
    Allow,
    /// addr (addresses the gateway binds to a MAC: the DNS source guard checks these)
    Known,
    /// addr . ether addr (the bindings themselves)
    Bind,
}

impl SetKind {
    pub const ALL: [SetKind; 5] = [
        SetKind::Stop,
        SetKind::Quic,
        SetKind::Allow,
        SetKind::Known,
        SetKind::Bind,
    ];
    fn base(self) -> &'static str {
        match self {
            SetKind::Stop => "stop",
            SetKind::Quic => "quic",
            SetKind::Allow => "allow",
            SetKind::Known => "dnsknown",
            SetKind::Bind => "dnsbind",
        }
    }
    pub fn name(self, f: Fam) -> CString {
        CString::new(format!("{}{}", self.base(), f.suffix())).unwrap_or_default()
    }
    fn id(self, f: Fam) -> u32 {
        1 + self as u32 * 2 + matches!(f, Fam::V6) as u32
    }
}

fn ip_bytes(ip: &IpAddr) -> Vec<u8> {
    match ip {
        IpAddr::V4(a) => a.octets().to_vec(),
        IpAddr::V6(a) => a.octets().to_vec(),
    }
}

/// A port as a concatenation member: two bytes, network order, padded to a 32-bit register.
fn port_field(p: u16) -> [u8; 4] {
    let b = p.to_be_bytes();
    [b[0], b[1], 0, 0]
}

/// The stop-set key of a TCP flow (client side first). None when the families differ.
pub fn flow_key(client: SocketAddr, server: SocketAddr) -> Option<(Fam, Vec<u8>)> {
    let f = Fam::of(&client.ip());
    if f != Fam::of(&server.ip()) {
        return None;
    }
    let mut k = ip_bytes(&client.ip());
    k.extend_from_slice(&port_field(client.port()));
    k.extend(ip_bytes(&server.ip()));
    k.extend_from_slice(&port_field(server.port()));
    Some((f, k))
}

/// The key of a binding (address . MAC, the MAC padded to two 32-bit registers).
pub fn bind_key(ip: IpAddr, mac: [u8; 6]) -> (Fam, Vec<u8>) {
    let mut k = ip_bytes(&ip);
    k.extend_from_slice(&mac);
    k.extend_from_slice(&[0, 0]);
    (Fam::of(&ip), k)
}

/// The key of an address alone.
pub fn addr_key(ip: IpAddr) -> (Fam, Vec<u8>) {
    (Fam::of(&ip), ip_bytes(&ip))
}

/// The key of a (client, server address) pair.
pub fn pair_key(client: IpAddr, server: IpAddr) -> Option<(Fam, Vec<u8>)> {
    let f = Fam::of(&client);
    if f != Fam::of(&server) {
        return None;
    }
    let mut k = ip_bytes(&client);
    k.extend(ip_bytes(&server));
    Some((f, k))
}

pub fn table_name() -> CString {
    CString::new(TABLE).unwrap_or_default()
}

pub fn inet() -> u16 {
    libc::NFPROTO_INET as u16
}

/// Add the table (owned by the sending socket), its chains, its sets and, if `enforcing`, its
/// rules to `batch`.
pub fn build(batch: &mut Batch, spec: &TableSpec) {
    batch.add(
        &TableMsg {
            name: table_name(),
            family: inet(),
            flags: NFT_TABLE_F_OWNER,
            op: TableOp::Create,
        },
        MsgType::Add,
    );
    let t = Table::new(table_name(), ProtoFamily::Inet);
    let mut filter = Chain::new(CString::new(FILTER_CHAIN).unwrap_or_default(), &t);
    filter.set_hook(Hook::Forward, 0);
    filter.set_type(ChainType::Filter);
    filter.set_policy(Policy::Accept);
    batch.add(&filter, MsgType::Add);
    let mut nat = Chain::new(CString::new(NAT_CHAIN).unwrap_or_default(), &t);
    nat.set_hook(Hook::PreRouting, -100);
    nat.set_type(ChainType::Nat);
    nat.set_policy(Policy::Accept);
    if !spec.intercept.is_empty() {
        batch.add(&nat, MsgType::Add);
    }
    // The DNS source guard: a filter chain that drops before anything else sees the query, or
    // a NAT chain ahead of the intercept that sends it to the resolver's guard socket.
    let mut guard = Chain::new(CString::new(GUARD_CHAIN).unwrap_or_default(), &t);
    match spec.guard {
        GuardMode::Off => {}
        GuardMode::Drop => {
            guard.set_hook(Hook::PreRouting, -150);
            guard.set_type(ChainType::Filter);
            guard.set_policy(Policy::Accept);
            batch.add(&guard, MsgType::Add);
        }
        GuardMode::Log => {
            guard.set_hook(Hook::PreRouting, -110);
            guard.set_type(ChainType::Nat);
            guard.set_policy(Policy::Accept);
            batch.add(&guard, MsgType::Add);
        }
    }
    let size = if spec.max_elements == 0 {
        65_536
    } else {
        spec.max_elements
    };
    for f in [Fam::V4, Fam::V6] {
        for k in SetKind::ALL {
            let (key_type, key_len) = match k {
                SetKind::Stop => (
                    concat_type(&[
                        f.addr_type(),
                        TYPE_INET_SERVICE,
                        f.addr_type(),
                        TYPE_INET_SERVICE,
                    ]),
                    2 * f.alen() + 8,
                ),
                SetKind::Known => (f.addr_type(), f.alen()),
                SetKind::Bind => (concat_type(&[f.addr_type(), TYPE_ETHERADDR]), f.alen() + 8),
                _ => (concat_type(&[f.addr_type(), f.addr_type()]), 2 * f.alen()),
            };
            batch.add(
                &SetMsg {
                    table: table_name(),
                    family: inet(),
                    name: k.name(f),
                    id: k.id(f),
                    key_type,
                    key_len,
                    size,
                },
                MsgType::Add,
            );
        }
    }
    add_rules(batch, spec);
}

/// The UDP server ports the per-(client, address) QUIC drops cover: HTTP/3 (443) and DNS over
/// QUIC (853, RFC 9250).
pub const QUIC_PORTS: [u16; 2] = [443, 853];

/// The rules of both chains (what break glass flushes and re-enabling adds back).
pub fn add_rules(batch: &mut Batch, spec: &TableSpec) {
    let t = Table::new(table_name(), ProtoFamily::Inet);
    let filter = Chain::new(CString::new(FILTER_CHAIN).unwrap_or_default(), &t);
    for f in [Fam::V4, Fam::V6] {
        // (d) grants first, both directions.
        for reverse in [false, true] {
            let mut r = Rule::new(&filter);
            nfproto(&mut r, f);
            load_pair(&mut r, f, reverse);
            lookup(&mut r, SetKind::Allow, f);
            r.add_expr(&Counter);
            r.add_expr(&Verdict::Accept);
            batch.add(&r, MsgType::Add);
        }
        // (a) stopped flows: client->server rejected with a reset, server->client dropped.
        for reverse in [false, true] {
            let mut r = Rule::new(&filter);
            nfproto(&mut r, f);
            l4proto(&mut r, libc::IPPROTO_TCP as u8);
            load_flow(&mut r, f, reverse);
            lookup(&mut r, SetKind::Stop, f);
            r.add_expr(&Counter);
            if reverse {
                r.add_expr(&Verdict::Drop);
            } else {
                r.add_expr(&Verdict::Reject(RejectionType::TcpRst));
            }
            batch.add(&r, MsgType::Add);
        }
        // (b) QUIC per (client, server address): HTTP/3 on 443, and DNS over QUIC on 853 (a
        // decision stops a DoQ resolver as it stops an HTTP/3 site).
        for port in QUIC_PORTS {
            let mut r = Rule::new(&filter);
            nfproto(&mut r, f);
            l4proto(&mut r, libc::IPPROTO_UDP as u8);
            dport(&mut r, port);
            load_pair(&mut r, f, false);
            lookup(&mut r, SetKind::Quic, f);
            r.add_expr(&Counter);
            r.add_expr(&Verdict::Drop);
            batch.add(&r, MsgType::Add);
        }
    }
    // (c) all QUIC from the LAN.
    if spec.block_all_quic {
        for m in lan_matches(spec) {
            let mut r = Rule::new(&filter);
            m.apply(&mut r);
            l4proto(&mut r, libc::IPPROTO_UDP as u8);
            dport(&mut r, 443);
            r.add_expr(&Counter);
            r.add_expr(&Verdict::Drop);
            batch.add(&r, MsgType::Add);
        }
    }
    // (e) DNS intercept: LAN DNS to another resolver goes to ours.
    let nat = Chain::new(CString::new(NAT_CHAIN).unwrap_or_default(), &t);
    for target in intercept_targets(spec) {
        let f = Fam::of(&target.ip());
        for m in lan_matches(spec) {
            if m.family().is_some_and(|mf| mf != f) {
                continue;
            }
            for proto in [libc::IPPROTO_UDP as u8, libc::IPPROTO_TCP as u8] {
                let mut r = Rule::new(&nat);
                nfproto(&mut r, f);
                m.apply(&mut r);
                l4proto(&mut r, proto);
                dport(&mut r, 53);
                r.add_expr(&Load {
                    base: BASE_NETWORK,
                    offset: f.daddr_off(),
                    len: f.alen(),
                    dreg: REG_1,
                });
                r.add_expr(&Cmp {
                    sreg: REG_1,
                    eq: false,
                    data: ip_bytes(&target.ip()),
                });
                r.add_expr(&Counter);
                r.add_expr(&ImmData {
                    dreg: REG_1,
                    data: ip_bytes(&target.ip()),
                });
                r.add_expr(&ImmData {
                    dreg: REG_2,
                    data: target.port().to_be_bytes().to_vec(),
                });
                r.add_expr(&Dnat {
                    family: f.nfproto() as u32,
                    addr_reg: REG_1,
                    port_reg: REG_2,
                });
                batch.add(&r, MsgType::Add);
            }
        }
    }
    guard_rules(batch, spec);
}

/// The DNS source guard's rules: UDP DNS from an address the gateway binds to a MAC, in a frame
/// from another MAC, is dropped (`Drop`) or sent to the resolver's guard socket (`Log`).
pub fn guard_rules(batch: &mut Batch, spec: &TableSpec) {
    let t = Table::new(table_name(), ProtoFamily::Inet);
    let chain = Chain::new(CString::new(GUARD_CHAIN).unwrap_or_default(), &t);
    let contradicted = |r: &mut Rule, f: Fam, port: u16| {
        nfproto(r, f);
        l4proto(r, libc::IPPROTO_UDP as u8);
        dport(r, port);
        // ip saddr @dnsknown
        r.add_expr(&Load {
            base: BASE_NETWORK,
            offset: f.saddr_off(),
            len: f.alen(),
            dreg: REG32_00,
        });
        lookup(r, SetKind::Known, f);
        // ip saddr . ether saddr != @dnsbind
        r.add_expr(&Load {
            base: BASE_LL,
            offset: 6,
            len: 6,
            dreg: REG32_00 + f.alen() / 4,
        });
        r.add_expr(&LookupNamed {
            sreg: REG32_00,
            set: SetKind::Bind.name(f),
            set_id: SetKind::Bind.id(f),
            inv: true,
        });
        r.add_expr(&Counter);
    };
    match spec.guard {
        GuardMode::Off => {}
        GuardMode::Drop => {
            for f in [Fam::V4, Fam::V6] {
                let mut r = Rule::new(&chain);
                contradicted(&mut r, f, 53);
                r.add_expr(&Verdict::Drop);
                batch.add(&r, MsgType::Add);
            }
        }
        GuardMode::Log => {
            // With the intercept on, DNS to any resolver ends at ours: catch it on port 53 to
            // any address; otherwise what is sent to the listen address itself.
            let intercept = intercept_targets(spec);
            for g in &spec.guard_targets {
                let f = Fam::of(&g.listen.ip());
                if Fam::of(&g.guard.ip()) != f || g.listen.ip().is_unspecified() {
                    continue;
                }
                // Sent straight to the guard socket (not by this chain): dropped, so a device
                // cannot use it to go unrecorded.
                let mut r = Rule::new(&chain);
                nfproto(&mut r, f);
                l4proto(&mut r, libc::IPPROTO_UDP as u8);
                dport(&mut r, g.guard.port());
                daddr_is(&mut r, f, g.guard.ip());
                r.add_expr(&Counter);
                r.add_expr(&Verdict::Drop);
                batch.add(&r, MsgType::Add);
                let mut r = Rule::new(&chain);
                let any = intercept.contains(&g.listen);
                contradicted(&mut r, f, if any { 53 } else { g.listen.port() });
                if !any {
                    daddr_is(&mut r, f, g.listen.ip());
                }
                r.add_expr(&ImmData {
                    dreg: REG_1,
                    data: ip_bytes(&g.guard.ip()),
                });
                r.add_expr(&ImmData {
                    dreg: REG_2,
                    data: g.guard.port().to_be_bytes().to_vec(),
                });
                r.add_expr(&Dnat {
                    family: f.nfproto() as u32,
                    addr_reg: REG_1,
                    port_reg: REG_2,
                });
                batch.add(&r, MsgType::Add);
            }
        }
    }
}

/// `ip daddr ADDR` (or `ip6`).
fn daddr_is(r: &mut Rule, f: Fam, addr: IpAddr) {
    r.add_expr(&Load {
        base: BASE_NETWORK,
        offset: f.daddr_off(),
        len: f.alen(),
        dreg: REG_1,
    });
    r.add_expr(&Cmp {
        sreg: REG_1,
        eq: true,
        data: ip_bytes(&addr),
    });
}

/// The first intercept address of each family.
fn intercept_targets(spec: &TableSpec) -> Vec<SocketAddr> {
    let mut out: Vec<SocketAddr> = Vec::new();
    for a in &spec.intercept {
        if !out.iter().any(|o| o.is_ipv4() == a.is_ipv4()) {
            out.push(*a);
        }
    }
    out
}

/// How a rule recognises LAN traffic: by source network, by interface, or (neither given) all.
enum LanMatch {
    Net(IpNet),
    Iface(String),
    Any,
}

impl LanMatch {
    fn family(&self) -> Option<Fam> {
        match self {
            LanMatch::Net(n) => Some(Fam::of(&n.addr())),
            _ => None,
        }
    }
    fn apply(&self, r: &mut Rule) {
        match self {
            LanMatch::Net(n) => {
                let f = Fam::of(&n.addr());
                nfproto(r, f);
                r.add_expr(&Load {
                    base: BASE_NETWORK,
                    offset: f.saddr_off(),
                    len: f.alen(),
                    dreg: REG_1,
                });
                r.add_expr(&Mask {
                    reg: REG_1,
                    mask: ip_bytes(&n.netmask()),
                });
                r.add_expr(&Cmp {
                    sreg: REG_1,
                    eq: true,
                    data: ip_bytes(&n.network()),
                });
            }
            LanMatch::Iface(name) => {
                let mut b = [0u8; 16];
                let n = name.as_bytes();
                let len = n.len().min(15);
                b[..len].copy_from_slice(&n[..len]);
                r.add_expr(&MetaLoad {
                    key: META_IIFNAME,
                    dreg: REG_1,
                });
                r.add_expr(&Cmp {
                    sreg: REG_1,
                    eq: true,
                    data: b.to_vec(),
                });
            }
            LanMatch::Any => {}
        }
    }
}

fn lan_matches(spec: &TableSpec) -> Vec<LanMatch> {
    if !spec.lan_nets.is_empty() {
        spec.lan_nets.iter().map(|n| LanMatch::Net(*n)).collect()
    } else if !spec.lan_interfaces.is_empty() {
        spec.lan_interfaces
            .iter()
            .map(|i| LanMatch::Iface(i.clone()))
            .collect()
    } else {
        vec![LanMatch::Any]
    }
}

fn nfproto(r: &mut Rule, f: Fam) {
    r.add_expr(&MetaLoad {
        key: META_NFPROTO,
        dreg: REG_1,
    });
    r.add_expr(&Cmp {
        sreg: REG_1,
        eq: true,
        data: vec![f.nfproto()],
    });
}

fn l4proto(r: &mut Rule, proto: u8) {
    r.add_expr(&MetaLoad {
        key: META_L4PROTO,
        dreg: REG_1,
    });
    r.add_expr(&Cmp {
        sreg: REG_1,
        eq: true,
        data: vec![proto],
    });
}

fn dport(r: &mut Rule, port: u16) {
    r.add_expr(&Load {
        base: BASE_TRANSPORT,
        offset: 2,
        len: 2,
        dreg: REG_1,
    });
    r.add_expr(&Cmp {
        sreg: REG_1,
        eq: true,
        data: port.to_be_bytes().to_vec(),
    });
}

/// saddr . daddr (or daddr . saddr) into consecutive 32-bit registers.
fn load_pair(r: &mut Rule, f: Fam, reverse: bool) {
    let (a, b) = if reverse {
        (f.daddr_off(), f.saddr_off())
    } else {
        (f.saddr_off(), f.daddr_off())
    };
    let words = f.alen() / 4;
    for (i, off) in [a, b].into_iter().enumerate() {
        r.add_expr(&Load {
            base: BASE_NETWORK,
            offset: off,
            len: f.alen(),
            dreg: REG32_00 + i as u32 * words,
        });
    }
}

/// saddr . sport . daddr . dport (or the reverse) into consecutive 32-bit registers.
fn load_flow(r: &mut Rule, f: Fam, reverse: bool) {
    let (a, pa, b, pb) = if reverse {
        (f.daddr_off(), 2, f.saddr_off(), 0)
    } else {
        (f.saddr_off(), 0, f.daddr_off(), 2)
    };
    let words = f.alen() / 4;
    let mut reg = REG32_00;
    for (base, off, len) in [
        (BASE_NETWORK, a, f.alen()),
        (BASE_TRANSPORT, pa, 2),
        (BASE_NETWORK, b, f.alen()),
        (BASE_TRANSPORT, pb, 2),
    ] {
        r.add_expr(&Load {
            base,
            offset: off,
            len,
            dreg: reg,
        });
        reg += if len == 2 { 1 } else { words };
    }
}

fn lookup(r: &mut Rule, k: SetKind, f: Fam) {
    r.add_expr(&LookupNamed {
        sreg: REG32_00,
        set: k.name(f),
        set_id: k.id(f),
        inv: false,
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_padded_concatenations() {
        let (f, k) = flow_key(
            "10.0.0.5:40000".parse().unwrap(),
            "192.0.2.1:443".parse().unwrap(),
        )
        .unwrap();
        assert_eq!(f, Fam::V4);
        assert_eq!(
            k,
            vec![10, 0, 0, 5, 0x9c, 0x40, 0, 0, 192, 0, 2, 1, 0x01, 0xbb, 0, 0]
        );
        let (f, k) = flow_key(
            "[fd00::5]:1".parse().unwrap(),
            "[2001:db8::1]:443".parse().unwrap(),
        )
        .unwrap();
        assert_eq!((f, k.len()), (Fam::V6, 40));
        assert!(flow_key("10.0.0.5:1".parse().unwrap(), "[::1]:2".parse().unwrap()).is_none());
        assert_eq!(
            pair_key("10.0.0.5".parse().unwrap(), "10.0.0.6".parse().unwrap())
                .unwrap()
                .1
                .len(),
            8
        );
    }

    #[test]
    fn binding_keys_pad_the_mac_to_two_registers() {
        let (f, k) = bind_key("10.0.0.5".parse().unwrap(), [2, 0, 0, 0, 0, 5]);
        assert_eq!(f, Fam::V4);
        assert_eq!(k, vec![10, 0, 0, 5, 2, 0, 0, 0, 0, 5, 0, 0]);
        let (f, k) = bind_key("fd00::5".parse().unwrap(), [2, 0, 0, 0, 0, 5]);
        assert_eq!(f, Fam::V6);
        assert_eq!(k.len(), 16 + 8);
    }

    #[test]
    fn set_ids_are_distinct() {
        let mut ids: Vec<u32> = SetKind::ALL
            .iter()
            .flat_map(|k| [k.id(Fam::V4), k.id(Fam::V6)])
            .collect();
        ids.sort();
        ids.dedup();
        assert_eq!(ids.len(), 2 * SetKind::ALL.len());
    }
}
