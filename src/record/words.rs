//! The event's vocabulary as types: what kind of event it is ([`EventKind`]), what became of the
//! decision at the gateway ([`Enforced`]), and the one place each typed field becomes the word
//! the store, the JSON lines, ECS, CEF and the CSV write ([`Word`]), and is read back.

use serde::{Deserialize, Deserializer, Serializer};

use super::event::SystemKind;
use crate::flow::observation::Transport;
use crate::flow::{Evidence, Kind};
use crate::policy::config::Category;
use crate::policy::{Action, Severity};

/// A typed value written as one word (store column, JSON string, CSV cell) and read back.
pub trait Word: Sized + Copy {
    fn word(self) -> &'static str;
    fn from_word(s: &str) -> Option<Self>;
}

impl Word for Action {
    fn word(self) -> &'static str {
        self.as_str()
    }
    fn from_word(s: &str) -> Option<Self> {
        Action::parse(s)
    }
}

impl Word for Severity {
    fn word(self) -> &'static str {
        self.as_str()
    }
    fn from_word(s: &str) -> Option<Self> {
        Severity::parse(s)
    }
}

impl Word for Evidence {
    fn word(self) -> &'static str {
        self.as_str()
    }
    fn from_word(s: &str) -> Option<Self> {
        Evidence::parse(s)
    }
}

impl Word for Category {
    fn word(self) -> &'static str {
        self.as_str()
    }
    fn from_word(s: &str) -> Option<Self> {
        Category::ALL.into_iter().find(|c| c.as_str() == s)
    }
}

impl Word for Transport {
    fn word(self) -> &'static str {
        self.as_str()
    }
    fn from_word(s: &str) -> Option<Self> {
        [Transport::Tcp, Transport::Udp]
            .into_iter()
            .find(|t| t.as_str() == s)
    }
}

/// The portal's own events.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PortalKind {
    /// A person's browser showed the steer, coach or granted page (a top-level navigation).
    View,
    /// A person acknowledged the coach page; the grant starts.
    CoachAck,
    /// A coach grant ended.
    GrantExpired,
}

impl PortalKind {
    pub const ALL: [PortalKind; 3] = [
        PortalKind::View,
        PortalKind::CoachAck,
        PortalKind::GrantExpired,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            PortalKind::View => "portal_view",
            PortalKind::CoachAck => "coach_ack",
            PortalKind::GrantExpired => "grant_expired",
        }
    }
}

/// What an event is about: a decided observation (the observation's kind), something the portal
/// did, or the system itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EventKind {
    Observed(Kind),
    Portal(PortalKind),
    System(SystemKind),
}

const OBSERVED: [Kind; 6] = [
    Kind::DnsQuery,
    Kind::DnsAnswer,
    Kind::TlsClientHello,
    Kind::QuicInitial,
    Kind::HttpRequest,
    Kind::ProxyConnect,
];

impl EventKind {
    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::Observed(k) => k.as_str(),
            EventKind::Portal(p) => p.as_str(),
            EventKind::System(s) => s.as_str(),
        }
    }

    pub fn is_system(self) -> bool {
        matches!(self, EventKind::System(_))
    }
}

impl Word for EventKind {
    fn word(self) -> &'static str {
        self.as_str()
    }
    fn from_word(s: &str) -> Option<Self> {
        OBSERVED
            .into_iter()
            .map(EventKind::Observed)
            .chain(PortalKind::ALL.into_iter().map(EventKind::Portal))
            .chain(SystemKind::ALL.into_iter().map(EventKind::System))
            .find(|k| k.as_str() == s)
    }
}

impl From<Kind> for EventKind {
    fn from(k: Kind) -> Self {
        EventKind::Observed(k)
    }
}

impl From<PortalKind> for EventKind {
    fn from(k: PortalKind) -> Self {
        EventKind::Portal(k)
    }
}

impl From<SystemKind> for EventKind {
    fn from(k: SystemKind) -> Self {
        EventKind::System(k)
    }
}

/// What became of a decision at the gateway: the enforcer's, the resolver's or the portal's
/// answer, stored in the event's `detail` as `enforcement`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Outcome {
    /// Traffic was stopped: resets sent, the flow or QUIC dropped, or the lookup answered with
    /// the portal, NXDOMAIN, a null address or no data.
    Stopped,
    /// The decision stops traffic, but enforcement is off (monitor mode, break glass).
    WouldStop,
    /// A coach decision under the client's active grant: let through.
    Granted,
    /// The decision lets traffic through (allow, alert, or a category the gateway never stops).
    Allowed,
    /// The decision stops traffic, but there was nothing to act on (a lookup whose answer was
    /// not seen or held no address, a request over UDP).
    NotActed,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Stopped => "stopped",
            Outcome::WouldStop => "would_stop",
            Outcome::Granted => "granted",
            Outcome::Allowed => "allowed",
            Outcome::NotActed => "none",
        }
    }
}

/// How the gateway stopped (or would have stopped) a flow.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum How {
    /// TCP: exact resets both ways, and the flow into the stop set.
    Reset,
    /// QUIC: the client's packets to that server address dropped.
    QuicDrop,
    /// A DNS answer seen on the wire: QUIC to the addresses it gave dropped for the client.
    QuicDropAnswered,
}

impl How {
    pub fn as_str(self) -> &'static str {
        match self {
            How::Reset => "reset",
            How::QuicDrop => "quic_drop",
            How::QuicDropAnswered => "quic_drop_answered",
        }
    }
}

/// What the resolver answered (DNS mode).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DnsAnswer {
    /// The real answer (forwarded or from the cache).
    Real,
    /// No upstream answered: SERVFAIL.
    Servfail,
    /// The portal's address.
    Portal,
    Nxdomain,
    /// 0.0.0.0 or ::.
    Null,
    /// NOERROR without records.
    Nodata,
}

impl DnsAnswer {
    pub fn as_str(self) -> &'static str {
        match self {
            DnsAnswer::Real => "real",
            DnsAnswer::Servfail => "servfail",
            DnsAnswer::Portal => "portal",
            DnsAnswer::Nxdomain => "nxdomain",
            DnsAnswer::Null => "null",
            DnsAnswer::Nodata => "nodata",
        }
    }
}

/// The enforcement of one decision, as the event records it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Enforced {
    /// By the enforcer on captured traffic (`how`: none when nothing was acted on).
    Flow { outcome: Outcome, how: Option<How> },
    /// By the resolver's answer.
    Lookup { outcome: Outcome, answer: DnsAnswer },
}

impl Enforced {
    pub fn outcome(self) -> Outcome {
        match self {
            Enforced::Flow { outcome, .. } | Enforced::Lookup { outcome, .. } => outcome,
        }
    }

    /// The `detail` object's fields for it.
    pub fn detail(self) -> serde_json::Map<String, serde_json::Value> {
        let mut m = serde_json::Map::new();
        match self {
            Enforced::Flow { outcome, how } => {
                m.insert("enforcement".into(), outcome.as_str().into());
                if let Some(h) = how {
                    m.insert("how".into(), h.as_str().into());
                }
            }
            Enforced::Lookup { outcome, answer } => {
                m.insert("dns_answer".into(), answer.as_str().into());
                m.insert("enforcement".into(), outcome.as_str().into());
            }
        }
        m
    }
}

/// Serde of a [`Word`] field.
pub(super) mod word {
    use super::*;

    pub fn serialize<S: Serializer, T: Word>(v: &T, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(v.word())
    }

    pub fn deserialize<'de, D: Deserializer<'de>, T: Word>(d: D) -> Result<T, D::Error> {
        let s = String::deserialize(d)?;
        T::from_word(&s).ok_or_else(|| serde::de::Error::custom(format!("unknown word `{s}`")))
    }
}

/// Serde of an optional [`Word`] field written as null when absent.
pub(super) mod opt_word {
    use super::*;

    pub fn serialize<S: Serializer, T: Word>(v: &Option<T>, s: S) -> Result<S::Ok, S::Error> {
        match v {
            Some(v) => s.serialize_some(v.word()),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>, T: Word>(d: D) -> Result<Option<T>, D::Error> {
        match Option::<String>::deserialize(d)? {
            None => Ok(None),
            Some(s) => T::from_word(&s)
                .map(Some)
                .ok_or_else(|| serde::de::Error::custom(format!("unknown word `{s}`"))),
        }
    }
}

/// Serde of an optional [`Word`] field written as `absent` when absent (`""` for a system
/// event's transport, `info` for its action).
pub(super) fn or_word<T: Word>(v: Option<T>, absent: &'static str) -> &'static str {
    v.map_or(absent, Word::word)
}

/// Read an optional word written by [`or_word`].
pub(super) fn from_or_word<T: Word>(s: &str, absent: &str) -> Result<Option<T>, String> {
    if s == absent {
        return Ok(None);
    }
    T::from_word(s)
        .map(Some)
        .ok_or_else(|| format!("unknown word `{s}`"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_word_reads_back() {
        for k in OBSERVED
            .into_iter()
            .map(EventKind::Observed)
            .chain(PortalKind::ALL.into_iter().map(EventKind::Portal))
            .chain(SystemKind::ALL.into_iter().map(EventKind::System))
        {
            assert_eq!(EventKind::from_word(k.word()), Some(k));
        }
        for a in Action::BY_RANK {
            assert_eq!(Action::from_word(a.word()), Some(a));
        }
        for c in Category::ALL {
            assert_eq!(Category::from_word(c.word()), Some(c));
        }
        assert_eq!(EventKind::from_word("no_such_kind"), None);
    }
}
