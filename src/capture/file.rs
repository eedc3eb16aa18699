//! pcap / pcapng file reader built on `pcap-parser`, over a memory map (zero copy).
//! Corrupt or truncated files yield a [`CaptureError`] naming the file and the byte offset.

use std::fmt;
use std::fs::File;
use std::path::{Path, PathBuf};

use memmap2::Mmap;
use pcap_parser::nom;
use pcap_parser::pcapng::Block;
use pcap_parser::{PcapError, PcapHeader};

/// Largest frame a sane capture holds (pcap's own MAXIMUM_SNAPLEN); larger lengths mean corruption.
pub const MAX_FRAME_LEN: u32 = 262_144;

/// One captured frame, borrowed from the file.
#[derive(Debug, Clone, Copy)]
pub struct Frame<'a> {
    /// Nanoseconds since the Unix epoch.
    pub ts_ns: u64,
    /// LINKTYPE_* value of the interface that captured the frame.
    pub linktype: u32,
    /// The captured bytes (may be shorter than `orig_len` when the snap length cut them).
    pub data: &'a [u8],
    pub orig_len: u32,
    /// Byte offset of the record in the file.
    pub offset: u64,
    /// What the capturing kernel said of the transport checksum (nothing, for a file).
    pub csum: Csum,
}

/// What the capture says of a frame's TCP/UDP checksum: whether the bytes as captured can be
/// checked (a fake segment with a bad checksum reaches the sensor but never the server).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Csum {
    /// Nothing said (a capture file): the checksum is as on the wire, check it.
    #[default]
    Unknown,
    /// The kernel or the card checked it and found it good (`TP_STATUS_CSUM_VALID`).
    Valid,
    /// Not filled in (`TP_STATUS_CSUMNOTREADY`: a packet sent by this host with checksum
    /// offload, or one a virtual device passed on unchecked): it cannot be checked.
    NotReady,
}

/// Why a capture file could not be read (further).
#[derive(Debug)]
pub enum CaptureError {
    Open {
        path: PathBuf,
        err: std::io::Error,
    },
    NotACapture {
        path: PathBuf,
    },
    Corrupt {
        path: PathBuf,
        offset: u64,
        what: String,
    },
    Truncated {
        path: PathBuf,
        offset: u64,
        needed: usize,
    },
}

impl CaptureError {
    /// Byte offset where reading stopped, if the error is inside the file.
    pub fn offset(&self) -> Option<u64> {
        match self {
            CaptureError::Corrupt { offset, .. } | CaptureError::Truncated { offset, .. } => {
                Some(*offset)
            }
            _ => None,
        }
    }
}

impl fmt::Display for CaptureError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CaptureError::Open { path, err } => write!(f, "{}: cannot open: {err}", path.display()),
            CaptureError::NotACapture { path } => write!(
                f,
                "{}: not a pcap or pcapng file (unknown magic number); convert it with `editcap -F pcap`",
                path.display()
            ),
            CaptureError::Corrupt { path, offset, what } => write!(
                f,
                "{}: corrupt capture at byte offset {offset}: {what}; frames before it were processed (use --keep-going to continue with the next file)",
                path.display()
            ),
            CaptureError::Truncated { path, offset, needed } => write!(
                f,
                "{}: truncated capture: the record at byte offset {offset} needs {needed} more bytes than the file has; frames before it were processed",
                path.display()
            ),
        }
    }
}

impl std::error::Error for CaptureError {}

/// An opened capture file.
pub struct CaptureFile {
    path: PathBuf,
    map: Option<Mmap>,
}

impl CaptureFile {
    pub fn open(path: &Path) -> Result<Self, CaptureError> {
        let file = File::open(path).map_err(|err| CaptureError::Open {
            path: path.into(),
            err,
        })?;
        let len = file
            .metadata()
            .map_err(|err| CaptureError::Open {
                path: path.into(),
                err,
            })?
            .len();
        // An empty file cannot be mapped; treat it as "no header".
        let map = if len == 0 {
            None
        } else {
            // SAFETY: the map is read-only; a file truncated underneath us by another process is the
            // one case that can fault, as with any mmap reader (tcpdump's own pcap files are append-only).
            Some(
                unsafe { Mmap::map(&file) }.map_err(|err| CaptureError::Open {
                    path: path.into(),
                    err,
                })?,
            )
        };
        if let Some(m) = &map {
            // Read once, front to back: the kernel reads ahead further and drops behind sooner.
            let _ = m.advise(memmap2::Advice::Sequential);
        }
        Ok(CaptureFile {
            path: path.into(),
            map,
        })
    }

    /// Drop this process's mapping of the pages before byte `pos` (read already), so that a
    /// capture larger than memory does not count against the process (RSS) as it is read. The
    /// bytes stay in the file and the page cache: touching them again just maps them back.
    pub fn release_before(&self, pos: u64) {
        const PAGE: usize = 4096;
        // Keep a margin: the frame being decoded may start a little before `pos`.
        let end = (pos as usize).saturating_sub(1 << 20) / PAGE * PAGE;
        if let Some(m) = &self.map {
            if end > 0 && end <= m.len() {
                // SAFETY: a read-only shared file mapping; MADV_DONTNEED drops the page table
                // entries only, and a later access faults the same file bytes back in.
                let _ =
                    unsafe { m.unchecked_advise_range(memmap2::UncheckedAdvice::DontNeed, 0, end) };
            }
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn len(&self) -> u64 {
        self.bytes().len() as u64
    }

    pub fn is_empty(&self) -> bool {
        self.bytes().is_empty()
    }

    fn bytes(&self) -> &[u8] {
        self.map.as_deref().unwrap_or(&[])
    }

    /// Iterate over the frames. The iterator ends after the first error it yields.
    pub fn frames(&self) -> Result<Frames<'_>, CaptureError> {
        Frames::new(&self.path, self.bytes())
    }
}

struct Iface {
    linktype: u32,
    /// Timestamp units per second.
    units: u64,
    offset_s: i64,
}

enum Format {
    Pcap {
        big_endian: bool,
        nanos: bool,
        linktype: u32,
    },
    PcapNg {
        big_endian: bool,
        ifaces: Vec<Iface>,
    },
}

/// Iterator over the frames of one file.
pub struct Frames<'a> {
    path: &'a Path,
    data: &'a [u8],
    pos: usize,
    format: Format,
    done: bool,
}

impl<'a> Frames<'a> {
    /// Parse the file header of an in-memory capture.
    pub fn new(path: &'a Path, data: &'a [u8]) -> Result<Self, CaptureError> {
        let not_capture = || CaptureError::NotACapture { path: path.into() };
        if data.len() < 4 {
            return Err(not_capture());
        }
        let magic = u32::from_le_bytes([data[0], data[1], data[2], data[3]]);
        match magic {
            0xa1b2c3d4 | 0xd4c3b2a1 | 0xa1b23c4d | 0x4d3cb2a1 => {
                let (_, hdr): (_, PcapHeader) =
                    pcap_parser::parse_pcap_header(data).map_err(|_| CaptureError::Truncated {
                        path: path.into(),
                        offset: 0,
                        needed: 24usize.saturating_sub(data.len()),
                    })?;
                Ok(Frames {
                    path,
                    data,
                    pos: 24,
                    format: Format::Pcap {
                        big_endian: hdr.is_bigendian(),
                        nanos: hdr.is_nanosecond_precision(),
                        linktype: hdr.network.0 as u32,
                    },
                    done: false,
                })
            }
            0x0a0d0d0a => Ok(Frames {
                path,
                data,
                pos: 0,
                format: Format::PcapNg {
                    big_endian: false,
                    ifaces: Vec::new(),
                },
                done: false,
            }),
            _ => Err(not_capture()),
        }
    }

    fn corrupt(&mut self, what: String) -> CaptureError {
        self.done = true;
        CaptureError::Corrupt {
            path: self.path.into(),
            offset: self.pos as u64,
            what,
        }
    }

    fn nom_error(&mut self, e: nom::Err<PcapError<&[u8]>>) -> CaptureError {
        self.done = true;
        match e {
            nom::Err::Incomplete(needed) => {
                let needed = match needed {
                    nom::Needed::Size(n) => n.get(),
                    nom::Needed::Unknown => 1,
                };
                CaptureError::Truncated {
                    path: self.path.into(),
                    offset: self.pos as u64,
                    needed,
                }
            }
            nom::Err::Error(e) | nom::Err::Failure(e) => {
                let what = match e {
                    PcapError::Incomplete(n) => {
                        return CaptureError::Truncated {
                            path: self.path.into(),
                            offset: self.pos as u64,
                            needed: n,
                        }
                    }
                    PcapError::NomError(_, kind) => format!("malformed block ({kind:?})"),
                    other => format!("{other:?}"),
                };
                CaptureError::Corrupt {
                    path: self.path.into(),
                    offset: self.pos as u64,
                    what,
                }
            }
        }
    }

    /// Bytes from the current position to the end (what `--keep-going` reports as skipped on error).
    pub fn remaining(&self) -> u64 {
        (self.data.len() - self.pos.min(self.data.len())) as u64
    }

    /// Current byte position (for progress reporting).
    pub fn position(&self) -> u64 {
        self.pos as u64
    }

    fn next_pcap(
        &mut self,
        big_endian: bool,
        nanos: bool,
        linktype: u32,
    ) -> Option<Result<Frame<'a>, CaptureError>> {
        // The record header is read in place (no parser): this runs once per frame.
        let input = &self.data[self.pos..];
        if input.is_empty() {
            return None;
        }
        let Some(h) = input.first_chunk::<16>() else {
            return Some(Err(self.truncated(16 - input.len())));
        };
        let field = |i: usize| {
            let b = [h[i], h[i + 1], h[i + 2], h[i + 3]];
            if big_endian {
                u32::from_be_bytes(b)
            } else {
                u32::from_le_bytes(b)
            }
        };
        let (ts_sec, ts_frac, caplen, origlen) = (field(0), field(4), field(8), field(12));
        if caplen > MAX_FRAME_LEN {
            return Some(Err(self.corrupt(format!(
                "record claims a captured length of {caplen} bytes (more than the {MAX_FRAME_LEN}-byte maximum)"
            ))));
        }
        let Some(data) = input.get(16..16 + caplen as usize) else {
            return Some(Err(self.truncated(16 + caplen as usize - input.len())));
        };
        let offset = self.pos as u64;
        self.pos += 16 + caplen as usize;
        let frac = if nanos {
            ts_frac as u64
        } else {
            ts_frac as u64 * 1000
        };
        Some(Ok(Frame {
            ts_ns: (ts_sec as u64) * 1_000_000_000 + frac,
            linktype,
            data,
            orig_len: origlen,
            offset,
            csum: Default::default(),
        }))
    }

    fn truncated(&mut self, needed: usize) -> CaptureError {
        self.done = true;
        CaptureError::Truncated {
            path: self.path.into(),
            offset: self.pos as u64,
            needed,
        }
    }

    fn next_pcapng(&mut self) -> Option<Result<Frame<'a>, CaptureError>> {
        loop {
            let input = &self.data[self.pos..];
            if input.is_empty() {
                return None;
            }
            let Format::PcapNg { big_endian, ifaces } = &mut self.format else {
                unreachable!()
            };
            let parsed = if input.len() >= 4 && input[..4] == [0x0a, 0x0d, 0x0d, 0x0a] {
                pcap_parser::pcapng::parse_sectionheaderblock(input)
                    .map(|(r, shb)| (r, Block::SectionHeader(shb)))
            } else if *big_endian {
                pcap_parser::pcapng::parse_block_be(input)
            } else {
                pcap_parser::pcapng::parse_block_le(input)
            };
            let (rest, block) = match parsed {
                Ok(v) => v,
                Err(e) => return Some(Err(self.nom_error(e))),
            };
            let offset = self.pos as u64;
            let consumed = input.len() - rest.len();
            let frame = match block {
                Block::SectionHeader(shb) => {
                    *big_endian = shb.big_endian();
                    ifaces.clear();
                    None
                }
                Block::InterfaceDescription(idb) => {
                    let units = idb.ts_resolution().unwrap_or(1_000_000).max(1);
                    ifaces.push(Iface {
                        linktype: idb.linktype.0 as u32,
                        units,
                        offset_s: idb.ts_offset(),
                    });
                    None
                }
                Block::EnhancedPacket(epb) => {
                    let Some(iface) = ifaces.get(epb.if_id as usize) else {
                        let id = epb.if_id;
                        return Some(Err(self.corrupt(format!(
                            "packet block names interface {id}, which was never described"
                        ))));
                    };
                    let raw = ((epb.ts_high as u64) << 32) | epb.ts_low as u64;
                    let ns = (raw as u128 * 1_000_000_000 / iface.units as u128) as i128
                        + iface.offset_s as i128 * 1_000_000_000;
                    Some(Frame {
                        ts_ns: ns.clamp(0, u64::MAX as i128) as u64,
                        linktype: iface.linktype,
                        data: epb.data,
                        orig_len: epb.origlen,
                        offset,
                        csum: Default::default(),
                    })
                }
                Block::SimplePacket(spb) => {
                    let Some(iface) = ifaces.first() else {
                        return Some(Err(self.corrupt(
                            "simple packet block before any interface description".into(),
                        )));
                    };
                    Some(Frame {
                        ts_ns: 0,
                        linktype: iface.linktype,
                        data: spb.data,
                        orig_len: spb.origlen,
                        offset,
                        csum: Default::default(),
                    })
                }
                _ => None,
            };
            self.pos += consumed;
            if consumed == 0 {
                return Some(Err(self.corrupt("zero-length block".into())));
            }
            if let Some(f) = frame {
                if f.data.len() > MAX_FRAME_LEN as usize {
                    self.pos = offset as usize;
                    let n = f.data.len();
                    return Some(Err(self.corrupt(format!(
                        "packet block holds {n} bytes (more than the {MAX_FRAME_LEN}-byte maximum)"
                    ))));
                }
                return Some(Ok(f));
            }
        }
    }
}

impl<'a> Iterator for Frames<'a> {
    type Item = Result<Frame<'a>, CaptureError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        match self.format {
            Format::Pcap {
                big_endian,
                nanos,
                linktype,
            } => self.next_pcap(big_endian, nanos, linktype),
            Format::PcapNg { .. } => self.next_pcapng(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pcap_header(linktype: u32) -> Vec<u8> {
        let mut v = Vec::new();
        v.extend_from_slice(&0xa1b2c3d4u32.to_le_bytes());
        v.extend_from_slice(&2u16.to_le_bytes());
        v.extend_from_slice(&4u16.to_le_bytes());
        v.extend_from_slice(&0i32.to_le_bytes());
        v.extend_from_slice(&0u32.to_le_bytes());
        v.extend_from_slice(&65535u32.to_le_bytes());
        v.extend_from_slice(&linktype.to_le_bytes());
        v
    }

    fn record(v: &mut Vec<u8>, ts: u32, data: &[u8], caplen: u32) {
        v.extend_from_slice(&ts.to_le_bytes());
        v.extend_from_slice(&7u32.to_le_bytes());
        v.extend_from_slice(&caplen.to_le_bytes());
        v.extend_from_slice(&(data.len() as u32).to_le_bytes());
        v.extend_from_slice(data);
    }

    #[test]
    fn reads_frames_and_reports_truncation_offset() {
        let mut v = pcap_header(1);
        record(&mut v, 10, &[1, 2, 3], 3);
        let second = v.len();
        record(&mut v, 11, &[4, 5, 6, 7], 4);
        v.truncate(v.len() - 2);
        let p = Path::new("t.pcap");
        let mut it = Frames::new(p, &v).unwrap();
        let f = it.next().unwrap().unwrap();
        assert_eq!(f.data, &[1, 2, 3]);
        assert_eq!(f.ts_ns, 10_000_007_000);
        assert_eq!(f.offset, 24);
        match it.next().unwrap() {
            Err(CaptureError::Truncated { offset, needed, .. }) => {
                assert_eq!(offset, second as u64);
                assert_eq!(needed, 2);
            }
            other => panic!("{other:?}"),
        }
        assert!(it.next().is_none());
    }

    #[test]
    fn absurd_record_length_is_corruption() {
        let mut v = pcap_header(1);
        record(&mut v, 10, &[1, 2, 3], 4_000_000);
        let err = Frames::new(Path::new("x"), &v)
            .unwrap()
            .next()
            .unwrap()
            .unwrap_err();
        assert!(err.to_string().contains("byte offset 24"), "{err}");
    }

    #[test]
    fn rejects_unknown_magic() {
        assert!(matches!(
            Frames::new(Path::new("x"), b"hello world"),
            Err(CaptureError::NotACapture { .. })
        ));
    }
}
