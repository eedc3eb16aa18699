//! Stopping traffic on the gateway: the enforcer turns a decision into nftables elements and an
//! exact TCP reset, honours coach grants and break-glass, and counts what it did.
//!
//! - [`enforcer`]: decision -> action (stop a flow, drop QUIC, allow under a grant).
//! - [`nft`]: the `inet shadowgate` table and its sets, spoken over netlink (libnftnl).
//! - [`reset`]: RST segments with the flow's exact sequence numbers, on a raw socket.
//! - [`grants`]: coach acknowledgements every enforcement point (DNS, nftables, portal) consults.
//! - [`persist`]: stop entries and grants kept across a restart (the state file).
//! - [`config`]: the `[enforce]` section.

pub mod config;
pub mod enforcer;
pub mod grants;
pub mod nft;
pub mod persist;
pub mod reset;

/// Give a state table's room back once it is mostly empty (after a flood, or a sweep of ended
/// entries): the enforcer's tables and the stop book.
pub(crate) fn shrink_sparse<K: std::hash::Hash + Eq, V>(m: &mut std::collections::HashMap<K, V>) {
    if m.capacity() > 1024 && m.capacity() > 4 * m.len() {
        m.shrink_to(2 * m.len());
    }
}
