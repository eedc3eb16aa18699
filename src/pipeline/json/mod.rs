//! JSON lines of the stable schema, in pieces: an observation's fields and a decision, so that
//! shards can render in parallel and the merger only joins bytes (`{obs...,"decision":{...}}`).
//!
//! Written by hand (serde_json's generic path was a quarter of a replay's instructions), byte for
//! byte what `serde_json::to_vec` gives for the serde derives, which stay the reference: the
//! tests compare both over every bundled capture and over hostile synthetic values. A field added
//! to [`Observation`] or [`Decision`] must be added here too (the tests fail until it is).

#[cfg(test)]
mod tests;
mod text;

use crate::flow::observation::{mac_bytes, DnsInfo, Endpoint, HttpInfo, QuicInfo, TlsInfo};
use crate::flow::{Observation, ProxyInfo};
use crate::policy::Decision;

use text::{boolean, plain, string, strings, uint};

/// The observation as a JSON object without its closing brace (`{"ts":...,"frame":12`).
pub fn observation_open(o: &Observation, out: &mut Vec<u8>) {
    out.reserve(384);
    out.extend_from_slice(b"{\"ts\":");
    text::timestamp(out, o.ts);
    out.extend_from_slice(b",\"kind\":");
    plain(out, o.kind.as_str());
    out.extend_from_slice(b",\"name\":");
    match &o.name {
        Some(n) => string(out, n),
        None => out.extend_from_slice(b"null"),
    }
    if !o.wire_names.is_empty() {
        out.extend_from_slice(b",\"wire_names\":");
        strings(out, &o.wire_names);
    }
    if !o.inferred_names.is_empty() {
        out.extend_from_slice(b",\"inferred_names\":");
        strings(out, &o.inferred_names);
    }
    if !o.inferred_evidence.is_empty() {
        out.extend_from_slice(b",\"inferred_evidence\":[");
        for (i, e) in o.inferred_evidence.iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            plain(out, e.as_str());
        }
        out.push(b']');
    }
    out.extend_from_slice(b",\"transport\":");
    plain(out, o.transport.as_str());
    out.extend_from_slice(b",\"client\":");
    endpoint(&o.client, out);
    out.extend_from_slice(b",\"server\":");
    endpoint(&o.server, out);
    out.extend_from_slice(b",\"flags\":[");
    for (i, f) in o.flags.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        plain(out, f.as_str());
    }
    out.push(b']');
    if let Some(d) = &o.dns {
        dns(d, out);
    }
    if let Some(t) = &o.tls {
        tls(t, out);
    }
    if let Some(q) = &o.quic {
        quic(q, out);
    }
    if let Some(h) = &o.http {
        http(h, out);
    }
    if let Some(p) = &o.proxy {
        proxy(p, out);
    }
    out.extend_from_slice(b",\"frame\":");
    uint(out, o.frame);
}

/// `{"ip":"10.0.0.5","port":51234,"mac":"02:..","hostname":".."}` (the last two when known).
fn endpoint(e: &Endpoint, out: &mut Vec<u8>) {
    out.extend_from_slice(b"{\"ip\":");
    text::ip(out, &e.ip);
    out.extend_from_slice(b",\"port\":");
    uint(out, e.port);
    if let Some(m) = &e.mac {
        out.extend_from_slice(b",\"mac\":\"");
        out.extend_from_slice(&mac_bytes(m));
        out.push(b'"');
    }
    if let Some(h) = &e.hostname {
        out.extend_from_slice(b",\"hostname\":");
        string(out, h);
    }
    out.push(b'}');
}

/// `,"dns":{"id":..,"qtype":..,"rcode":..,"answers":[..]}`.
fn dns(d: &DnsInfo, out: &mut Vec<u8>) {
    out.extend_from_slice(b",\"dns\":{\"id\":");
    uint(out, d.id);
    out.extend_from_slice(b",\"qtype\":");
    string(out, &d.qtype);
    if let Some(r) = d.rcode {
        out.extend_from_slice(b",\"rcode\":");
        string(out, r);
    }
    if !d.answers.is_empty() {
        out.extend_from_slice(b",\"answers\":[");
        for (i, a) in d.answers.iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            out.extend_from_slice(b"{\"name\":");
            string(out, &a.name);
            out.extend_from_slice(b",\"type\":");
            string(out, &a.rtype);
            out.extend_from_slice(b",\"ttl\":");
            uint(out, a.ttl);
            out.extend_from_slice(b",\"data\":");
            string(out, &a.data);
            out.push(b'}');
        }
        out.push(b']');
    }
    out.push(b'}');
}

/// `,"tls":{"versions":[..],"alpn":[..]}`.
fn tls(t: &TlsInfo, out: &mut Vec<u8>) {
    out.extend_from_slice(b",\"tls\":{\"versions\":");
    strings(out, &t.versions);
    out.extend_from_slice(b",\"alpn\":");
    strings(out, &t.alpn);
    out.push(b'}');
}

/// `,"quic":{"version":..,"dcid":..,"versions":[..],"alpn":[..]}`.
fn quic(q: &QuicInfo, out: &mut Vec<u8>) {
    out.extend_from_slice(b",\"quic\":{\"version\":");
    string(out, &q.version);
    out.extend_from_slice(b",\"dcid\":");
    string(out, &q.dcid);
    out.extend_from_slice(b",\"versions\":");
    strings(out, &q.versions);
    out.extend_from_slice(b",\"alpn\":");
    strings(out, &q.alpn);
    out.push(b'}');
}

/// `,"http":{"method":..,"host":..}`.
fn http(h: &HttpInfo, out: &mut Vec<u8>) {
    out.extend_from_slice(b",\"http\":{\"method\":");
    string(out, &h.method);
    if let Some(host) = &h.host {
        out.extend_from_slice(b",\"host\":");
        string(out, host);
    }
    out.push(b'}');
}

/// `,"proxy":{"protocol":..,"port":..}`.
fn proxy(p: &ProxyInfo, out: &mut Vec<u8>) {
    out.extend_from_slice(b",\"proxy\":{\"protocol\":");
    string(out, p.protocol);
    out.extend_from_slice(b",\"port\":");
    uint(out, p.port);
    out.push(b'}');
}

/// The decision as a JSON object.
pub fn decision(d: &Decision, out: &mut Vec<u8>) {
    out.reserve(256);
    out.push(b'{');
    if let Some(s) = &d.service {
        out.extend_from_slice(b"\"service\":");
        string(out, s);
        out.push(b',');
    }
    if let Some(s) = &d.service_name {
        out.extend_from_slice(b"\"service_name\":");
        string(out, s);
        out.push(b',');
    }
    if let Some(c) = d.category {
        out.extend_from_slice(b"\"category\":");
        plain(out, c.as_str());
        out.push(b',');
    }
    if let Some(s) = &d.service_kind {
        out.extend_from_slice(b"\"service_kind\":");
        string(out, s);
        out.push(b',');
    }
    out.extend_from_slice(b"\"matched_name\":");
    string(out, &d.matched_name);
    out.extend_from_slice(b",\"pattern\":");
    string(out, &d.pattern);
    out.extend_from_slice(b",\"via\":");
    plain(out, d.via.as_str());
    out.extend_from_slice(b",\"evidence\":");
    plain(out, d.evidence.as_str());
    if !d.matched_by.is_name() {
        out.extend_from_slice(b",\"matched_by\":");
        plain(out, d.matched_by.as_str());
    }
    out.extend_from_slice(b",\"rule_id\":");
    string(out, &d.rule_id);
    out.extend_from_slice(b",\"action\":");
    plain(out, d.action.as_str());
    out.extend_from_slice(b",\"severity\":");
    plain(out, d.severity.as_str());
    if let Some(s) = &d.steer_to {
        out.extend_from_slice(b",\"steer_to\":{\"url\":");
        string(out, &s.url);
        out.extend_from_slice(b",\"instruction\":");
        string(out, &s.instruction);
        out.push(b'}');
    }
    out.extend_from_slice(b",\"groups\":");
    strings(out, &d.groups);
    out.extend_from_slice(b",\"shared_tenant\":");
    boolean(out, d.shared_tenant);
    out.push(b'}');
}

/// One whole line: the observation's fields, then `"decision"` if any, closed, newline.
pub fn line(o: &Observation, d: Option<&Decision>, out: &mut Vec<u8>) {
    observation_open(o, out);
    close(d.map(DecisionJson::Render), out);
}

/// A decision to append to an open observation: rendered now, or already rendered.
pub enum DecisionJson<'a> {
    Render(&'a Decision),
    Bytes(&'a [u8]),
}

/// Close an open observation: `,"decision":...` if any, `}` and a newline.
pub fn close(d: Option<DecisionJson<'_>>, out: &mut Vec<u8>) {
    if let Some(d) = d {
        out.extend_from_slice(b",\"decision\":");
        match d {
            DecisionJson::Render(d) => decision(d, out),
            DecisionJson::Bytes(b) => out.extend_from_slice(b),
        }
    }
    out.extend_from_slice(b"}\n");
}
