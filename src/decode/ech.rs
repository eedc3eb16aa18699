//! ECHConfigList (RFC 9849 §4, the `ech` SvcParam of DNS HTTPS/SVCB records): the public names
//! a client puts in the outer SNI when it encrypts the real one. Bounded; never panics.

use super::be16;

/// ECH configs read from one list (more are ignored).
pub const MAX_CONFIGS: usize = 8;

/// The `public_name` of each ECHConfig (version 0xfe0d) in an ECHConfigList, rendered like any
/// other name. Unknown versions are skipped by their length; damage ends the list.
pub fn public_names(list: &[u8]) -> Vec<String> {
    let mut out = Vec::new();
    let Some(total) = be16(list, 0) else {
        return out;
    };
    let end = (2 + total as usize).min(list.len());
    let mut at = 2;
    while at + 4 <= end && out.len() < MAX_CONFIGS {
        let (Some(version), Some(len)) = (be16(list, at), be16(list, at + 2)) else {
            break;
        };
        let body_end = at + 4 + len as usize;
        let Some(body) = list.get(at + 4..body_end.min(end)) else {
            break;
        };
        if body.len() < len as usize {
            break;
        }
        if version == 0xfe0d {
            if let Some(n) = contents_public_name(body) {
                if !out.contains(&n) {
                    out.push(n);
                }
            }
        }
        at = body_end;
    }
    out
}

/// ECHConfigContents: HpkeKeyConfig (config_id, kem_id, public_key<1..2^16-1>,
/// cipher_suites<4..2^16-4>), maximum_name_length, public_name<1..255>, extensions.
fn contents_public_name(c: &[u8]) -> Option<String> {
    let mut at = 1 + 2; // config_id, kem_id
    let key_len = be16(c, at)? as usize;
    at += 2 + key_len;
    let suites_len = be16(c, at)? as usize;
    at += 2 + suites_len;
    at += 1; // maximum_name_length
    let name_len = *c.get(at)? as usize;
    let name = c.get(at + 1..at + 1 + name_len)?;
    if name.is_empty() {
        return None;
    }
    let n = super::render_name(name);
    (!n.is_empty()).then_some(n)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// An ECHConfigList with one 0xfe0d config per public name.
    pub fn list(names: &[&str]) -> Vec<u8> {
        let mut configs = Vec::new();
        for n in names {
            let mut c = vec![7, 0, 0x20]; // config_id, kem_id X25519
            c.extend_from_slice(&32u16.to_be_bytes());
            c.extend_from_slice(&[0xab; 32]);
            c.extend_from_slice(&4u16.to_be_bytes());
            c.extend_from_slice(&[0, 1, 0, 1]);
            c.push(0); // maximum_name_length
            c.push(n.len() as u8);
            c.extend_from_slice(n.as_bytes());
            c.extend_from_slice(&0u16.to_be_bytes());
            configs.extend_from_slice(&0xfe0du16.to_be_bytes());
            configs.extend_from_slice(&(c.len() as u16).to_be_bytes());
            configs.extend_from_slice(&c);
        }
        let mut v = (configs.len() as u16).to_be_bytes().to_vec();
        v.extend_from_slice(&configs);
        v
    }

    #[test]
    fn public_names_of_each_config() {
        assert_eq!(
            public_names(&list(&["Cloudflare-ECH.com", "ech.example"])),
            ["cloudflare-ech.com", "ech.example"]
        );
    }

    #[test]
    fn unknown_versions_skipped_and_damage_tolerated() {
        let mut v = list(&["a.example"]);
        // An unknown version before it.
        let mut l = vec![0, 0];
        l.extend_from_slice(&[0xfe, 0x0a, 0, 2, 9, 9]);
        l.extend_from_slice(&v[2..]);
        let total = (l.len() - 2) as u16;
        l[..2].copy_from_slice(&total.to_be_bytes());
        assert_eq!(public_names(&l), ["a.example"]);
        // Every truncation is handled without a panic.
        for cut in 0..v.len() {
            let _ = public_names(&v[..cut]);
        }
        v.truncate(v.len() - 4);
        assert!(public_names(&v).is_empty());
        assert!(public_names(&[]).is_empty());
        assert!(public_names(&[0xff, 0xff, 0xfe, 0x0d, 0xff, 0xff]).is_empty());
    }
}
