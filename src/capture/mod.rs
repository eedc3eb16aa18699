//! Sources of frames: pcap and pcapng files (`file`) and live interfaces (`live`: AF_PACKET with
//! a TPACKET_V3 ring), and the `[capture]` section (`config`). Every frame carries its link type
//! and capture timestamp, and a frame from a file the byte offset it was read from, so errors can
//! point at the file.

pub mod config;
pub mod file;
pub mod live;

pub use file::{CaptureError, CaptureFile, Csum, Frame, Frames};
