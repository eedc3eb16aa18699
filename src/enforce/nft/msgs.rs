//! What the `nftnl` crate cannot build, written through `nftnl-sys`: the owned table, named sets
//! with timeouts and concatenated keys, elements with timeouts, flushes, and the expressions
//! that load into 32-bit registers (concatenations) or name a set.

use std::ffi::{c_void, CString};
use std::os::raw::c_char;
use std::ptr::NonNull;

use nftnl::expr::Expression;
use nftnl::nftnl_sys as sys;
use nftnl::{MsgType, NlMsg, Rule};

/// Message types newer than the system headers (Linux >= 6.3: delete if present, no ENOENT).
const NFT_MSG_DESTROYTABLE: u16 = 26;
const NFT_MSG_DESTROYSETELEM: u16 = 30;
const NFT_MSG_NEWTABLE: u16 = libc::NFT_MSG_NEWTABLE as u16;
const NFT_MSG_DELTABLE: u16 = libc::NFT_MSG_DELTABLE as u16;
const NFT_MSG_NEWSET: u16 = libc::NFT_MSG_NEWSET as u16;
const NFT_MSG_NEWSETELEM: u16 = libc::NFT_MSG_NEWSETELEM as u16;
const NFT_MSG_DELSETELEM: u16 = libc::NFT_MSG_DELSETELEM as u16;
const NFT_MSG_DELRULE: u16 = libc::NFT_MSG_DELRULE as u16;

/// The kernel deletes an owned table when its owner's netlink socket closes (Linux >= 5.12).
pub const NFT_TABLE_F_OWNER: u32 = 0x2;
/// Set flag: elements carry timeouts.
pub const NFT_SET_TIMEOUT: u32 = 0x10;

/// nft's data type ids (used for listing: `nft list` prints keys by them).
pub const TYPE_IPV4: u32 = 7;
pub const TYPE_IPV6: u32 = 8;
pub const TYPE_INET_SERVICE: u32 = 13;
pub const TYPE_ETHERADDR: u32 = 9;

/// The type id of a concatenation, as nft computes it (6 bits per member).
pub fn concat_type(members: &[u32]) -> u32 {
    members.iter().fold(0, |t, m| (t << 6) | m)
}

fn hdr(buf: *mut c_void, ty: u16, family: u16, flags: u16, seq: u32) -> *mut libc::nlmsghdr {
    // SAFETY: buf is the batch's current buffer, large enough for one message.
    unsafe {
        sys::nftnl_nlmsg_build_hdr(
            buf.cast::<c_char>(),
            ty,
            family,
            flags | libc::NLM_F_ACK as u16,
            seq,
        )
        .cast()
    }
}

/// `inet shadowgate` (or any table): create with flags, delete, or delete if present.
pub struct TableMsg {
    pub name: CString,
    pub family: u16,
    pub flags: u32,
    pub op: TableOp,
}

#[derive(Clone, Copy)]
pub enum TableOp {
    Create,
    Delete,
    /// Delete if present (DESTROYTABLE): no error when it is absent.
    Destroy,
}

// SAFETY: `write` builds exactly one netlink message into `buf`, the batch's buffer that nftnl
// sizes for one message (the trait's contract), from owned, NUL-terminated strings and plain
// integers; nothing is kept after it returns.
unsafe impl NlMsg for TableMsg {
    // SAFETY (callers): `buf` must have room for one message of this kind; nftnl's batch guarantees
    // it.
    unsafe fn write(&self, buf: *mut c_void, seq: u32, _t: MsgType) {
        let (ty, fl) = match self.op {
            TableOp::Create => (
                NFT_MSG_NEWTABLE,
                (libc::NLM_F_CREATE | libc::NLM_F_EXCL) as u16,
            ),
            TableOp::Delete => (NFT_MSG_DELTABLE, 0),
            TableOp::Destroy => (NFT_MSG_DESTROYTABLE, 0),
        };
        // SAFETY: the nftnl object is allocated here, checked for null (abort: nothing sane follows
        // an allocation failure), filled from CStrings that outlive the calls, serialised into
        // `buf` (the caller's contract) and freed before the block ends; no pointer escapes.
        unsafe {
            let t = sys::nftnl_table_alloc();
            if t.is_null() {
                std::process::abort();
            }
            sys::nftnl_table_set_str(t, sys::NFTNL_TABLE_NAME as u16, self.name.as_ptr());
            if matches!(self.op, TableOp::Create) {
                sys::nftnl_table_set_u32(t, sys::NFTNL_TABLE_FLAGS as u16, self.flags);
            }
            let h = hdr(buf, ty, self.family, fl, seq);
            sys::nftnl_table_nlmsg_build_payload(h.cast(), t);
            sys::nftnl_table_free(t);
        }
    }
}

/// A named set whose elements expire (`flags timeout`), keyed by one field or a concatenation.
pub struct SetMsg {
    pub table: CString,
    pub family: u16,
    pub name: CString,
    pub id: u32,
    pub key_type: u32,
    pub key_len: u32,
    /// Most elements the kernel accepts (then adding fails with ENFILE, counted as an error).
    pub size: u32,
}

// SAFETY: `write` builds exactly one netlink message into `buf`, the batch's buffer that nftnl
// sizes for one message (the trait's contract), from owned, NUL-terminated strings and plain
// integers; nothing is kept after it returns.
unsafe impl NlMsg for SetMsg {
    // SAFETY (callers): `buf` must have room for one message of this kind; nftnl's batch guarantees
    // it.
    unsafe fn write(&self, buf: *mut c_void, seq: u32, _t: MsgType) {
        // SAFETY: the nftnl object is allocated here, checked for null (abort: nothing sane follows
        // an allocation failure), filled from CStrings that outlive the calls, serialised into
        // `buf` (the caller's contract) and freed before the block ends; no pointer escapes.
        unsafe {
            let s = sys::nftnl_set_alloc();
            if s.is_null() {
                std::process::abort();
            }
            sys::nftnl_set_set_str(s, sys::NFTNL_SET_TABLE as u16, self.table.as_ptr());
            sys::nftnl_set_set_str(s, sys::NFTNL_SET_NAME as u16, self.name.as_ptr());
            sys::nftnl_set_set_u32(s, sys::NFTNL_SET_FAMILY as u16, self.family as u32);
            sys::nftnl_set_set_u32(s, sys::NFTNL_SET_ID as u16, self.id);
            sys::nftnl_set_set_u32(s, sys::NFTNL_SET_FLAGS as u16, NFT_SET_TIMEOUT);
            sys::nftnl_set_set_u32(s, sys::NFTNL_SET_KEY_TYPE as u16, self.key_type);
            sys::nftnl_set_set_u32(s, sys::NFTNL_SET_KEY_LEN as u16, self.key_len);
            sys::nftnl_set_set_u32(s, sys::NFTNL_SET_DESC_SIZE as u16, self.size);
            let h = hdr(
                buf,
                NFT_MSG_NEWSET,
                self.family,
                (libc::NLM_F_CREATE | libc::NLM_F_EXCL) as u16,
                seq,
            );
            sys::nftnl_set_nlmsg_build_payload(h.cast(), s);
            sys::nftnl_set_free(s);
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ElemOp {
    /// Add (adding an element already present is no error; to extend its timeout the enforcer
    /// destroys and adds it again in one transaction).
    Add,
    /// Delete if present (DESTROYSETELEM, Linux >= 6.3).
    Destroy,
    /// Delete (DELSETELEM with elements: ENOENT when absent; Linux < 6.3).
    Delete,
    /// Delete every element (DELSETELEM without elements).
    Flush,
}

/// Elements of one named set: keys (already padded to 32-bit fields) with timeouts.
pub struct ElemsMsg<'a> {
    pub table: &'a CString,
    pub family: u16,
    pub set: &'a CString,
    pub op: ElemOp,
    /// (key bytes, timeout in milliseconds)
    pub elems: &'a [(Vec<u8>, u64)],
}

// SAFETY: `write` builds exactly one netlink message into `buf`, the batch's buffer that nftnl
// sizes for one message (the trait's contract), from owned, NUL-terminated strings and plain
// integers; nothing is kept after it returns.
unsafe impl NlMsg for ElemsMsg<'_> {
    // SAFETY (callers): `buf` must have room for one message of this kind; nftnl's batch guarantees
    // it.
    unsafe fn write(&self, buf: *mut c_void, seq: u32, _t: MsgType) {
        let (ty, fl) = match self.op {
            ElemOp::Add => (NFT_MSG_NEWSETELEM, libc::NLM_F_CREATE as u16),
            ElemOp::Destroy => (NFT_MSG_DESTROYSETELEM, 0),
            ElemOp::Delete => (NFT_MSG_DELSETELEM, 0),
            ElemOp::Flush => (NFT_MSG_DELSETELEM, 0),
        };
        // SAFETY: the nftnl object is allocated here, checked for null (abort: nothing sane follows
        // an allocation failure), filled from CStrings that outlive the calls, serialised into
        // `buf` (the caller's contract) and freed before the block ends; no pointer escapes.
        unsafe {
            let s = sys::nftnl_set_alloc();
            if s.is_null() {
                std::process::abort();
            }
            sys::nftnl_set_set_str(s, sys::NFTNL_SET_TABLE as u16, self.table.as_ptr());
            sys::nftnl_set_set_str(s, sys::NFTNL_SET_NAME as u16, self.set.as_ptr());
            sys::nftnl_set_set_u32(s, sys::NFTNL_SET_FAMILY as u16, self.family as u32);
            if self.op != ElemOp::Flush {
                for (key, timeout_ms) in self.elems {
                    let e = sys::nftnl_set_elem_alloc();
                    if e.is_null() {
                        std::process::abort();
                    }
                    sys::nftnl_set_elem_set(
                        e,
                        sys::NFTNL_SET_ELEM_KEY as u16,
                        key.as_ptr() as *const c_void,
                        key.len() as u32,
                    );
                    if self.op == ElemOp::Add {
                        sys::nftnl_set_elem_set_u64(
                            e,
                            sys::NFTNL_SET_ELEM_TIMEOUT as u16,
                            *timeout_ms,
                        );
                    }
                    sys::nftnl_set_elem_add(s, e);
                }
            }
            let h = hdr(buf, ty, self.family, fl, seq);
            sys::nftnl_set_elems_nlmsg_build_payload(h.cast(), s);
            sys::nftnl_set_free(s);
        }
    }
}

/// Delete every rule of a chain (DELRULE naming only the chain).
pub struct FlushChain<'a> {
    pub table: &'a CString,
    pub family: u16,
    pub chain: &'a CString,
}

// SAFETY: `write` builds exactly one netlink message into `buf`, the batch's buffer that nftnl
// sizes for one message (the trait's contract), from owned, NUL-terminated strings and plain
// integers; nothing is kept after it returns.
unsafe impl NlMsg for FlushChain<'_> {
    // SAFETY (callers): `buf` must have room for one message of this kind; nftnl's batch guarantees
    // it.
    unsafe fn write(&self, buf: *mut c_void, seq: u32, _t: MsgType) {
        // SAFETY: the nftnl object is allocated here, checked for null (abort: nothing sane follows
        // an allocation failure), filled from CStrings that outlive the calls, serialised into
        // `buf` (the caller's contract) and freed before the block ends; no pointer escapes.
        unsafe {
            let r = sys::nftnl_rule_alloc();
            if r.is_null() {
                std::process::abort();
            }
            sys::nftnl_rule_set_u32(r, sys::NFTNL_RULE_FAMILY as u16, self.family as u32);
            sys::nftnl_rule_set_str(r, sys::NFTNL_RULE_TABLE as u16, self.table.as_ptr());
            sys::nftnl_rule_set_str(r, sys::NFTNL_RULE_CHAIN as u16, self.chain.as_ptr());
            let h = hdr(buf, NFT_MSG_DELRULE, self.family, 0, seq);
            sys::nftnl_rule_nlmsg_build_payload(h.cast(), r);
            sys::nftnl_rule_free(r);
        }
    }
}

fn expr(name: &std::ffi::CStr) -> NonNull<sys::nftnl_expr> {
    // SAFETY: allocation of a named expression; null only on OOM.
    match NonNull::new(unsafe { sys::nftnl_expr_alloc(name.as_ptr()) }) {
        Some(e) => e,
        None => std::process::abort(),
    }
}

/// `payload load` of `len` bytes at `offset` of a header into a (32-bit numbered) register.
pub struct Load {
    pub base: u32,
    pub offset: u32,
    pub len: u32,
    pub dreg: u32,
}

pub const BASE_LL: u32 = libc::NFT_PAYLOAD_LL_HEADER as u32;
pub const BASE_NETWORK: u32 = libc::NFT_PAYLOAD_NETWORK_HEADER as u32;
pub const BASE_TRANSPORT: u32 = libc::NFT_PAYLOAD_TRANSPORT_HEADER as u32;
/// First 32-bit register (NFT_REG32_00); concatenations fill consecutive ones.
pub const REG32_00: u32 = 8;
/// First 128-bit register (NFT_REG_1).
pub const REG_1: u32 = libc::NFT_REG_1 as u32;
pub const REG_2: u32 = libc::NFT_REG_2 as u32;

impl Expression for Load {
    fn to_expr(&self, _r: &Rule) -> NonNull<sys::nftnl_expr> {
        let e = expr(c"payload");
        // SAFETY: `e` is a freshly allocated, non-null expression (`expr` aborts on null) owned by
        // this function until it is returned; the setters copy the integers and the bytes of values
        // that outlive the calls.
        unsafe {
            let p = e.as_ptr();
            sys::nftnl_expr_set_u32(p, sys::NFTNL_EXPR_PAYLOAD_DREG as u16, self.dreg);
            sys::nftnl_expr_set_u32(p, sys::NFTNL_EXPR_PAYLOAD_BASE as u16, self.base);
            sys::nftnl_expr_set_u32(p, sys::NFTNL_EXPR_PAYLOAD_OFFSET as u16, self.offset);
            sys::nftnl_expr_set_u32(p, sys::NFTNL_EXPR_PAYLOAD_LEN as u16, self.len);
        }
        e
    }
}

/// `meta KEY` into a register.
pub struct MetaLoad {
    pub key: u32,
    pub dreg: u32,
}

pub const META_IIFNAME: u32 = libc::NFT_META_IIFNAME as u32;
pub const META_NFPROTO: u32 = libc::NFT_META_NFPROTO as u32;
pub const META_L4PROTO: u32 = libc::NFT_META_L4PROTO as u32;

impl Expression for MetaLoad {
    fn to_expr(&self, _r: &Rule) -> NonNull<sys::nftnl_expr> {
        let e = expr(c"meta");
        // SAFETY: `e` is a freshly allocated, non-null expression (`expr` aborts on null) owned by
        // this function until it is returned; the setters copy the integers and the bytes of values
        // that outlive the calls.
        unsafe {
            sys::nftnl_expr_set_u32(e.as_ptr(), sys::NFTNL_EXPR_META_KEY as u16, self.key);
            sys::nftnl_expr_set_u32(e.as_ptr(), sys::NFTNL_EXPR_META_DREG as u16, self.dreg);
        }
        e
    }
}

/// Compare a register with bytes (`eq` or `neq`).
pub struct Cmp {
    pub sreg: u32,
    pub eq: bool,
    pub data: Vec<u8>,
}

impl Expression for Cmp {
    fn to_expr(&self, _r: &Rule) -> NonNull<sys::nftnl_expr> {
        let e = expr(c"cmp");
        let op = if self.eq {
            libc::NFT_CMP_EQ
        } else {
            libc::NFT_CMP_NEQ
        };
        // SAFETY: `e` is a freshly allocated, non-null expression (`expr` aborts on null) owned by
        // this function until it is returned; the setters copy the integers and the bytes of values
        // that outlive the calls.
        unsafe {
            let p = e.as_ptr();
            sys::nftnl_expr_set_u32(p, sys::NFTNL_EXPR_CMP_SREG as u16, self.sreg);
            sys::nftnl_expr_set_u32(p, sys::NFTNL_EXPR_CMP_OP as u16, op as u32);
            sys::nftnl_expr_set(
                p,
                sys::NFTNL_EXPR_CMP_DATA as u16,
                self.data.as_ptr() as *const c_void,
                self.data.len() as u32,
            );
        }
        e
    }
}

/// `& mask` on a register in place (for `ip saddr 10.0.0.0/8`).
pub struct Mask {
    pub reg: u32,
    pub mask: Vec<u8>,
}

impl Expression for Mask {
    fn to_expr(&self, _r: &Rule) -> NonNull<sys::nftnl_expr> {
        let e = expr(c"bitwise");
        let xor = vec![0u8; self.mask.len()];
        // SAFETY: `e` is a freshly allocated, non-null expression (`expr` aborts on null) owned by
        // this function until it is returned; the setters copy the integers and the bytes of values
        // that outlive the calls.
        unsafe {
            let p = e.as_ptr();
            sys::nftnl_expr_set_u32(p, sys::NFTNL_EXPR_BITWISE_SREG as u16, self.reg);
            sys::nftnl_expr_set_u32(p, sys::NFTNL_EXPR_BITWISE_DREG as u16, self.reg);
            sys::nftnl_expr_set_u32(
                p,
                sys::NFTNL_EXPR_BITWISE_LEN as u16,
                self.mask.len() as u32,
            );
            sys::nftnl_expr_set(
                p,
                sys::NFTNL_EXPR_BITWISE_MASK as u16,
                self.mask.as_ptr() as *const c_void,
                self.mask.len() as u32,
            );
            sys::nftnl_expr_set(
                p,
                sys::NFTNL_EXPR_BITWISE_XOR as u16,
                xor.as_ptr() as *const c_void,
                xor.len() as u32,
            );
        }
        e
    }
}

/// `lookup` of a register (and the ones after it) in a named set (`inv`: match when absent).
pub struct LookupNamed {
    pub sreg: u32,
    pub set: CString,
    pub set_id: u32,
    pub inv: bool,
}

impl Expression for LookupNamed {
    fn to_expr(&self, _r: &Rule) -> NonNull<sys::nftnl_expr> {
        let e = expr(c"lookup");
        // SAFETY: `e` is a freshly allocated, non-null expression (`expr` aborts on null) owned by
        // this function until it is returned; the setters copy the integers and the bytes of values
        // that outlive the calls.
        unsafe {
            let p = e.as_ptr();
            sys::nftnl_expr_set_u32(p, sys::NFTNL_EXPR_LOOKUP_SREG as u16, self.sreg);
            sys::nftnl_expr_set_str(p, sys::NFTNL_EXPR_LOOKUP_SET as u16, self.set.as_ptr());
            sys::nftnl_expr_set_u32(p, sys::NFTNL_EXPR_LOOKUP_SET_ID as u16, self.set_id);
            if self.inv {
                sys::nftnl_expr_set_u32(
                    p,
                    sys::NFTNL_EXPR_LOOKUP_FLAGS as u16,
                    libc::NFT_LOOKUP_F_INV as u32,
                );
            }
        }
        e
    }
}

/// Constant data into a register (a NAT target address or port).
pub struct ImmData {
    pub dreg: u32,
    pub data: Vec<u8>,
}

impl Expression for ImmData {
    fn to_expr(&self, _r: &Rule) -> NonNull<sys::nftnl_expr> {
        let e = expr(c"immediate");
        // SAFETY: `e` is a freshly allocated, non-null expression (`expr` aborts on null) owned by
        // this function until it is returned; the setters copy the integers and the bytes of values
        // that outlive the calls.
        unsafe {
            let p = e.as_ptr();
            sys::nftnl_expr_set_u32(p, sys::NFTNL_EXPR_IMM_DREG as u16, self.dreg);
            sys::nftnl_expr_set(
                p,
                sys::NFTNL_EXPR_IMM_DATA as u16,
                self.data.as_ptr() as *const c_void,
                self.data.len() as u32,
            );
        }
        e
    }
}

/// `dnat ip|ip6 to <addr reg>:<port reg>`.
pub struct Dnat {
    pub family: u32,
    pub addr_reg: u32,
    pub port_reg: u32,
}

impl Expression for Dnat {
    fn to_expr(&self, _r: &Rule) -> NonNull<sys::nftnl_expr> {
        let e = expr(c"nat");
        // SAFETY: `e` is a freshly allocated, non-null expression (`expr` aborts on null) owned by
        // this function until it is returned; the setters copy the integers and the bytes of values
        // that outlive the calls.
        unsafe {
            let p = e.as_ptr();
            sys::nftnl_expr_set_u32(
                p,
                sys::NFTNL_EXPR_NAT_TYPE as u16,
                libc::NFT_NAT_DNAT as u32,
            );
            sys::nftnl_expr_set_u32(p, sys::NFTNL_EXPR_NAT_FAMILY as u16, self.family);
            sys::nftnl_expr_set_u32(p, sys::NFTNL_EXPR_NAT_REG_ADDR_MIN as u16, self.addr_reg);
            sys::nftnl_expr_set_u32(p, sys::NFTNL_EXPR_NAT_REG_PROTO_MIN as u16, self.port_reg);
        }
        e
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn concat_type_matches_nft() {
        // nft: ipv4_addr . inet_service = (7 << 6) | 13
        assert_eq!(concat_type(&[TYPE_IPV4, TYPE_INET_SERVICE]), 461);
        assert_eq!(concat_type(&[TYPE_IPV6]), TYPE_IPV6);
    }
}
