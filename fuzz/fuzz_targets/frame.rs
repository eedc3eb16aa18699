//! Whole sensor on arbitrary frames: the first byte picks the link type, the rest is split into
//! up to four frames so that reassembly, defragmentation and flow state are exercised too.
//! Inputs are never cut: with the top two bits of the first byte clear the rest is one frame of
//! up to the snap length (run.sh passes -max_len=262145: the selector plus 262,144 bytes).
#![no_main]
use libfuzzer_sys::fuzz_target;
use shadowgate::capture::Frame;
use shadowgate::flow::{Config, Sensor};

const LINKTYPES: [u32; 8] = [1, 0, 101, 113, 276, 239, 228, 229];

fuzz_target!(|data: &[u8]| {
    let Some((&sel, rest)) = data.split_first() else { return };
    let linktype = LINKTYPES[(sel & 7) as usize];
    let mut sensor = Sensor::new(Config { max_flows: 16, max_names: 16, max_fragments: 4, ..Config::default() });
    let mut out = Vec::new();
    let parts = 1 + (sel >> 6) as usize;
    let chunk = rest.len().div_ceil(parts).max(1);
    for (i, f) in rest.chunks(chunk).enumerate() {
        let frame = Frame { ts_ns: i as u64 * 1_000_000_000, linktype, data: f, orig_len: f.len() as u32, offset: 0, csum: Default::default() };
        sensor.process(&frame, &mut out);
        // The same bytes again: retransmission / duplicate paths.
        sensor.process(&frame, &mut out);
    }
    sensor.finish(&mut out);
});
