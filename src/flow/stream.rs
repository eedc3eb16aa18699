//! Classifying a TCP stream by its first bytes (TLS, HTTP, SOCKS, DNS over TCP) and turning a
//! ClientHello, HTTP request head or proxy request (SOCKS, CONNECT) into an observation.

use crate::decode::{dns, h2, http, socks, tls};

use super::emit::{Seg, Sinks};
use super::hello::hello_flags;
use super::observation::*;
use super::ports::is_dns_port;
use super::state::{Flow, State};

/// Hashes a flow's last Host header, seeded per process: no chosen pair of hosts collides to
/// hide the second one. Only compared for equality, so the output does not depend on the seed.
static HOST_HASH: std::sync::LazyLock<foldhash::fast::RandomState> =
    std::sync::LazyLock::new(Default::default);

/// Look at the contiguous start of a TCP direction. Returns (bytes consumed, want more data).
pub(super) fn on_stream(
    flow: &mut Flow,
    dir: usize,
    src_a: bool,
    data: &[u8],
    segmented: bool,
    seg: &Seg,
    sinks: &mut Sinks<'_>,
) -> (usize, bool) {
    if flow.state == State::New {
        if data.len() < 3 {
            return (0, true);
        }
        if tls::looks_like_tls(data) {
            flow.state = State::Tls;
        } else if h2::looks_like_preface(data) {
            flow.state = State::H2c;
        } else if http::looks_like_request(data) {
            flow.state = State::Http;
        } else if !flow.proxied && socks::looks_like_socks(data) {
            flow.state = State::Socks;
        } else if is_dns_port(seg.sp) || is_dns_port(seg.dp) || looks_like_dns_tcp(data) {
            flow.state = State::DnsTcp;
        } else if flow.isn[dir].is_none() && flow.tries < 2 {
            // No SYN seen: this may be a later segment that overtook the stream's first one.
            // Keep it a little while for an earlier segment to complete the picture.
            flow.tries += 1;
            return (0, true);
        } else {
            flow.finish();
            return (0, false);
        }
        if flow.state != State::DnsTcp && flow.client_a.is_none() {
            flow.client_a = Some(src_a);
        }
        // The other direction may hold server bytes buffered before we knew who the client was.
        if flow.state != State::DnsTcp {
            flow.streams[1 - dir] = None;
        }
    }
    match flow.state {
        State::Tls => match tls::parse_first_flight(data) {
            tls::FirstFlight::NeedMore => (0, true),
            tls::FirstFlight::NotTls => (0, false),
            tls::FirstFlight::Malformed(_) => {
                sinks.stats.malformed.tls += 1;
                (0, false)
            }
            tls::FirstFlight::Hello(ch) => {
                let mut o = seg.observation(Kind::TlsClientHello, true, ch.sni.clone());
                if flow.proxied {
                    o.flags.push(Flag::Proxied);
                }
                if segmented {
                    o.flags.push(Flag::Segmented);
                }
                if ch.multi_record {
                    o.flags.push(Flag::MultiRecord);
                }
                hello_flags(&mut o, &ch, sinks);
                o.tls = Some(TlsInfo {
                    versions: ch.versions.iter().map(|v| tls::version_name(*v)).collect(),
                    alpn: ch.alpn,
                });
                sinks.emit(o);
                (data.len(), false)
            }
        },
        State::Http => match http::parse_request(data) {
            http::HttpParse::NeedMore => (0, true),
            http::HttpParse::NotHttp => (0, false),
            http::HttpParse::Request(r) => match (r.connect_port, r.head_len) {
                // One proxy level per flow (as for SOCKS): a CONNECT inside a tunnel is reported
                // as a request and ends the flow, so a segment of repeated CONNECTs cannot recurse.
                (Some(port), Some(head)) if !flow.proxied => {
                    // CONNECT: report the target; the client's bytes after the head are the
                    // tunnel (sent once the proxy answered 200): classify them afresh.
                    let mut o = seg.observation(Kind::ProxyConnect, true, r.name.clone());
                    o.wire_names = r.other_names;
                    if r.conflict || r.idna {
                        o.flags.push(Flag::Anomaly);
                    }
                    o.proxy = Some(ProxyInfo {
                        protocol: "http",
                        port,
                    });
                    sinks.emit(o);
                    flow.state = State::New;
                    flow.proxied = true;
                    let (used, more) =
                        on_stream(flow, dir, src_a, &data[head..], segmented, seg, sinks);
                    (head + used, more)
                }
                _ => {
                    http_observation(flow, seg, r, segmented, sinks);
                    (data.len(), false)
                }
            },
        },
        State::H2c => match h2::parse(data) {
            h2::Parse::NeedMore => (0, true),
            h2::Parse::NotH2 => (0, false),
            h2::Parse::Request(r) => {
                h2c_request(flow, seg, r, segmented, sinks);
                (data.len(), false)
            }
        },
        State::Socks => match socks::parse(data) {
            socks::SocksParse::NeedMore => (0, true),
            socks::SocksParse::NotSocks => (0, false),
            socks::SocksParse::Connect(c) => {
                if let Some(name) = c.name.clone() {
                    let mut o = seg.observation(Kind::ProxyConnect, true, Some(name));
                    if c.idna {
                        o.flags.push(Flag::Anomaly);
                    }
                    o.proxy = Some(ProxyInfo {
                        protocol: c.protocol,
                        port: c.port,
                    });
                    sinks.emit(o);
                }
                // What follows the handshake is the proxied stream: classify it afresh.
                flow.state = State::New;
                flow.proxied = true;
                let (used, more) =
                    on_stream(flow, dir, src_a, &data[c.consumed..], segmented, seg, sinks);
                (c.consumed + used, more)
            }
        },
        State::DnsTcp => {
            let mut used = 0;
            while let Some(len) = crate::decode::be16(data, used) {
                let len = len as usize;
                let Some(msg) = data.get(used + 2..used + 2 + len) else {
                    break;
                };
                let mut flags = vec![Flag::DnsTcp];
                if segmented {
                    flags.push(Flag::Segmented);
                }
                if !(is_dns_port(seg.sp) || is_dns_port(seg.dp)) {
                    flags.push(Flag::OffPort);
                }
                sinks.dns(seg, msg, &flags);
                used += 2 + len;
            }
            (used, true)
        }
        _ => (0, false),
    }
}

fn looks_like_dns_tcp(data: &[u8]) -> bool {
    let Some(len) = crate::decode::be16(data, 0) else {
        return false;
    };
    len as usize >= 17
        && dns::looks_like_dns(&data[2..])
        && (data.len() - 2 <= len as usize || data.len() > 2 + len as usize)
}

pub(super) fn http_observation(
    flow: &mut Flow,
    seg: &Seg,
    r: http::Request,
    segmented: bool,
    sinks: &mut Sinks<'_>,
) {
    use std::hash::BuildHasher;
    let hv = HOST_HASH.hash_one((&r.host, &r.name, &r.other_names)) | 1;
    if hv == flow.last_host {
        return;
    }
    flow.last_host = hv;
    let mut o = request(flow, seg, r.name, r.conflict || r.idna, segmented);
    o.wire_names = r.other_names;
    o.http = Some(HttpInfo {
        method: r.method,
        host: r.host,
    });
    if o.name.is_none() {
        sinks.infer(&mut o);
    }
    sinks.emit(o);
}

/// An HTTP request's observation (HTTP/1.x or h2c) with the flags of its connection.
fn request(
    flow: &Flow,
    seg: &Seg,
    name: Option<String>,
    anomaly: bool,
    segmented: bool,
) -> Observation {
    let mut o = seg.observation(Kind::HttpRequest, true, name);
    if anomaly {
        o.flags.push(Flag::Anomaly);
    }
    if flow.proxied {
        o.flags.push(Flag::Proxied);
    }
    if segmented {
        o.flags.push(Flag::Segmented);
    }
    if seg.dp != 80 && seg.dp != 8080 {
        o.flags.push(Flag::OffPort);
    }
    o
}

/// The first request of an h2c connection, flagged `h2c`; a DNS-over-HTTPS query in it is read
/// as DNS (flagged `h2c` too).
fn h2c_request(flow: &Flow, seg: &Seg, r: h2::Request, segmented: bool, sinks: &mut Sinks<'_>) {
    let mut o = request(flow, seg, r.name, r.idna, segmented);
    o.flags.push(Flag::H2c);
    o.http = Some(HttpInfo {
        method: r.method,
        host: r.authority,
    });
    if o.name.is_none() {
        sinks.infer(&mut o);
    }
    sinks.emit(o);
    if let Some(msg) = r.dns {
        sinks.dns(seg, &msg, &[Flag::H2c]);
    }
}
