//! Sharded replay (`replay --threads N`) against one sensor over every bundled capture: the same
//! observations in the same order (inferred names included) and the same counters.

use crate::common::captures::captures;
use crate::common::cli::bin;
use crate::common::files::root;
use crate::common::sensor::replay_capture;

use std::path::Path;

use shadowgate::flow::{sensor, Config, Observation, Sensor};
use shadowgate::replay;

/// `f` through one sensor (a read error ends the file, as in the sharded run): observations and
/// counters.
fn single(f: &Path) -> (Vec<Observation>, String) {
    let (obs, s, _) = replay_capture(f);
    (obs, serde_json::to_string_pretty(&s.stats()).unwrap())
}

fn sharded(f: &Path, n: usize) -> (Vec<Observation>, String, Vec<u64>) {
    let mut shards = sensor::shards(&Config::default(), n);
    let mut obs = Vec::new();
    let _ = replay::replay_file_sharded(
        f,
        &mut shards,
        &replay::NoPrepare,
        |o, (), _| obs.push(o.clone()),
        |_| {},
    );
    replay::finish_sharded(&mut shards, |o| obs.push(o.clone()));
    let stats: Vec<_> = shards.iter().map(Sensor::stats).collect();
    (
        obs,
        serde_json::to_string_pretty(&shadowgate::flow::Stats::merged(&stats)).unwrap(),
        stats.iter().map(|s| s.frames).collect(),
    )
}

#[test]
fn sharded_replay_reports_what_one_sensor_reports() {
    let mut files = Vec::new();
    captures(&root().join("pcaps"), &mut files);
    files.sort();
    assert!(files.len() >= 80, "{}", files.len());
    let mut observations = 0;
    // Frames each shard owned, over all captures: the work is really split.
    let mut owned = [vec![0u64; 2], vec![0u64; 3]];
    for f in &files {
        let (obs, stats) = single(f);
        observations += obs.len();
        for n in [2, 3] {
            let (o2, s2, frames) = sharded(f, n);
            for (t, k) in owned[n - 2].iter_mut().zip(frames) {
                *t += k;
            }
            assert_eq!(obs.len(), o2.len(), "{} on {n} threads", f.display());
            for (a, b) in obs.iter().zip(&o2) {
                assert_eq!(a, b, "{} on {n} threads", f.display());
            }
            assert_eq!(stats, s2, "{} on {n} threads", f.display());
        }
    }
    assert!(observations > 1000, "{observations}");
    for o in &owned {
        let total: u64 = o.iter().sum();
        assert!(o.iter().all(|&k| k > total / 10), "{owned:?}");
    }
}

/// `replay --threads 2` prints byte for byte what one thread prints (JSON and table, with the
/// policy's decisions and `--stats`).
#[test]
fn threads_flag_prints_the_same_output() {
    let files = [
        "pcaps/generated/chromium-ai.pcap",
        "pcaps/generated/curl-dig.pcap",
        "pcaps/generated/aioquic.pcap",
    ];
    for format in ["json", "table"] {
        let run = |threads: &str| {
            let mut c = bin();
            c.current_dir(root())
                .args([
                    "replay", "--policy", "policies", "--stats", "--format", format,
                ])
                .args(["--threads", threads])
                .args(files);
            let o = c.output().unwrap();
            assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
            (o.stdout, o.stderr)
        };
        let one = run("1");
        let two = run("2");
        assert!(one.0.len() > 1000, "{}", one.0.len());
        assert_eq!(one.0, two.0, "{format}");
        assert_eq!(one.1, two.1, "{format}");
    }
}
