//! Sources of frames. Today: pcap and pcapng files (`file`). Every frame carries its link type,
//! capture timestamp and the byte offset it was read from, so errors can point at the file.

pub mod config;
pub mod file;
pub mod live;

pub use file::{CaptureError, CaptureFile, Frame, Frames};
