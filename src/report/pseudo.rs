//! Keyed pseudonyms for `--pseudonymise`: HMAC-SHA256 of the value under the clinic's secret, so
//! the same device gets the same pseudonym every week and nobody without the key can reverse it.

use hmac::{Hmac, Mac};
use sha2::Sha256;

pub struct Pseudonymiser {
    key: Vec<u8>,
}

impl Pseudonymiser {
    pub fn new(key: Vec<u8>) -> Pseudonymiser {
        Pseudonymiser { key }
    }

    /// `prefix-` and 12 hex digits (48 bits) of HMAC-SHA256(key, prefix ":" lower-case value).
    pub fn name(&self, prefix: &str, value: &str) -> String {
        // HMAC accepts keys of any length.
        let mut m = match Hmac::<Sha256>::new_from_slice(&self.key) {
            Ok(m) => m,
            Err(_) => return format!("{prefix}-?"),
        };
        m.update(prefix.as_bytes());
        m.update(b":");
        m.update(value.to_ascii_lowercase().as_bytes());
        let d = m.finalize().into_bytes();
        let hex: String = d[..6].iter().map(|b| format!("{b:02x}")).collect();
        format!("{prefix}-{hex}")
    }

    pub fn opt(&self, prefix: &str, v: &Option<String>) -> Option<String> {
        v.as_deref().map(|v| self.name(prefix, v))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stable_keyed_and_distinct() {
        let a = Pseudonymiser::new(b"0123456789abcdef".to_vec());
        let b = Pseudonymiser::new(b"fedcba9876543210".to_vec());
        assert_eq!(a.name("host", "WS-07"), a.name("host", "ws-07"));
        assert_ne!(a.name("host", "ws-07"), b.name("host", "ws-07"));
        assert_ne!(a.name("host", "ws-07"), a.name("owner", "ws-07"));
        assert_eq!(a.name("mac", "02:00:5e:10:00:01").len(), "mac-".len() + 12);
    }
}
