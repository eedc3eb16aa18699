//! Acting on the gateway (the daemon's side of the pipeline): configuration sections, the coach
//! grants every enforcement point (DNS, nftables, portal) consults, and the device table.

pub mod config;
pub mod devices;
pub mod dns;
pub mod enforcer;
pub mod grants;
pub mod nft;
pub mod portal;
pub mod privs;
pub mod reset;
pub mod sdnotify;
