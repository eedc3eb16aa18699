//! An event store for `bench/report.sh`: EVENTS decision events over DAYS days (bursts of a
//! device's lookups and connections to one service), WEEK_EVENTS more of them in one ISO week,
//! and daily system events; written straight to SQLite in big transactions. Deterministic.
//!
//! `cargo run --release --example gen_report_store -- OUT.db [EVENTS] [DAYS] [WEEK_EVENTS] [WEEK] [TZ]`
//! (defaults: 10,000,000 events, 400 days, 1,000,000 in 2026-W47, America/New_York).

use std::path::PathBuf;

use rusqlite::params;
use shadowgate::record::Store;
use shadowgate::report::Week;

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// (service id, category, action, weight).
const SERVICES: &[(&str, &str, &str, u64)] = &[
    ("claude", "consumer_ai", "steer", 20),
    ("chatgpt", "consumer_ai", "steer", 30),
    ("gemini", "consumer_ai", "steer", 10),
    ("perplexity", "consumer_ai", "block", 6),
    ("copilot-consumer", "consumer_ai", "coach", 6),
    ("deepseek", "consumer_ai", "block", 3),
    ("openai-web", "consumer_ai", "alert", 4),
    ("clinic-ai-portal", "approved_route", "allow", 12),
    ("anthropic-api", "enterprise_ai_api", "alert", 3),
    ("aws-bedrock", "enterprise_ai_api", "allow", 2),
    ("cloudflare-dns", "dns_resolver", "alert", 2),
    ("google-dns", "dns_resolver", "alert", 2),
];
const DEVICES: u64 = 3000;
const SEC: u64 = 1_000_000_000;

struct Ev {
    ts: u64,
    dev: u32,
    svc: u8,
    kind: u8,
}

const KINDS: [&str; 3] = ["dns_query", "tls_client_hello", "quic_initial"];

fn main() {
    let a: Vec<String> = std::env::args().skip(1).collect();
    let out = PathBuf::from(
        a.first()
            .expect("usage: gen_report_store OUT.db [EVENTS] [DAYS] [WEEK_EVENTS] [WEEK] [TZ]"),
    );
    let total: u64 = a.get(1).map(|s| s.parse().unwrap()).unwrap_or(10_000_000);
    let days: u64 = a.get(2).map(|s| s.parse().unwrap()).unwrap_or(400);
    let week_n: u64 = a.get(3).map(|s| s.parse().unwrap()).unwrap_or(1_000_000);
    let week_label = a.get(4).cloned().unwrap_or_else(|| "2026-W47".into());
    let tz = jiff::tz::TimeZone::get(a.get(5).map(String::as_str).unwrap_or("America/New_York"))
        .unwrap();
    let week = Week::parse(&week_label, &tz).unwrap();
    let _ = std::fs::remove_file(&out);
    drop(Store::open(&out).unwrap()); // schema and indexes
    let mut c = rusqlite::Connection::open(&out).unwrap();
    c.pragma_update(None, "synchronous", "OFF").unwrap();
    c.pragma_update(None, "cache_size", -262_144).unwrap();

    // The range ends 30 days after the week.
    let end = week.end_ns + 30 * 86_400 * SEC;
    let start = end - days * 86_400 * SEC;
    let background = total.saturating_sub(week_n);
    let weight_sum: u64 = SERVICES.iter().map(|s| s.3).sum();
    let mut rng = Rng(0x5eed);
    let t0 = std::time::Instant::now();
    let mut written = 0u64;
    let mut in_week = 0u64;
    for day in 0..days {
        let d0 = start + day * 86_400 * SEC;
        let d1 = d0 + 86_400 * SEC;
        let mut n = background / days + u64::from(day < background % days);
        // The week's share: its days get WEEK_EVENTS more, spread by the hours they overlap.
        let ov = d1.min(week.end_ns).saturating_sub(d0.max(week.start_ns));
        n += (week_n as u128 * ov as u128 / (week.end_ns - week.start_ns) as u128) as u64;
        let mut evs: Vec<Ev> = Vec::with_capacity(n as usize + 64);
        while (evs.len() as u64) < n {
            // A burst: one device, one service, 1-12 events within 20 minutes, office hours
            // more likely.
            let dev = rng.below(DEVICES) as u32;
            let mut w = rng.below(weight_sum);
            let mut svc = 0u8;
            for (i, s) in SERVICES.iter().enumerate() {
                if w < s.3 {
                    svc = i as u8;
                    break;
                }
                w -= s.3;
            }
            let t = d0 + rng.below(86_400 * SEC);
            let len = 1 + rng.below(12);
            let lookup_first = rng.below(10) < 4;
            for k in 0..len {
                if evs.len() as u64 >= n {
                    break;
                }
                let ts = (t + k * rng.below(120) * SEC).min(d1 - 1);
                let kind = if k == 0 && lookup_first {
                    0
                } else if rng.below(5) == 0 {
                    2
                } else {
                    1
                };
                evs.push(Ev { ts, dev, svc, kind });
            }
        }
        evs.sort_by_key(|e| e.ts);
        let tx = c.transaction().unwrap();
        {
            let mut st = tx
                .prepare_cached(
                    "INSERT INTO events (id, ts, sensor, client_ip, client_port, client_mac, client_hostname, client_groups, server_ip, server_port, transport, kind, name, seen_via, service, service_name, category, action, severity, rule_id, steer_url, shared_tenant, repeat_count, detail, evidence)
                     VALUES (?1, ?2, 'gw1', ?3, ?4, ?5, ?6, ?7, '192.0.2.10', ?8, ?9, ?10, ?11, ?12, ?13, ?13, ?14, ?15, 'medium', 'SG-300', NULL, 0, 1, ?16, 'wire')",
                )
                .unwrap();
            // The daily system events: a restart at 03:00, a kernel drop report.
            for (kind, off, detail) in [
                ("sensor_stop", 3 * 3600, "{\"how\":\"signal\"}"),
                ("sensor_start", 3 * 3600 + 60, "{}"),
                ("kernel_drops", 14 * 3600, "{\"dropped\":17}"),
            ] {
                let ts = d0 + off * SEC;
                st.execute(params![
                    ulid::Ulid::from_parts(ts / 1_000_000, rng.next() as u128).to_string(),
                    ts as i64,
                    "",
                    0,
                    None::<&str>,
                    None::<&str>,
                    "",
                    0,
                    "",
                    kind,
                    kind,
                    "system",
                    None::<&str>,
                    None::<&str>,
                    "info",
                    Some(detail)
                ])
                .unwrap();
            }
            for e in &evs {
                let (svc, cat, action, _) = SERVICES[e.svc as usize];
                let dev = e.dev;
                let mac = format!(
                    "02:00:5e:{:02x}:{:02x}:{:02x}",
                    dev >> 16,
                    (dev >> 8) & 255,
                    dev & 255
                );
                let host = format!("ws-{dev:04}");
                // Addresses change now and then (DHCP): the MAC keeps the device.
                let ip = format!(
                    "10.20.{}.{}",
                    (dev + (day as u32 / 30)) % 250,
                    dev % 250 + 1
                );
                let groups = match dev % 10 {
                    0 => "clinical,enterprise-claude",
                    1 => "it-admin",
                    _ => "clinical",
                };
                let kind = KINDS[e.kind as usize];
                st.execute(params![
                    ulid::Ulid::from_parts(e.ts / 1_000_000, rng.next() as u128).to_string(),
                    e.ts as i64,
                    ip,
                    50_000 + (e.ts % 10_000) as i64,
                    mac,
                    host,
                    groups,
                    if kind == "dns_query" {
                        53
                    } else if cat == "dns_resolver" && e.ts % 2 == 0 {
                        853
                    } else {
                        443
                    },
                    if kind == "tls_client_hello" {
                        "tcp"
                    } else {
                        "udp"
                    },
                    kind,
                    format!("{svc}.example"),
                    if kind == "dns_query" {
                        "dns"
                    } else if kind == "quic_initial" {
                        "quic"
                    } else {
                        "tls"
                    },
                    svc,
                    cat,
                    action,
                    None::<&str>,
                ])
                .unwrap();
                if e.ts >= week.start_ns && e.ts < week.end_ns {
                    in_week += 1;
                }
            }
        }
        tx.commit().unwrap();
        written += evs.len() as u64;
        if day % 50 == 49 {
            eprintln!(
                "  day {}/{days}: {written} events, {:.0} s",
                day + 1,
                t0.elapsed().as_secs_f64()
            );
        }
    }
    drop(c);
    println!(
        "{}: {written} decision events (+{} system) over {days} days, {in_week} in {week_label}, written in {:.1} s",
        out.display(),
        days * 3,
        t0.elapsed().as_secs_f64()
    );
}
