//! The DNS mode's Prometheus metrics (`shadowgate_dns_*`), registered on the registry the daemon
//! hands in: queries by result, upstream latency and errors, cache size, TCP connections refused.

use prometheus::{Histogram, HistogramOpts, IntCounterVec, IntGauge, Opts, Registry};

/// What a query ended as (the `result` label of `shadowgate_dns_queries_total`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QueryResult {
    /// Answered from an upstream.
    Forwarded,
    /// Answered from the cache.
    Cached,
    /// Answered with the portal address (steer, coach without a grant).
    Portal,
    /// NXDOMAIN or 0.0.0.0/:: for a blocked name.
    Blocked,
    /// NOERROR without data (HTTPS/SVCB of a steered name, no portal address for the type).
    Nodata,
    /// From a client outside `clients`, or not a standard query.
    Refused,
    /// Past the client's rate limit.
    Ratelimited,
    /// No upstream answered (or too many queries waited on one).
    Servfail,
    /// A bypass name (`[dns] block_bypass`) answered here.
    Bypass,
}

impl QueryResult {
    pub const ALL: [QueryResult; 9] = [
        QueryResult::Forwarded,
        QueryResult::Cached,
        QueryResult::Portal,
        QueryResult::Blocked,
        QueryResult::Nodata,
        QueryResult::Refused,
        QueryResult::Ratelimited,
        QueryResult::Servfail,
        QueryResult::Bypass,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            QueryResult::Forwarded => "forwarded",
            QueryResult::Cached => "cached",
            QueryResult::Portal => "portal",
            QueryResult::Blocked => "blocked",
            QueryResult::Nodata => "nodata",
            QueryResult::Refused => "refused",
            QueryResult::Ratelimited => "ratelimited",
            QueryResult::Servfail => "servfail",
            QueryResult::Bypass => "bypass",
        }
    }
}

/// The metrics, cheap to clone (prometheus handles are shared).
#[derive(Clone)]
pub struct DnsMetrics {
    queries: IntCounterVec,
    /// Pre-resolved label children, indexed like `QueryResult::ALL` (no label hashing per query).
    by_result: Vec<prometheus::IntCounter>,
    pub upstream_seconds: Histogram,
    pub upstream_errors: IntCounterVec,
    pub cache_entries: IntGauge,
    pub tcp_refused: IntCounterVec,
    /// Queries the source guard sent to a guard socket (their address bound to another MAC).
    pub spoofed: prometheus::IntCounter,
    /// Questions refused a forwarder slot because their client held its share.
    pub fair_share: prometheus::IntCounter,
}

impl DnsMetrics {
    /// Create and register the metrics; an error says which name clashed.
    pub fn register(r: &Registry) -> Result<DnsMetrics, String> {
        let queries = IntCounterVec::new(
            Opts::new(
                "shadowgate_dns_queries_total",
                "DNS queries answered by shadowgate's resolver, by result",
            ),
            &["result"],
        )
        .map_err(|e| e.to_string())?;
        let upstream_seconds = Histogram::with_opts(
            HistogramOpts::new(
                "shadowgate_dns_upstream_seconds",
                "Time an upstream resolver took to answer",
            )
            .buckets(vec![
                0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
            ]),
        )
        .map_err(|e| e.to_string())?;
        let upstream_errors = IntCounterVec::new(
            Opts::new(
                "shadowgate_dns_upstream_errors_total",
                "Upstream exchanges that failed, by kind (timeout, io, bad_response, servfail)",
            ),
            &["kind"],
        )
        .map_err(|e| e.to_string())?;
        let cache_entries = IntGauge::new(
            "shadowgate_dns_cache_entries",
            "Answers held in the DNS cache",
        )
        .map_err(|e| e.to_string())?;
        let tcp_refused = IntCounterVec::new(
            Opts::new(
                "shadowgate_dns_tcp_refused_total",
                "DNS-over-TCP connections closed at once, by reason (total, per_client, outside)",
            ),
            &["reason"],
        )
        .map_err(|e| e.to_string())?;
        let spoofed = prometheus::IntCounter::new(
            "shadowgate_dns_spoofed_total",
            "Queries from an address the gateway binds to another MAC ([dns] source_guard = \"log\"): answered, rate-limited together, recorded in nobody's name",
        )
        .map_err(|e| e.to_string())?;
        let fair_share = prometheus::IntCounter::new(
            "shadowgate_dns_fair_share_total",
            "Questions answered SERVFAIL because their client already held its share of the forwarder's slots",
        )
        .map_err(|e| e.to_string())?;
        for c in [
            Box::new(queries.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(spoofed.clone()),
            Box::new(fair_share.clone()),
            Box::new(upstream_seconds.clone()),
            Box::new(upstream_errors.clone()),
            Box::new(cache_entries.clone()),
            Box::new(tcp_refused.clone()),
        ] {
            r.register(c).map_err(|e| {
                format!("cannot register the DNS metrics ({e}); serve DNS once per registry")
            })?;
        }
        let by_result = QueryResult::ALL
            .iter()
            .map(|q| queries.with_label_values(&[q.as_str()]))
            .collect();
        for k in ["timeout", "io", "bad_response", "servfail"] {
            upstream_errors.with_label_values(&[k]);
        }
        for r in ["total", "per_client"] {
            tcp_refused.with_label_values(&[r]);
        }
        Ok(DnsMetrics {
            queries,
            by_result,
            upstream_seconds,
            upstream_errors,
            cache_entries,
            tcp_refused,
            spoofed,
            fair_share,
        })
    }

    pub fn count(&self, r: QueryResult) {
        self.by_result[r as usize].inc();
    }

    /// Queries so far with this result (tests, `/healthz`).
    pub fn get(&self, r: QueryResult) -> u64 {
        self.queries.with_label_values(&[r.as_str()]).get()
    }
}
