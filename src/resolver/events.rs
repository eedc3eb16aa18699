//! The resolver's observations: each lookup becomes one `dns_query` observation (client,
//! listen address, transport, and once answered the answers), which the judge completes with
//! the client's device, decides and records.

use std::net::SocketAddr;

use crate::decode::dns::{rcode_name, type_name};
use crate::flow::observation::{DnsAnswer, DnsInfo, Transport};
use crate::flow::{Kind, Observation};
use hickory_proto::op::ResponseCode;
use hickory_proto::rr::{Record, RecordType};

/// Answers kept in an observation at most, and characters of one answer's data.
const MAX_ANSWERS: usize = 16;
const MAX_DATA: usize = 256;

/// The query as the policy sees it (`name`: lower-case, no trailing dot).
pub fn observation(
    name: String,
    qtype: RecordType,
    id: u16,
    client: SocketAddr,
    server: SocketAddr,
    tcp: bool,
) -> Observation {
    let transport = if tcp { Transport::Tcp } else { Transport::Udp };
    let mut o = Observation::between(
        crate::time::now_ns(),
        Kind::DnsQuery,
        Some(name),
        transport,
        client,
        server,
    );
    if tcp {
        o.flags.push(crate::flow::Flag::DnsTcp);
    }
    o.dns = Some(DnsInfo {
        id,
        qtype: type_name(u16::from(qtype)),
        rcode: None,
        answers: Vec::new(),
    });
    o
}

/// Note the answer sent (rcode and up to 16 records).
pub fn set_answer(o: &mut Observation, rcode: ResponseCode, answers: &[Record]) {
    let Some(d) = o.dns.as_mut() else { return };
    d.rcode = Some(rcode_name(u16::from(rcode).min(255) as u8));
    d.answers = answers
        .iter()
        .take(MAX_ANSWERS)
        .map(|r| {
            let mut data = r.data.to_string();
            if data.len() > MAX_DATA {
                let mut cut = MAX_DATA;
                while !data.is_char_boundary(cut) {
                    cut -= 1;
                }
                data.truncate(cut);
            }
            let name = r.name.to_ascii();
            DnsAnswer {
                name: name.strip_suffix('.').unwrap_or(&name).to_ascii_lowercase(),
                rtype: type_name(u16::from(r.record_type())),
                ttl: r.ttl,
                data,
            }
        })
        .collect();
}
