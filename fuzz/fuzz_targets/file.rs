//! Whole capture files: arbitrary bytes read as a pcap or pcapng file, every frame through the
//! sensor. `Frames::new` is the in-memory reader that `CaptureFile::frames` runs over its memory
//! map (header, byte order, interfaces, timestamps, snap length, truncation), so no file is
//! written per input.
#![no_main]
use libfuzzer_sys::fuzz_target;
use shadowgate::capture::Frames;
use shadowgate::flow::{Config, Sensor};

fuzz_target!(|data: &[u8]| {
    let path = std::path::Path::new("fuzz-input.pcap");
    let Ok(frames) = Frames::new(path, data) else { return };
    let mut sensor = Sensor::new(Config { max_flows: 64, max_names: 64, max_fragments: 16, ..Config::default() });
    let mut out = Vec::new();
    for item in frames {
        match item {
            Ok(frame) => {
                sensor.process(&frame, &mut out);
                out.clear();
            }
            Err(_) => break,
        }
    }
    sensor.finish(&mut out);
    let _ = sensor.stats();
});
