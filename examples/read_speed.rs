//! How fast the capture reader walks a file, per way of reading it (bench/speed.sh `reader`):
//! `read_speed FILE [MODE...]`, modes `reader` (shadowgate's CaptureFile: memory map, sequential
//! advice, pages read ahead in windows and dropped behind), `mmap` (a plain map), `read` (the
//! file read into memory first). Prints CPU and wall time per mode, best of 3.

use std::path::Path;
use std::time::Instant;

use shadowgate::capture::{CaptureFile, Frames};

fn cpu_s() -> f64 {
    // SAFETY: getrusage fills the struct it is given.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut ru) };
    let t = |v: libc::timeval| v.tv_sec as f64 + v.tv_usec as f64 / 1e6;
    t(ru.ru_utime) + t(ru.ru_stime)
}

/// Walk every frame and read its first bytes (as the header view does).
fn walk(frames: Frames<'_>, mut at: impl FnMut(u64)) -> (u64, u64) {
    let (mut n, mut sum) = (0u64, 0u64);
    let mut frames = frames;
    while let Some(Ok(f)) = frames.next() {
        n += 1;
        sum = sum.wrapping_add(f.data.get(23).copied().unwrap_or(0) as u64);
        if n & 0xffff == 0 {
            at(frames.position());
        }
    }
    (n, sum)
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some(path) = args.first() else {
        eprintln!("usage: read_speed FILE [reader|mmap|read ...]");
        std::process::exit(2);
    };
    let modes: Vec<&str> = if args.len() > 1 {
        args[1..].iter().map(String::as_str).collect()
    } else {
        vec!["reader", "mmap", "read"]
    };
    let p = Path::new(path);
    for mode in modes {
        let mut best = (f64::MAX, f64::MAX);
        let mut frames_seen = 0;
        for _ in 0..3 {
            let (c0, w0) = (cpu_s(), Instant::now());
            let n = match mode {
                "reader" => {
                    let f = CaptureFile::open(p).expect("open");
                    walk(f.frames().expect("header"), |pos| f.release_before(pos)).0
                }
                "mmap" => {
                    let file = std::fs::File::open(p).expect("open");
                    // SAFETY: read-only map of a file nobody truncates during the run.
                    let m = unsafe { memmap2::Mmap::map(&file) }.expect("map");
                    walk(Frames::new(p, &m).expect("header"), |_| {}).0
                }
                "populate" => {
                    let file = std::fs::File::open(p).expect("open");
                    // SAFETY: read-only map of a file nobody truncates during the run.
                    let m = unsafe { memmap2::Mmap::map(&file) }.expect("map");
                    let _ = m.advise(memmap2::Advice::Sequential);
                    let win: usize = std::env::var("WIN")
                        .ok()
                        .and_then(|s| s.parse().ok())
                        .unwrap_or(8 << 20);
                    let mut next = 0usize;
                    let mut pf = |pos: usize| {
                        while next < m.len() && pos + win > next {
                            let len = win.min(m.len() - next);
                            let _ = m.advise_range(memmap2::Advice::PopulateRead, next, len);
                            next += len;
                        }
                    };
                    pf(0);
                    let mut frames = Frames::new(p, &m).expect("header");
                    let mut n = 0u64;
                    let mut sum = 0u64;
                    while let Some(Ok(f)) = frames.next() {
                        n += 1;
                        sum = sum.wrapping_add(f.data.get(23).copied().unwrap_or(0) as u64);
                        if n & 0xfff == 0 {
                            pf(frames.position() as usize);
                        }
                    }
                    std::hint::black_box(sum);
                    n
                }
                "stream" => {
                    // read() into a reused buffer, records walked in place (no map).
                    use std::io::Read;
                    let mut file = std::fs::File::open(p).expect("open");
                    let cap: usize = std::env::var("BUF")
                        .ok()
                        .and_then(|s| s.parse().ok())
                        .unwrap_or(1 << 20);
                    let mut buf = vec![0u8; cap + 262_144 + 16];
                    let (mut have, mut start) = (0usize, 24usize);
                    let (mut n, mut sum) = (0u64, 0u64);
                    loop {
                        let got = file.read(&mut buf[have..]).expect("read");
                        have += got;
                        while let Some(h) = buf[start..have].first_chunk::<16>() {
                            let caplen = u32::from_le_bytes([h[8], h[9], h[10], h[11]]) as usize;
                            if have - start < 16 + caplen {
                                break;
                            }
                            n += 1;
                            sum = sum.wrapping_add(buf[start + 16 + 23] as u64);
                            start += 16 + caplen;
                        }
                        if got == 0 {
                            break;
                        }
                        buf.copy_within(start..have, 0);
                        have -= start;
                        start = 0;
                    }
                    std::hint::black_box(sum);
                    n
                }
                "read" => {
                    let v = std::fs::read(p).expect("read");
                    walk(Frames::new(p, &v).expect("header"), |_| {}).0
                }
                other => {
                    eprintln!("unknown mode {other}");
                    std::process::exit(2);
                }
            };
            frames_seen = n;
            let (c, w) = (cpu_s() - c0, w0.elapsed().as_secs_f64());
            best = (best.0.min(c), best.1.min(w));
        }
        println!(
            "{mode:<8} {frames_seen} frames: CPU {:.3} s ({:.1} ns/frame), wall {:.3} s",
            best.0,
            best.0 / frames_seen.max(1) as f64 * 1e9,
            best.1
        );
    }
}
