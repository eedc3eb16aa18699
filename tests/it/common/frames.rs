//! Synthetic frames and captures on top of `benches/synth.rs`: captures of AI flows, DHCP
//! messages, QUIC Initials carrying a ClientHello.

use std::path::{Path, PathBuf};

use super::synth;

/// The client MAC of `synth`'s frames (`synth::tcp`, `synth::udp`).
pub const SYNTH_CLIENT_MAC: [u8; 6] = [2, 0, 0, 0, 0, 1];

/// Write a capture at `path` of `flows` synthetic flows (each a DNS lookup and a ClientHello
/// decision, then `bulk` data segments).
pub fn flows_capture(path: &Path, flows: u32, bulk: u32) {
    let mut frames = Vec::new();
    for i in 0..flows {
        synth::flow(i, bulk, &mut frames);
    }
    synth::write_pcap(path, &frames).unwrap();
}

/// A capture `dir/ai.pcap` with `flows` flows, each giving a DNS lookup and a ClientHello decision.
pub fn ai_capture(dir: &Path, flows: u32) -> PathBuf {
    let p = dir.join("ai.pcap");
    flows_capture(&p, flows, 0);
    p
}

/// A DHCP message of the client with `mac` (Ethernet): without `ack_ip` its REQUEST (broadcast,
/// with `hostname` if given), with one the server's ACK (from 10.20.0.1) giving it that address.
pub fn dhcp(mac: [u8; 6], hostname: Option<&str>, ack_ip: Option<[u8; 4]>) -> Vec<u8> {
    use dhcproto::v4::{DhcpOption, Flags, Message, MessageType, Opcode};
    use dhcproto::{Encodable, Encoder};
    let mut m = Message::default();
    m.set_flags(Flags::default()).set_chaddr(&mac);
    m.set_opcode(if ack_ip.is_none() {
        Opcode::BootRequest
    } else {
        Opcode::BootReply
    });
    if let Some(ip) = ack_ip {
        m.set_yiaddr(ip);
        m.opts_mut()
            .insert(DhcpOption::MessageType(MessageType::Ack));
    } else {
        m.opts_mut()
            .insert(DhcpOption::MessageType(MessageType::Request));
    }
    if let Some(h) = hostname {
        m.opts_mut().insert(DhcpOption::Hostname(h.to_string()));
    }
    let mut buf = Vec::new();
    m.encode(&mut Encoder::new(&mut buf)).unwrap();
    match ack_ip {
        None => synth::udp([0, 0, 0, 0], [255, 255, 255, 255], 68, 67, &buf),
        Some(ip) => synth::udp([10, 20, 0, 1], ip, 67, 68, &buf),
    }
}

/// How [`quic_hello`] builds its Initial: connection ids, the ClientHello's size (as
/// `synth::client_hello` pads it) and the datagram's.
pub struct InitialShape<'a> {
    pub dcid: &'a [u8],
    pub scid: &'a [u8],
    pub hello_size: usize,
    pub datagram_len: usize,
}

/// A QUIC v1 Initial (packet number 0, no token) carrying a ClientHello for `sni`.
pub fn quic_hello(sni: &str, shape: &InitialShape) -> Vec<u8> {
    let hello = synth::client_hello(sni, shape.hello_size);
    // CRYPTO frame: type 0x06, offset 0, length, data (the handshake message without the
    // 5-byte record header).
    let hs = &hello[5..];
    let mut frames = vec![0x06, 0x00];
    frames.extend(synth::quic_varint(hs.len() as u64, 2));
    frames.extend_from_slice(hs);
    synth::quic_v1_initial(
        shape.dcid,
        shape.scid,
        &[],
        0,
        &frames,
        shape.datagram_len,
        true,
    )
}

/// A TLS connection as a client makes it: SYN, SYN-ACK, ACK, then a ClientHello for `name`
/// (a hello the sensor verifies: it acknowledges the server's SYN).
pub fn tls_connection(client: [u8; 4], server: [u8; 4], port: u16, name: &str) -> Vec<Vec<u8>> {
    vec![
        synth::tcp(client, server, port, 443, 0, 0, "S", &[]),
        synth::tcp(server, client, 443, port, 5000, 1, "SA", &[]),
        synth::tcp(client, server, port, 443, 1, 5001, "A", &[]),
        synth::tcp(
            client,
            server,
            port,
            443,
            1,
            5001,
            "PA",
            &synth::client_hello(name, 600),
        ),
    ]
}
