//! The adversarial regression captures of `pcaps/adversarial` (see its README) through the
//! sensor in a small stack: nests and far-future times survived, names decided as meant.

use crate::common::files::root;
use crate::common::policy::bundled;
use crate::common::sensor::{replay_capture, small_stack};

use shadowgate::flow::{Kind, Observation};

/// Replay one adversarial capture through a sensor in a 256 KiB stack: observations and stats.
fn adversarial(file: &'static str) -> (Vec<Observation>, shadowgate::flow::Stats) {
    small_stack(move || {
        let (obs, s, read) = replay_capture(&root().join("pcaps/adversarial").join(file));
        read.unwrap();
        (obs, s.stats())
    })
}

#[test]
fn adversarial_nests_and_far_future_times_are_survived() {
    for (file, deep) in [("deep-nesting.pcap", 1), ("deep-tunnels.pcap", 7)] {
        let (obs, st) = adversarial(file);
        assert_eq!(st.malformed.too_deep, deep, "{file}");
        let names: Vec<_> = obs.iter().filter_map(|o| o.name.as_deref()).collect();
        assert!(names.contains(&"claude.ai"), "{file}: {names:?}");
        assert!(names.iter().all(|n| !n.ends_with("deep.example")), "{file}");
    }
    let (obs, _) = adversarial("far-future.pcapng");
    assert_eq!(obs.len(), 7);
    let (obs, _) = adversarial("far-future.pcap");
    assert_eq!(obs.len(), 5);
}

#[test]
fn adversarial_names_decide_as_the_user_meant() {
    let p = bundled();
    // (capture, frame, kind, name or wire name that must decide, service)
    let cases = [
        (
            "idn.pcap",
            5,
            Kind::TlsClientHello,
            "claude.ai",
            Some("claude"),
        ),
        (
            "idn.pcap",
            11,
            Kind::TlsClientHello,
            "xn--bcher-kva.example",
            None,
        ),
        (
            "idn.pcap",
            26,
            Kind::HttpRequest,
            "chatgpt.com",
            Some("chatgpt"),
        ),
        (
            "http-tricks.pcap",
            4,
            Kind::HttpRequest,
            "claude.ai",
            Some("claude"),
        ),
        (
            "http-tricks.pcap",
            9,
            Kind::HttpRequest,
            "claude.ai",
            Some("claude"),
        ),
        (
            "http-tricks.pcap",
            14,
            Kind::HttpRequest,
            "claude.ai",
            Some("claude"),
        ),
        (
            "http-tricks.pcap",
            25,
            Kind::HttpRequest,
            "chatgpt.com",
            Some("chatgpt"),
        ),
        (
            "http-tricks.pcap",
            30,
            Kind::ProxyConnect,
            "chatgpt.com",
            Some("chatgpt"),
        ),
        (
            "http-tricks.pcap",
            35,
            Kind::TlsClientHello,
            "chatgpt.com",
            Some("chatgpt"),
        ),
        (
            "http-tricks.pcap",
            40,
            Kind::ProxyConnect,
            "www.example.org",
            None,
        ),
        (
            "http-tricks.pcap",
            45,
            Kind::TlsClientHello,
            "claude.ai",
            Some("claude"),
        ),
        (
            "http-tricks.pcap",
            54,
            Kind::ProxyConnect,
            "claude.ai",
            Some("claude"),
        ),
        (
            "two-sni.pcap",
            5,
            Kind::TlsClientHello,
            "claude.ai",
            Some("claude"),
        ),
        (
            "two-sni.pcap",
            11,
            Kind::TlsClientHello,
            "claude.ai",
            Some("claude"),
        ),
        (
            "quic-grease-bit.pcap",
            3,
            Kind::QuicInitial,
            "chatgpt.com",
            Some("chatgpt"),
        ),
        (
            "quic-grease-bit.pcap",
            6,
            Kind::QuicInitial,
            "chatgpt.com",
            Some("chatgpt"),
        ),
    ];
    for (file, frame, kind, name, service) in cases {
        let (obs, _) = adversarial(file);
        let at: Vec<_> = obs
            .iter()
            .filter(|o| o.frame == frame && o.kind == kind)
            .collect();
        assert_eq!(at.len(), 1, "{file} frame {frame}: {obs:#?}");
        let o = at[0];
        let carried = o.name.as_deref() == Some(name) || o.wire_names.iter().any(|w| w == name);
        assert!(carried, "{file} frame {frame}: {o:?}");
        let d = p.decide_observation(o);
        assert_eq!(
            d.as_ref().and_then(|d| d.service.as_deref()),
            service,
            "{file} frame {frame}"
        );
        if let Some(d) = d {
            assert_eq!(d.matched_name, name, "{file} frame {frame}");
        }
    }
}
