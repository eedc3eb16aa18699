//! What this kernel's nf_tables can do, asked without touching the daemon's table: a scratch
//! table of a unique name (owned by the probing socket, so the kernel removes it even if the
//! probe dies), one set in it, one delete-if-present of an absent element, then the table goes.
//! `shadowgate check` reports it; the daemon finds the same out on its own table at open.

use std::ffi::CString;

use anyhow::{Context, Result};
use nftnl::{Batch, MsgType};

use super::msgs::{ElemOp, ElemsMsg, SetMsg, TableMsg, TableOp, NFT_TABLE_F_OWNER};
use super::netlink::NlSocket;
use super::table::inet;
use super::{errno_text, table};

/// nftables' type id of an IPv4 address (the probe set's key).
const TYPE_IPADDR: u32 = 7;

/// What the probe found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KernelNft {
    /// Owned tables (Linux >= 5.12) work: the scratch table was made with the owner flag.
    /// `Err` holds the kernel's reason.
    pub owned_tables: std::result::Result<(), String>,
    /// DESTROYSETELEM (delete if present, Linux >= 6.3); false: the daemon deletes one element
    /// at a time with plain deletes.
    pub destroy_elem: bool,
}

/// A table name no daemon and no other probe uses: `shadowgate_check_<pid>_<nanos>`.
fn scratch_name() -> CString {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    let name = format!("{}_check_{}_{nanos}", table::TABLE, std::process::id());
    CString::new(name).unwrap_or_default()
}

/// Probe nf_tables (needs CAP_NET_ADMIN). `Err`: no netfilter netlink socket at all.
pub fn probe() -> Result<KernelNft> {
    let mut sock =
        NlSocket::open().context("cannot open a netfilter netlink socket (needs CAP_NET_ADMIN)")?;
    let name = scratch_name();
    let set = CString::new("probe").unwrap_or_default();
    let run = |sock: &mut NlSocket, b: Batch| -> Result<std::result::Result<(), i32>> {
        let errs = sock.run(&b.finalize()).context("nftables netlink socket")?;
        Ok(errs.first().map_or(Ok(()), |e| Err(e.errno)))
    };
    let mut b = Batch::new();
    b.add(
        &TableMsg {
            name: name.clone(),
            family: inet(),
            flags: NFT_TABLE_F_OWNER,
            op: TableOp::Create,
        },
        MsgType::Add,
    );
    b.add(
        &SetMsg {
            table: name.clone(),
            family: inet(),
            name: set.clone(),
            id: 1,
            key_type: TYPE_IPADDR,
            key_len: 4,
            size: 16,
        },
        MsgType::Add,
    );
    if let Err(e) = run(&mut sock, b)? {
        return Ok(KernelNft {
            owned_tables: Err(errno_text(e)),
            destroy_elem: false,
        });
    }
    let mut b = Batch::new();
    let elems = [(vec![192, 0, 2, 1], 0)];
    b.add(
        &ElemsMsg {
            table: &name,
            family: inet(),
            set: &set,
            op: ElemOp::Destroy,
            elems: &elems,
        },
        MsgType::Add,
    );
    let destroy_elem = matches!(run(&mut sock, b), Ok(Ok(())));
    let mut b = Batch::new();
    b.add(
        &TableMsg {
            name,
            family: inet(),
            flags: 0,
            op: TableOp::Delete,
        },
        MsgType::Del,
    );
    // Closing the socket removes an owned table anyway.
    let _ = run(&mut sock, b);
    Ok(KernelNft {
        owned_tables: Ok(()),
        destroy_elem,
    })
}
