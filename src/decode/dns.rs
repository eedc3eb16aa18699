//! DNS messages via `simple-dns`: questions, response code, answers (A, AAAA, CNAME, HTTPS/SVCB
//! with ECH) and TTLs. A message whose answer section is broken still yields its questions.

use std::net::{Ipv4Addr, Ipv6Addr};

use simple_dns::rdata::{RData, SVCParam};
use simple_dns::Packet;

use super::be16;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Question {
    pub name: String,
    pub qtype: u16,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RecordData {
    A(Ipv4Addr),
    Aaaa(Ipv6Addr),
    Cname(String),
    /// HTTPS or SVCB record: target name, whether it carries an ECH config, ALPN ids.
    Svcb {
        priority: u16,
        target: String,
        ech: bool,
        alpn: Vec<String>,
    },
    Other,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    pub name: String,
    pub rtype: u16,
    pub ttl: u32,
    pub data: RecordData,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    pub id: u16,
    pub response: bool,
    pub opcode: u8,
    pub rcode: u8,
    pub truncated_flag: bool,
    pub questions: Vec<Question>,
    pub answers: Vec<Record>,
    /// Only the header and questions could be read; the record sections are broken.
    pub partial: bool,
}

impl Message {
    /// Does any HTTPS/SVCB answer carry an ECH config?
    pub fn ech(&self) -> bool {
        self.answers
            .iter()
            .any(|r| matches!(r.data, RecordData::Svcb { ech: true, .. }))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DnsError {
    TooShort,
    Malformed,
}

const HEADER: usize = 12;

/// Cheap plausibility test of a DNS header, for DNS on non-standard ports: one to four questions,
/// a standard opcode, few records, and a length that can hold them.
pub fn looks_like_dns(b: &[u8]) -> bool {
    if b.len() < HEADER + 5 {
        return false;
    }
    let flags = u16::from_be_bytes([b[2], b[3]]);
    let opcode = (flags >> 11) & 0xf;
    let z = flags & 0x0040;
    let qd = u16::from_be_bytes([b[4], b[5]]);
    let an = u16::from_be_bytes([b[6], b[7]]);
    let ns = u16::from_be_bytes([b[8], b[9]]);
    let ar = u16::from_be_bytes([b[10], b[11]]);
    opcode <= 2
        && z == 0
        && (1..=4).contains(&qd)
        && an <= 64
        && ns <= 16
        && ar <= 16
        && b[HEADER] < 64
}

/// Parse one DNS message (UDP payload, or one length-delimited TCP message).
pub fn parse(msg: &[u8]) -> Result<Message, DnsError> {
    if msg.len() < HEADER {
        return Err(DnsError::TooShort);
    }
    let id = be16(msg, 0).unwrap_or(0);
    let flags = be16(msg, 2).unwrap_or(0);
    let mut m = Message {
        id,
        response: flags & 0x8000 != 0,
        opcode: ((flags >> 11) & 0xf) as u8,
        rcode: (flags & 0xf) as u8,
        truncated_flag: flags & 0x0200 != 0,
        questions: Vec::new(),
        answers: Vec::new(),
        partial: false,
    };
    match Packet::parse(msg) {
        Ok(p) => {
            fill(&mut m, &p);
            Ok(m)
        }
        Err(_) => {
            // Broken records: zero the record counts and read just the questions.
            let mut head = msg.to_vec();
            head[6..12].fill(0);
            let p = Packet::parse(&head).map_err(|_| DnsError::Malformed)?;
            if p.questions.is_empty() {
                return Err(DnsError::Malformed);
            }
            fill(&mut m, &p);
            m.partial = true;
            Ok(m)
        }
    }
}

fn name_string(n: &simple_dns::Name<'_>) -> String {
    let mut s = String::new();
    for (i, l) in n.get_labels().iter().enumerate() {
        if i > 0 {
            s.push('.');
        }
        for &b in l.as_ref() {
            if b == b'.' {
                s.push_str("\\046");
            } else {
                super::push_name_bytes(&mut s, &[b]);
            }
        }
    }
    s
}

fn fill(m: &mut Message, p: &Packet<'_>) {
    m.questions = p
        .questions
        .iter()
        .map(|q| Question {
            name: name_string(&q.qname),
            qtype: u16::from(q.qtype),
        })
        .collect();
    m.answers = p
        .answers
        .iter()
        .map(|rr| {
            let data = match &rr.rdata {
                RData::A(a) => RecordData::A(Ipv4Addr::from(a.address)),
                RData::AAAA(a) => RecordData::Aaaa(Ipv6Addr::from(a.address)),
                RData::CNAME(c) => RecordData::Cname(name_string(&c.0)),
                RData::HTTPS(s) => svcb(&s.0),
                RData::SVCB(s) => svcb(s),
                _ => RecordData::Other,
            };
            Record {
                name: name_string(&rr.name),
                rtype: u16::from(rr.rdata.type_code()),
                ttl: rr.ttl,
                data,
            }
        })
        .collect();
}

fn svcb(s: &simple_dns::rdata::SVCB<'_>) -> RecordData {
    let mut ech = false;
    let mut alpn = Vec::new();
    for p in s.iter_params() {
        match p {
            SVCParam::Ech(_) => ech = true,
            SVCParam::Alpn(ids) => alpn = ids.iter().map(|c| c.to_string()).collect(),
            _ => {}
        }
    }
    RecordData::Svcb {
        priority: s.priority,
        target: name_string(&s.target),
        ech,
        alpn,
    }
}

/// Name of a query / record type.
pub fn type_name(t: u16) -> String {
    match t {
        1 => "A".into(),
        2 => "NS".into(),
        5 => "CNAME".into(),
        6 => "SOA".into(),
        12 => "PTR".into(),
        15 => "MX".into(),
        16 => "TXT".into(),
        28 => "AAAA".into(),
        33 => "SRV".into(),
        41 => "OPT".into(),
        64 => "SVCB".into(),
        65 => "HTTPS".into(),
        255 => "ANY".into(),
        t => format!("TYPE{t}"),
    }
}

/// Name of a response code.
pub fn rcode_name(r: u8) -> &'static str {
    match r {
        0 => "NOERROR",
        1 => "FORMERR",
        2 => "SERVFAIL",
        3 => "NXDOMAIN",
        4 => "NOTIMP",
        5 => "REFUSED",
        _ => "OTHER",
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// Build a DNS message: question `name` type `qtype`, with the given A answers.
    pub fn message(
        id: u16,
        response: bool,
        name: &str,
        qtype: u16,
        answers: &[([u8; 4], u32)],
    ) -> Vec<u8> {
        let mut v = Vec::new();
        v.extend_from_slice(&id.to_be_bytes());
        v.extend_from_slice(&(if response { 0x8180u16 } else { 0x0100 }).to_be_bytes());
        v.extend_from_slice(&1u16.to_be_bytes());
        v.extend_from_slice(&(answers.len() as u16).to_be_bytes());
        v.extend_from_slice(&[0, 0, 0, 0]);
        for l in name.split('.') {
            v.push(l.len() as u8);
            v.extend_from_slice(l.as_bytes());
        }
        v.push(0);
        v.extend_from_slice(&qtype.to_be_bytes());
        v.extend_from_slice(&1u16.to_be_bytes());
        for (ip, ttl) in answers {
            v.extend_from_slice(&[0xc0, 12, 0, 1, 0, 1]);
            v.extend_from_slice(&ttl.to_be_bytes());
            v.extend_from_slice(&[0, 4]);
            v.extend_from_slice(ip);
        }
        v
    }

    #[test]
    fn query_and_answer() {
        let q = parse(&message(7, false, "Claude.ai", 1, &[])).unwrap();
        assert!(!q.response);
        assert_eq!(
            q.questions,
            vec![Question {
                name: "claude.ai".into(),
                qtype: 1
            }]
        );
        let a = parse(&message(
            7,
            true,
            "claude.ai",
            1,
            &[([160, 79, 104, 10], 300)],
        ))
        .unwrap();
        assert_eq!(
            a.answers[0].data,
            RecordData::A(Ipv4Addr::new(160, 79, 104, 10))
        );
        assert_eq!(a.answers[0].ttl, 300);
        assert!(looks_like_dns(&message(7, false, "claude.ai", 1, &[])));
    }

    #[test]
    fn broken_answers_keep_questions() {
        let mut m = message(7, true, "chatgpt.com", 1, &[([1, 2, 3, 4], 60)]);
        m.truncate(m.len() - 3);
        let a = parse(&m).unwrap();
        assert!(a.partial);
        assert_eq!(a.questions[0].name, "chatgpt.com");
        assert!(a.answers.is_empty());
    }

    #[test]
    fn garbage_is_an_error() {
        assert_eq!(parse(&[0; 5]), Err(DnsError::TooShort));
        let mut m = message(1, false, "a.b", 1, &[]);
        m[12] = 0xc0;
        m[13] = 12; // pointer loop onto itself
        assert!(parse(&m).is_err());
    }
}
