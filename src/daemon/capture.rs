//! One capture thread: a TPACKET_V3 ring feeding its own pipeline (sensor, policy, outputs),
//! with a heartbeat for `/healthz`, counters for `/metrics` and kernel drops on record.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde_json::json;

use super::health::Health;
use super::metrics::{Metrics, StatsDelta};
use crate::capture::live::LiveCapture;
use crate::pipeline::Pipeline;
use crate::record::system::SystemLog;
use crate::record::SystemKind;

/// Everything a capture thread needs besides its socket and pipeline.
pub struct CaptureCtx {
    pub index: usize,
    pub stop: Arc<AtomicBool>,
    pub health: Arc<Health>,
    pub metrics: Metrics,
    pub system: Option<Arc<SystemLog>>,
    pub stats_interval: Duration,
}

/// Run `cap` into `pipeline` on a new thread until `ctx.stop` is set.
pub fn spawn(
    mut cap: LiveCapture,
    mut pipeline: Pipeline,
    ctx: CaptureCtx,
) -> std::io::Result<JoinHandle<()>> {
    let name = format!("sg-capture-{}-{}", cap.iface(), ctx.index);
    std::thread::Builder::new().name(name).spawn(move || {
        let iface = cap.iface().to_string();
        let thread = ctx.index.to_string();
        let up = ctx.metrics.capture_up.with_label_values(&[&iface, &thread]);
        up.set(1);
        let mut delta = StatsDelta::default();
        let mut last_tick = Instant::now();
        let mut last_stats = Instant::now();
        let mut failed = None;
        while !ctx.stop.load(Ordering::Relaxed) {
            if let Err(e) = cap.poll(100, &mut |f| pipeline.feed(f)) {
                failed = Some(e.to_string());
                break;
            }
            if last_tick.elapsed() >= Duration::from_millis(500) {
                last_tick = Instant::now();
                ctx.health.beat(ctx.index);
                pipeline.tick(crate::time::now_ns());
                delta.apply(&ctx.metrics, &iface, &thread, pipeline.stats());
            }
            if last_stats.elapsed() >= ctx.stats_interval {
                last_stats = Instant::now();
                kernel_stats(&mut cap, &ctx, &iface);
            }
        }
        kernel_stats(&mut cap, &ctx, &iface);
        pipeline.finish();
        delta.apply(&ctx.metrics, &iface, &thread, pipeline.stats());
        up.set(0);
        if let Some(e) = failed {
            eprintln!("shadowgate: {e}");
            if let Some(s) = &ctx.system {
                let _ = s.record(
                    SystemKind::CaptureGap,
                    &format!("capture on {iface} stopped: {e}"),
                    json!({"reason": "capture_failed", "interface": iface, "error": e}),
                );
            }
        }
    })
}

/// Read the kernel's counters; drops go to the metrics and, when there are any, on record.
fn kernel_stats(cap: &mut LiveCapture, ctx: &CaptureCtx, iface: &str) {
    let Ok(st) = cap.read_stats() else { return };
    ctx.metrics
        .kernel_packets
        .with_label_values(&[iface])
        .inc_by(st.packets);
    ctx.metrics
        .kernel_drops
        .with_label_values(&[iface])
        .inc_by(st.drops);
    if st.drops > 0 {
        if let Some(s) = &ctx.system {
            let _ = s.record(
                SystemKind::KernelDrops,
                &format!(
                    "kernel dropped {} of {} frames on {iface}",
                    st.drops, st.packets
                ),
                json!({
                    "interface": iface,
                    "thread": ctx.index,
                    "packets": st.packets,
                    "drops": st.drops,
                    "ring_freezes": st.freezes,
                    "interval_s": ctx.stats_interval.as_secs(),
                }),
            );
        }
    }
}
