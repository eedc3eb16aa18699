//! The on-disk form of the policy directory (serde types): `catalog/*.toml` (services) and
//! `policy.toml` (groups, rules, defaults). Spans are kept so errors can point at the source.

use serde::Deserialize;
use toml::Spanned;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CatalogFile {
    /// Version and date of the vendor catalogue data in this file (optional).
    #[serde(default)]
    pub catalog: Option<CatalogMeta>,
    /// Vendors and the registrable domains they own (what their services may list).
    #[serde(default)]
    pub vendor: Vec<Spanned<VendorDef>>,
    #[serde(default)]
    pub service: Vec<Spanned<ServiceDef>>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CatalogMeta {
    pub version: String,
    /// `YYYY-MM-DD`.
    pub date: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VendorDef {
    pub name: String,
    /// Registrable domains the vendor owns (`google.com`, `claude.ai`).
    #[serde(default)]
    pub domains: Vec<Spanned<String>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Category {
    /// Consumer generative AI: no BAA for personal accounts.
    ConsumerAi,
    /// Enterprise AI API endpoints that can be covered by a BAA.
    EnterpriseAiApi,
    /// The clinic's approved, BAA-covered route.
    ApprovedRoute,
    /// Public DNS-over-HTTPS / DNS-over-TLS resolvers (DNS bypass).
    DnsResolver,
    /// AI coding assistants, AI IDEs and app builders (IDE plugins and API hosts).
    AiCoding,
    /// Image, video, music and 3D generation.
    AiMedia,
    /// Meeting assistants, transcription and voice (speech to text, text to speech).
    AiMeeting,
    /// Clinical AI: ambient scribes, clinical documentation and decision support.
    AiClinical,
    /// General platforms whose AI is one feature among many (notes, design, office suites).
    GeneralPlatform,
}

impl Category {
    pub fn as_str(self) -> &'static str {
        match self {
            Category::ConsumerAi => "consumer_ai",
            Category::EnterpriseAiApi => "enterprise_ai_api",
            Category::ApprovedRoute => "approved_route",
            Category::DnsResolver => "dns_resolver",
            Category::AiCoding => "ai_coding",
            Category::AiMedia => "ai_media",
            Category::AiMeeting => "ai_meeting",
            Category::AiClinical => "ai_clinical",
            Category::GeneralPlatform => "general_platform",
        }
    }

    /// Every category, in declaration order.
    pub const ALL: [Category; 9] = [
        Category::ConsumerAi,
        Category::EnterpriseAiApi,
        Category::ApprovedRoute,
        Category::DnsResolver,
        Category::AiCoding,
        Category::AiMedia,
        Category::AiMeeting,
        Category::AiClinical,
        Category::GeneralPlatform,
    ];

    /// Generative AI used on accounts the clinic holds no BAA for (consumer AI and its
    /// coding, media, meeting and clinical kin): what the weekly report counts as consumer use.
    pub fn is_unapproved_ai(self) -> bool {
        matches!(
            self,
            Category::ConsumerAi
                | Category::AiCoding
                | Category::AiMedia
                | Category::AiMeeting
                | Category::AiClinical
        )
    }

    pub fn parse(s: &str) -> Option<Category> {
        Category::ALL.into_iter().find(|c| c.as_str() == s)
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServiceDef {
    pub id: String,
    pub name: String,
    pub vendor: String,
    pub category: Category,
    /// Sub-kind: chat, assistant, image, coding, notetaker, api, doh, ...
    pub kind: String,
    #[serde(default)]
    pub domains: Vec<Spanned<String>>,
    /// Patterns with a `{region}` placeholder expanded over `regions`.
    #[serde(default)]
    pub templates: Vec<Spanned<String>>,
    #[serde(default)]
    pub regions: Vec<String>,
    /// BAA status in a sentence, and where that fact comes from.
    pub baa: String,
    pub baa_source: String,
    /// Date of `baa_source` as reviewed: `YYYY-MM-DD` or `YYYY-MM`.
    #[serde(default)]
    pub source_date: Option<Spanned<String>>,
    /// Exact host names on a shared platform (cloud storage, CDN) that belong to this service
    /// only: matched exactly, never as a suffix, and exempt from the vendor-ownership check.
    #[serde(default)]
    pub tenant_hosts: Vec<Spanned<String>>,
    /// Set when business/enterprise tenants use the same host names as personal accounts.
    #[serde(default)]
    pub shared_tenant: Option<String>,
    /// The service's own dedicated addresses (IPs, or CIDR prefixes of at least /16 for IPv4 and
    /// /32 for IPv6), such as a public resolver's anycast addresses; never CDN or cloud ranges.
    /// A TLS or QUIC connection to one matches the service even when it carries no name.
    #[serde(default)]
    pub addresses: Vec<Spanned<String>>,
    /// Server ports (TCP or UDP). With `addresses`, only connections to these ports match by
    /// address. Alone (no domains, tenant hosts, templates or addresses), any server on these ports
    /// matches (for a port assigned to one protocol only, such as 853 for DNS over TLS and QUIC).
    #[serde(default)]
    pub ports: Vec<Spanned<u16>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicyFile {
    #[serde(default)]
    pub settings: Settings,
    #[serde(default)]
    pub approved_route: Option<SteerDef>,
    #[serde(default)]
    pub group: Vec<Spanned<GroupDef>>,
    #[serde(default)]
    pub rule: Vec<Spanned<RuleDef>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    /// Action for a catalogued service that no rule matches (default `alert`).
    pub default_action: Option<Spanned<String>>,
    pub default_severity: Option<Spanned<String>>,
    /// IANA time zone for rule schedules (default: the system's).
    pub timezone: Option<Spanned<String>>,
}

#[derive(Debug, Clone, Deserialize, serde::Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct SteerDef {
    pub url: String,
    pub instruction: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GroupDef {
    pub id: String,
    #[serde(default)]
    pub description: String,
    #[serde(default)]
    pub cidrs: Vec<Spanned<String>>,
    /// Full MAC addresses or prefixes ending in `*` (`02:1a:2b:*`).
    #[serde(default)]
    pub macs: Vec<Spanned<String>>,
    /// DHCP host name glob patterns (`*` and `?`).
    #[serde(default)]
    pub hostnames: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleDef {
    pub id: String,
    #[serde(default)]
    pub description: String,
    #[serde(default)]
    pub services: Vec<Spanned<String>>,
    #[serde(default)]
    pub categories: Vec<Category>,
    #[serde(default)]
    pub kinds: Vec<String>,
    /// Extra domain patterns (exact or `*.` wildcard) matched by this rule.
    #[serde(default)]
    pub domains: Vec<Spanned<String>>,
    /// Client groups the rule applies to (empty: everyone).
    #[serde(default)]
    pub groups: Vec<Spanned<String>>,
    /// Client groups the rule never applies to.
    #[serde(default)]
    pub except_groups: Vec<Spanned<String>>,
    pub action: Spanned<String>,
    pub severity: Option<Spanned<String>>,
    /// `approved` (the policy's approved route) or an explicit target.
    pub steer_to: Option<SteerTarget>,
    pub schedule: Option<Spanned<ScheduleDef>>,
    /// The weakest evidence the rule acts on: `wire`, `own_lookup`, `resolver_lookup`,
    /// `other_client` or `unmatched_answer` (default: any).
    pub min_evidence: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum SteerTarget {
    Named(String),
    Explicit(SteerDef),
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScheduleDef {
    /// `mon`..`sun`.
    pub days: Vec<String>,
    /// `HH:MM`, local time in the policy's time zone; `to` may be earlier than `from` (overnight).
    pub from: String,
    pub to: String,
}
