//! Runs shadowgate's DNS mode alone from a configuration file (`[dns]`, `[policy]`, optional
//! `[portal]`, `[store]`, `[enforce]`) until SIGINT/SIGTERM: for bench/dns.sh until `shadowgate run`.
//!
//! `cargo run --release --example dns_serve -- shadowgate.toml`

use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use shadowgate::act::devices::Devices;
use shadowgate::act::dns::{serve, DnsCtx, QueryResult};
use shadowgate::act::grants::Grants;
use shadowgate::config::{Config, EnforceMode};
use shadowgate::policy::reload::PolicyHandle;
use shadowgate::record::queue::start;
use shadowgate::record::Store;

fn main() {
    let Some(path) = std::env::args().nth(1) else {
        eprintln!("usage: dns_serve CONFIG.toml (with [dns] and [policy])");
        std::process::exit(2);
    };
    if let Err(e) = run(std::path::Path::new(&path)) {
        eprintln!("dns_serve: {e}");
        std::process::exit(1);
    }
}

fn run(path: &std::path::Path) -> Result<(), String> {
    let conf = Config::load(path).map_err(|e| e.to_string())?;
    let dns = conf
        .dns
        .clone()
        .ok_or("the configuration has no [dns] section: add listen, upstreams and clients")?;
    let pdir = conf
        .policy
        .as_ref()
        .ok_or("the configuration has no [policy] section: add dir = \"policies\"")?
        .dir
        .clone();
    let policy = PolicyHandle::load(&pdir).map_err(|e| e.to_string())?;
    let (events, recorder) = match &conf.store {
        Some(s) => {
            let store = Store::open(&s.path).map_err(|e| format!("{}: {e}", s.path.display()))?;
            let (tx, rec) = start(store, 65_536, s.batch, None);
            (Some(tx), Some(rec))
        }
        None => (None, None),
    };
    let enforcing = conf
        .enforce
        .as_ref()
        .is_some_and(|e| e.mode == EnforceMode::Enforce);
    let rt = tokio::runtime::Runtime::new().map_err(|e| format!("tokio: {e}"))?;
    rt.block_on(async move {
        let ctx = DnsCtx {
            policy,
            grants: Arc::new(Grants::new()),
            devices: Arc::new(Devices::new()),
            events,
            sensor: conf.sensor.id.clone(),
            enforcing: Arc::new(AtomicBool::new(enforcing)),
            registry: prometheus::Registry::new(),
        };
        let h = serve(dns, conf.portal.clone(), ctx).await?;
        eprintln!(
            "dns_serve: answering on {:?} ({})",
            h.local_addrs(),
            if enforcing { "enforce" } else { "monitor" }
        );
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .map_err(|e| e.to_string())?;
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
        let counts: Vec<String> = QueryResult::ALL
            .iter()
            .map(|r| format!("{}={}", r.as_str(), h.metrics().get(*r)))
            .collect();
        eprintln!("dns_serve: {}", counts.join(" "));
        h.shutdown().await;
        Ok::<(), String>(())
    })?;
    if let Some(r) = recorder {
        r.stop();
    }
    Ok(())
}
