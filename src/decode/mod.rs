//! Pure, stateless parsers: each takes bytes and returns a validated representation or an error.
//! None of them panics on any input (see `fuzz/`); state (reassembly, flows) lives in `flow/`.

pub mod dhcp;
pub mod dns;
pub mod ech;
pub mod h2;
pub mod http;
pub mod link;
pub mod quic;
pub mod socks;
pub mod tls;
pub mod tunnel;
pub mod vpn;

/// Encapsulations one frame may be unwrapped through, link layers and tunnels together (VLAN
/// tags beyond the two `etherparse` reads, PPPoE, MPLS, pseudowire, GRE, VXLAN, Teredo, GTP-U,
/// IP-in-IP). Real traffic needs three or four; deeper is an attack on the decoder.
pub const MAX_NESTING: u8 = 8;

/// Labels read from one MPLS label stack (real stacks carry two to four).
pub const MAX_MPLS_LABELS: usize = 16;

/// The nesting budget of one frame: how many encapsulations have been entered so far. It is
/// carried down every re-entry of the link layer, so no chain of them can exceed [`MAX_NESTING`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Nesting(u8);

/// A frame nested deeper than [`MAX_NESTING`] (or with an MPLS stack past [`MAX_MPLS_LABELS`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TooDeep;

impl Nesting {
    /// Enter one more encapsulation, if the budget allows.
    #[inline]
    pub fn enter(&mut self) -> Result<(), TooDeep> {
        if self.0 >= MAX_NESTING {
            return Err(TooDeep);
        }
        self.0 += 1;
        Ok(())
    }

    /// Encapsulations entered so far.
    pub fn depth(self) -> u8 {
        self.0
    }
}

/// Render a DNS-style name as shadowgate reports it: lower-case ASCII, no trailing dot, bytes that
/// are not printable ASCII (and `\`) as RFC 1035 `\DDD` decimal escapes.
pub fn render_name(bytes: &[u8]) -> String {
    let mut s = String::with_capacity(bytes.len());
    push_name_bytes(&mut s, bytes);
    while s.ends_with('.') && !s.ends_with("\\.") {
        s.pop();
    }
    s
}

/// A host name as a client sent it in SNI, an HTTP Host or request target, or a proxy request:
/// ASCII as [`render_name`]; valid UTF-8 that is not ASCII (a U-label, full-width letters, an
/// ideographic full stop) mapped by IDNA (UTS #46) to its A-label (`xn--` punycode) form, the
/// form DNS and the policy use; anything else (invalid UTF-8, IDNA errors) escaped as before.
/// The bool says whether IDNA mapping was applied (such a name is not what the protocol allows
/// on the wire: RFC 6066 SNI and RFC 9110 Host carry A-labels).
pub fn wire_name(bytes: &[u8]) -> (String, bool) {
    if !bytes.is_ascii() {
        if let Ok(s) = std::str::from_utf8(bytes) {
            let s = s.trim_end_matches(['.', '\u{3002}', '\u{ff0e}', '\u{ff61}']);
            if let Ok(a) = idna::domain_to_ascii(s) {
                if !a.is_empty() && a.is_ascii() {
                    return (render_name(a.as_bytes()), true);
                }
            }
        }
    }
    (render_name(bytes), false)
}

/// Append one label (or a whole dotted name) to `s` with the escaping of [`render_name`].
pub fn push_name_bytes(s: &mut String, bytes: &[u8]) {
    for &b in bytes {
        match b {
            b'\\' => s.push_str("\\092"),
            0x21..=0x7e => s.push(b.to_ascii_lowercase() as char),
            _ => {
                use std::fmt::Write;
                let _ = write!(s, "\\{b:03}");
            }
        }
    }
}

/// Read a big-endian u16 at `at`, if present.
#[inline]
pub(crate) fn be16(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_be_bytes([*b.get(at)?, *b.get(at + 1)?]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_lowercased_escaped_and_trimmed() {
        assert_eq!(render_name(b"Claude.AI."), "claude.ai");
        assert_eq!(render_name(b"a\x04b c"), "a\\004b\\032c");
        assert_eq!(render_name(b"x\\y"), "x\\092y");
        assert_eq!(render_name(b""), "");
    }

    #[test]
    fn utf8_names_become_a_labels() {
        assert_eq!(
            wire_name("ｃｌａｕｄｅ．ａｉ".as_bytes()),
            ("claude.ai".into(), true)
        );
        assert_eq!(
            wire_name("Bücher.example".as_bytes()),
            ("xn--bcher-kva.example".into(), true)
        );
        assert_eq!(wire_name(b"Claude.AI."), ("claude.ai".into(), false));
        // Invalid UTF-8 stays escaped.
        assert_eq!(wire_name(b"a\xffb.ai"), ("a\\255b.ai".into(), false));
    }
}
