//! The device table's Prometheus metrics (`shadowgate_devices_*`), updated after every refresh:
//! table size, refused additions, refreshes per source and result, the last leases file read.

use prometheus::{IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry};

use super::{Devices, RefreshReport};

/// Register with [`DeviceMetrics::register`], pass to [`super::spawn_refresh_metered`].
#[derive(Clone)]
pub struct DeviceMetrics {
    known: IntGauge,
    refused: IntCounter,
    refreshes: IntCounterVec,
    leases: IntGaugeVec,
    neighbours: IntGauge,
}

fn reg<C: prometheus::core::Collector + Clone + 'static>(r: &Registry, c: C) -> Result<C, String> {
    r.register(Box::new(c.clone()))
        .map_err(|e| format!("device metrics: {e}"))?;
    Ok(c)
}

impl DeviceMetrics {
    /// Register the metrics on `r` (once per registry).
    pub fn register(r: &Registry) -> Result<DeviceMetrics, String> {
        let e = |e: prometheus::Error| format!("device metrics: {e}");
        Ok(DeviceMetrics {
            known: reg(
                r,
                IntGauge::new("shadowgate_devices_known", "Addresses in the device table")
                    .map_err(e)?,
            )?,
            refused: reg(
                r,
                IntCounter::new(
                    "shadowgate_devices_refused_total",
                    "Device table additions refused because it was full",
                )
                .map_err(e)?,
            )?,
            refreshes: reg(
                r,
                IntCounterVec::new(
                    Opts::new(
                        "shadowgate_devices_refreshes_total",
                        "Reads of the neighbour table and the leases file, by source and result",
                    ),
                    &["source", "result"],
                )
                .map_err(e)?,
            )?,
            leases: reg(
                r,
                IntGaugeVec::new(
                    Opts::new(
                        "shadowgate_devices_leases",
                        "Leases in the last read of the leases file, by state \
                         (active, expired, malformed, over_limit)",
                    ),
                    &["state"],
                )
                .map_err(e)?,
            )?,
            neighbours: reg(
                r,
                IntGauge::new(
                    "shadowgate_devices_neighbours",
                    "Neighbour entries with a MAC address in the last read",
                )
                .map_err(e)?,
            )?,
        })
    }

    /// Record one refresh.
    pub fn observe(&self, devices: &Devices, rep: &RefreshReport) {
        self.known.set(devices.len() as i64);
        let refused = devices.refused();
        let seen = self.refused.get();
        if refused > seen {
            self.refused.inc_by(refused - seen);
        }
        let ok = |r: bool| if r { "ok" } else { "failed" };
        if let Some(n) = &rep.neighbours {
            self.refreshes
                .with_label_values(&["neighbours", ok(n.is_ok())])
                .inc();
            if let Ok(s) = n {
                self.neighbours.set(s.learnt as i64);
            }
        }
        if let Some(l) = &rep.leases {
            self.refreshes
                .with_label_values(&["leases", ok(l.is_ok())])
                .inc();
            if let Ok(s) = l {
                for (state, v) in [
                    ("active", s.active),
                    ("expired", s.expired),
                    ("malformed", s.malformed),
                    ("over_limit", s.over_limit),
                ] {
                    self.leases.with_label_values(&[state]).set(v as i64);
                }
            }
        }
    }
}
