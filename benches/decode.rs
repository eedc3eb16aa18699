//! Per-packet cost of the sensor (criterion): the bulk fast path on a classified flow, a
//! ClientHello on a new flow, a DNS answer, a QUIC Initial (decrypt) and link decoding alone.
//! Figures are relative: compare each to `link_only`, measured in the same run.

#[path = "synth.rs"]
mod synth;

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use shadowgate::capture::Frame;
use shadowgate::flow::{Config, Sensor};

fn frame(data: &[u8], ts: u64) -> Frame<'_> {
    Frame {
        ts_ns: ts,
        linktype: 1,
        data,
        orig_len: data.len() as u32,
        offset: 0,
        csum: Default::default(),
    }
}

fn bench(c: &mut Criterion) {
    let mut frames = Vec::new();
    synth::flow(0, 40, &mut frames);
    // frames: dns q, dns a, syn, synack, ack, hello (2 segments: index 5, 6), then bulk.
    let bulk = frames[10].clone();
    let dns_answer = frames[1].clone();
    let mut g = c.benchmark_group("packet");
    g.throughput(Throughput::Elements(1));

    g.bench_function("link_only", |b| {
        b.iter(|| black_box(shadowgate::decode::link::slice(1, black_box(&bulk)).is_ok()))
    });

    let mut sensor = Sensor::new(Config::default());
    let mut out = Vec::new();
    for (i, f) in frames.iter().enumerate() {
        sensor.process(&frame(f, i as u64), &mut out);
    }
    g.bench_function("bulk_on_done_flow", |b| {
        b.iter(|| {
            sensor.process(&frame(black_box(&bulk), 1_000), &mut out);
            out.clear();
        })
    });

    g.bench_function("dns_answer", |b| {
        b.iter(|| {
            sensor.process(&frame(black_box(&dns_answer), 1_000), &mut out);
            out.clear();
        })
    });

    // A fresh flow each iteration: SYN + single-segment ClientHello.
    let hellos: Vec<(Vec<u8>, Vec<u8>)> = (0..4096u32)
        .map(|i| {
            let client = [10, 2, (i >> 8) as u8, i as u8];
            let server = [93, 184, 216, 34];
            let ch = synth::client_hello("claude.ai", 520);
            (
                synth::tcp(client, server, 40_000, 443, 1, 0, "S", &[]),
                synth::tcp(client, server, 40_000, 443, 2, 1, "PA", &ch),
            )
        })
        .collect();
    let mut k = 0usize;
    let mut s2 = Sensor::new(Config {
        max_flows: 1024,
        ..Config::default()
    });
    g.bench_function("syn_plus_client_hello_new_flow", |b| {
        b.iter(|| {
            let (syn, ch) = &hellos[k % hellos.len()];
            k += 1;
            s2.process(&frame(syn, 1), &mut out);
            s2.process(&frame(ch, 1), &mut out);
            out.clear();
        })
    });

    let quic: Vec<Vec<u8>> = (0..4096u32)
        .map(|i| {
            synth::udp(
                [10, 3, (i >> 8) as u8, i as u8],
                [142, 250, 1, 1],
                50_000,
                443,
                &synth::quic_initial(),
            )
        })
        .collect();
    let mut s3 = Sensor::new(Config {
        max_flows: 1024,
        ..Config::default()
    });
    let mut q = 0usize;
    g.bench_function("quic_initial_decrypt_new_flow", |b| {
        b.iter(|| {
            s3.process(&frame(&quic[q % quic.len()], 1), &mut out);
            q += 1;
            out.clear();
        })
    });
    g.finish();
}

/// Catalogue lookups with the full bundled catalogue (target: under 100 ns).
fn policy(c: &mut Criterion) {
    use shadowgate::policy::{Client, Policy, Via};
    let p = Policy::load(&std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("policies"))
        .expect("bundled policy");
    let mut g = c.benchmark_group("policy");
    g.throughput(Throughput::Elements(1));
    for name in [
        "claude.ai",
        "bedrock-runtime.eu-central-1.amazonaws.com",
        "a.b.cdn.oaistatic.com",
        "www.example.org",
        "claude.ai.evil.example",
    ] {
        g.bench_function(format!("classify/{name}"), |b| {
            b.iter(|| black_box(p.classify(black_box(name)).is_some()))
        });
    }
    g.bench_function("normalize+classify/Claude.AI.", |b| {
        b.iter(|| {
            let n = shadowgate::policy::matcher::normalize(black_box("Claude.AI.")).unwrap();
            black_box(p.classify(&n).is_some())
        })
    });
    let client = Client {
        ip: Some("10.20.1.2".parse().unwrap()),
        ..Default::default()
    };
    g.bench_function("decide/claude.ai", |b| {
        b.iter(|| black_box(p.decide(black_box("claude.ai"), &client, 0, Via::Tls)))
    });
    g.finish();
}

/// Events per second into the store: batches of 1,000 in one transaction each (WAL,
/// synchronous=FULL: every batch is durable when `append` returns). Target: 50,000/s.
fn store(c: &mut Criterion) {
    use shadowgate::policy::{Client, Policy, Via};
    use shadowgate::record::{Event, Store};
    let p = Policy::load(&std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("policies"))
        .expect("bundled policy");
    let mut frames = Vec::new();
    synth::flow(0, 0, &mut frames);
    let mut sensor = Sensor::new(Config::default());
    let mut obs = Vec::new();
    for f in &frames {
        sensor.process(&frame(f, 0), &mut obs);
    }
    let o = obs
        .iter()
        .find(|o| o.kind == shadowgate::flow::Kind::TlsClientHello)
        .expect("a hello")
        .clone();
    let d = p
        .decide(
            "claude.ai",
            &Client {
                ip: Some(o.client.ip),
                ..Default::default()
            },
            0,
            Via::Tls,
        )
        .expect("decision");
    let dir = std::env::temp_dir().join(format!("sg-bench-store-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let mut st = Store::open(&dir.join("events.db")).unwrap();
    let mut g = c.benchmark_group("store");
    g.throughput(Throughput::Elements(1000));
    g.sample_size(20);
    g.bench_function("append_batch_of_1000", |b| {
        b.iter(|| {
            let mut batch: Vec<Event> = (0..1000)
                .map(|_| Event::decided(o.kind.into(), &o, &d, "bench", None, None))
                .collect();
            st.append(&mut batch).unwrap()
        })
    });
    g.finish();
    let _ = std::fs::remove_dir_all(&dir);
}

criterion_group!(benches, bench, policy, store);
criterion_main!(benches);
