//! DNS messages via `hickory-proto`: the first question (QDCOUNT above 1 is malformed, RFC 9619),
//! rcode, answers (A, AAAA, CNAME, HTTPS/SVCB with ECH public names) and TTLs, read record by
//! record, so a broken answer section still yields the question and the answers before it.

use std::net::{Ipv4Addr, Ipv6Addr};

use hickory_proto::op::{Header, Message as HMessage};
use hickory_proto::rr::rdata::svcb::{SvcParamKey, SvcParamValue, SVCB};
use hickory_proto::rr::{Name, RData, Record as HRecord};
use hickory_proto::serialize::binary::{BinDecodable, BinDecoder};

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
    /// HTTPS or SVCB record: target name, whether it carries an ECH config (and the configs'
    /// public names), ALPN ids.
    Svcb {
        priority: u16,
        target: String,
        ech: bool,
        public_names: Vec<String>,
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
    /// The questions: the first (none when QDCOUNT is 0, e.g. a DNS cookie exchange), then,
    /// when QDCOUNT is above 1 (mDNS asks several at once, RFC 6762 §5.3), the further ones
    /// that could be read, [`MAX_QUESTIONS`] in all at most.
    pub questions: Vec<Question>,
    pub answers: Vec<Record>,
    /// Some of the declared answers could not be read.
    pub partial: bool,
    /// QDCOUNT was above 1 (RFC 9619: malformed, but mDNS does it): no answers were read; the
    /// questions after the first only as far as they decode.
    pub multi_question: bool,
    /// Answers beyond [`MAX_ANSWERS`], not read.
    pub skipped_answers: usize,
}

/// Answer records read from one message; the rest are counted in `skipped_answers`.
pub const MAX_ANSWERS: usize = 128;

/// Questions read from one message, at most (mDNS service discovery asks a dozen or two).
pub const MAX_QUESTIONS: usize = 32;

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
    let flags = be16(msg, 2).unwrap_or(0);
    let mut d = BinDecoder::new(msg);
    let header = Header::read(&mut d).map_err(|_| DnsError::TooShort)?;
    let qdcount = header.counts.queries as usize;
    let queries =
        HMessage::read_queries(&mut d, qdcount.min(1)).map_err(|_| DnsError::Malformed)?;
    let mut m = Message {
        id: header.metadata.id,
        response: flags & 0x8000 != 0,
        opcode: ((flags >> 11) & 0xf) as u8,
        rcode: (flags & 0xf) as u8,
        truncated_flag: flags & 0x0200 != 0,
        questions: queries
            .iter()
            .map(|q| Question {
                name: name_string(&q.name),
                qtype: u16::from(q.query_type),
            })
            .collect(),
        answers: Vec::new(),
        partial: false,
        multi_question: qdcount > 1,
        skipped_answers: 0,
    };
    if m.multi_question {
        // The further questions, as far as they decode (the first one decides whether the
        // message is DNS at all). The answers are not read: such a message feeds nothing.
        for _ in 1..qdcount.min(MAX_QUESTIONS) {
            let Ok(q) = HMessage::read_queries(&mut d, 1) else {
                break;
            };
            m.questions.extend(q.iter().map(|q| Question {
                name: name_string(&q.name),
                qtype: u16::from(q.query_type),
            }));
        }
        return Ok(m);
    }
    let declared = header.counts.answers as usize;
    m.skipped_answers = declared.saturating_sub(MAX_ANSWERS);
    for _ in 0..declared.min(MAX_ANSWERS) {
        match HRecord::read(&mut d) {
            Ok(rr) => m.answers.push(record(&rr)),
            Err(_) => {
                m.partial = true;
                break;
            }
        }
    }
    Ok(m)
}

fn name_string(n: &Name) -> String {
    let mut s = String::with_capacity(n.len());
    for (i, l) in n.iter().enumerate() {
        if i > 0 {
            s.push('.');
        }
        // Most labels are plain printable ASCII: lowercased in one go.
        if l.iter()
            .all(|&b| (0x21..=0x7e).contains(&b) && b != b'.' && b != b'\\')
        {
            s.extend(l.iter().map(|b| b.to_ascii_lowercase() as char));
            continue;
        }
        for &b in l {
            if b == b'.' {
                s.push_str("\\046");
            } else {
                super::push_name_bytes(&mut s, &[b]);
            }
        }
    }
    if s.is_empty() {
        s.push('.');
    }
    s
}

fn record(rr: &HRecord) -> Record {
    let data = match &rr.data {
        RData::A(a) => RecordData::A(a.0),
        RData::AAAA(a) => RecordData::Aaaa(a.0),
        RData::CNAME(c) => RecordData::Cname(name_string(&c.0)),
        RData::HTTPS(s) => svcb(&s.0),
        RData::SVCB(s) => svcb(s),
        _ => RecordData::Other,
    };
    Record {
        name: name_string(&rr.name),
        rtype: u16::from(rr.record_type()),
        ttl: rr.ttl,
        data,
    }
}

fn svcb(s: &SVCB) -> RecordData {
    let mut ech = false;
    let mut public_names = Vec::new();
    let mut alpn = Vec::new();
    for (k, v) in &s.svc_params {
        match (k, v) {
            (SvcParamKey::EchConfigList, SvcParamValue::EchConfigList(l)) => {
                ech = true;
                public_names = super::ech::public_names(&l.0);
            }
            (SvcParamKey::EchConfigList, _) => ech = true,
            (_, SvcParamValue::Alpn(a)) => alpn = a.0.clone(),
            _ => {}
        }
    }
    RecordData::Svcb {
        priority: s.svc_priority,
        target: name_string(&s.target_name),
        ech,
        public_names,
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
        // Unknown query types are kept, not rejected.
        let q = parse(&message(2, false, "mon.lbl.gov", 44, &[])).unwrap();
        assert_eq!(q.questions[0].qtype, 44);
    }

    /// An HTTPS (type 65) answer for `name` whose `ech` SvcParam is `ech_list`.
    pub fn https_answer(id: u16, name: &str, ech_list: &[u8]) -> Vec<u8> {
        let mut v = message(id, true, name, 65, &[]);
        v[7] = 1; // ANCOUNT
        let mut rdata = vec![0, 1, 0]; // priority 1, target "."
        rdata.extend_from_slice(&5u16.to_be_bytes());
        rdata.extend_from_slice(&(ech_list.len() as u16).to_be_bytes());
        rdata.extend_from_slice(ech_list);
        v.extend_from_slice(&[0xc0, 12, 0, 65, 0, 1, 0, 0, 1, 0x2c]);
        v.extend_from_slice(&(rdata.len() as u16).to_be_bytes());
        v.extend_from_slice(&rdata);
        v
    }

    #[test]
    fn https_answer_carries_ech_public_names() {
        let list = crate::decode::ech::tests::list(&["cloudflare-ech.com"]);
        let m = parse(&https_answer(3, "crypto.example", &list)).unwrap();
        assert!(m.ech());
        match &m.answers[0].data {
            RecordData::Svcb { public_names, .. } => {
                assert_eq!(public_names, &["cloudflare-ech.com"])
            }
            d => panic!("{d:?}"),
        }
    }

    #[test]
    fn only_the_first_question_is_read() {
        // QDCOUNT 2: both questions, flagged, and no answers (they follow the second).
        let mut m = message(9, true, "claude.ai", 1, &[([1, 2, 3, 4], 60)]);
        m[5] = 2;
        let at = 12 + "claude.ai".len() + 2 + 4;
        m.splice(
            at..at,
            [
                7, b'c', b'h', b'a', b't', b'g', b'p', b't', 3, b'c', b'o', b'm', 0, 0, 1, 0, 1,
            ],
        );
        let a = parse(&m).unwrap();
        assert!(a.multi_question);
        assert_eq!(a.questions.len(), 2);
        assert_eq!(a.questions[0].name, "claude.ai");
        assert_eq!(a.questions[1].name, "chatgpt.com");
        assert!(a.answers.is_empty());
        // QDCOUNT 9 with only two questions (and one answer) there: what decodes, no error.
        m[5] = 9;
        let a = parse(&m).unwrap();
        assert!((2..=9).contains(&a.questions.len()));
        // QDCOUNT 0 (a DNS cookie refresh): no question at all.
        let mut m = message(9, false, "claude.ai", 1, &[]);
        m[5] = 0;
        m.truncate(12);
        let q = parse(&m).unwrap();
        assert!(q.questions.is_empty() && !q.multi_question);
    }

    #[test]
    fn answers_are_bounded() {
        let answers: Vec<([u8; 4], u32)> =
            (0..300u32).map(|i| ((i << 8).to_be_bytes(), 60)).collect();
        let a = parse(&message(1, true, "bomb.example", 1, &answers)).unwrap();
        assert_eq!(a.answers.len(), MAX_ANSWERS);
        assert_eq!(a.skipped_answers, 300 - MAX_ANSWERS);
    }
}
