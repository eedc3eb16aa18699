//! Runs the steering portal alone from a shadowgate configuration ([policy], [store], [portal]),
//! for the browser tests until `shadowgate run` serves it; also mints test leaves.
//!
//! `portal_serve CONFIG` serves until SIGTERM/SIGINT or stdin closes, printing one `ready` line.
//! `portal_serve mint-unchecked CA_CERT CA_KEY NAME OUT_DIR` signs a leaf for any NAME, even one
//! outside the CA's name constraints (to show that browsers refuse it), as leaf.pem + leaf.key.

use std::io::Write;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use shadowgate::act::devices::Devices;
use shadowgate::act::grants::Grants;
use shadowgate::act::portal::{ca::PortalCa, serve, PortalCtx};
use shadowgate::policy::reload::PolicyHandle;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let r = match args.first().map(String::as_str) {
        Some("mint-unchecked") if args.len() == 5 => mint(&args[1], &args[2], &args[3], &args[4]),
        Some(cfg) if args.len() == 1 => run(Path::new(cfg)),
        _ => Err(
            "usage: portal_serve CONFIG | portal_serve mint-unchecked CA_CERT CA_KEY NAME OUT_DIR"
                .into(),
        ),
    };
    if let Err(e) = r {
        eprintln!("portal_serve: {e}");
        std::process::exit(1);
    }
}

fn mint(cert: &str, key: &str, name: &str, out: &str) -> Result<(), String> {
    let ca = PortalCa::load(
        Path::new(cert),
        Path::new(key),
        Duration::from_secs(3600),
        1,
    )?;
    let (der, key) = ca.mint_der(name)?;
    let pem = |label: &str, b: &[u8]| {
        use std::fmt::Write;
        let b64 = base64(b);
        let mut s = format!("-----BEGIN {label}-----\n");
        for c in b64.as_bytes().chunks(64) {
            let _ = writeln!(s, "{}", std::str::from_utf8(c).unwrap_or(""));
        }
        let _ = writeln!(s, "-----END {label}-----");
        s
    };
    let chain = pem("CERTIFICATE", &der) + &pem("CERTIFICATE", ca.ca_der());
    std::fs::write(Path::new(out).join("leaf.pem"), chain).map_err(|e| e.to_string())?;
    std::fs::write(Path::new(out).join("leaf.key"), pem("PRIVATE KEY", &key))
        .map_err(|e| e.to_string())
}

fn base64(b: &[u8]) -> String {
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut s = String::new();
    for c in b.chunks(3) {
        let n = (c[0] as u32) << 16
            | (*c.get(1).unwrap_or(&0) as u32) << 8
            | *c.get(2).unwrap_or(&0) as u32;
        for i in 0..4 {
            if i <= c.len() {
                s.push(A[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                s.push('=');
            }
        }
    }
    s
}

fn run(cfg: &Path) -> Result<(), String> {
    let conf = shadowgate::config::Config::load(cfg).map_err(|e| e.to_string())?;
    let portal = conf
        .portal
        .clone()
        .ok_or("the configuration has no [portal] section")?;
    let pdir = conf
        .policy
        .as_ref()
        .ok_or("the configuration has no [policy] section")?;
    let policy = PolicyHandle::load(&pdir.dir).map_err(|e| e.to_string())?;
    let (events, recorder) = match &conf.store {
        Some(s) => {
            let store = shadowgate::record::Store::open(&s.path).map_err(|e| e.to_string())?;
            let (tx, rec) = shadowgate::record::queue::start(store, 4096, 16, None);
            (Some(tx), Some(rec))
        }
        None => (None, None),
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    let registry = prometheus::Registry::new();
    rt.block_on(async {
        let h = serve(
            portal,
            PortalCtx {
                policy,
                grants: Arc::new(Grants::new()),
                devices: Arc::new(Devices::new()),
                events,
                sensor: conf.sensor.id.clone(),
                registry: registry.clone(),
            },
        )
        .await?;
        println!(
            "ready http={:?} https={:?} healthy={}",
            h.http,
            h.https,
            h.healthy()
        );
        let _ = std::io::stdout().flush();
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .map_err(|e| e.to_string())?;
        let stdin_closed = tokio::task::spawn_blocking(|| {
            let mut b = String::new();
            while std::io::stdin()
                .read_line(&mut b)
                .map(|n| n > 0)
                .unwrap_or(false)
            {
                b.clear();
            }
        });
        tokio::select! {
            _ = term.recv() => {}
            _ = tokio::signal::ctrl_c() => {}
            _ = stdin_closed => {}
        }
        h.shutdown().await;
        // The figures the test reads: what the portal counted.
        let enc = prometheus::TextEncoder::new();
        if let Ok(s) = enc.encode_to_string(&registry.gather()) {
            for l in s.lines().filter(|l| l.starts_with("shadowgate_portal")) {
                eprintln!("{l}");
            }
        }
        Ok::<(), String>(())
    })?;
    if let Some(r) = recorder {
        r.stop();
    }
    Ok(())
}
