//! Domain matching on a trie of reversed labels (`ai` -> `claude` -> ...): cost proportional to
//! the number of labels, no allocation per lookup for ASCII names, and the most specific entry
//! wins. Entries are exact names (`claude.ai`) or suffix wildcards (`*.claude.ai`, which match
//! strict subdomains only). Look-alikes cannot match: labels compare whole, from the right.

use std::collections::HashMap;

/// Longest DNS name accepted (RFC 1035 presentation form without trailing dot).
pub const MAX_NAME: usize = 253;

#[derive(Debug, Default, Clone)]
struct Node<T> {
    children: HashMap<Box<str>, usize, foldhash::fast::FixedState>,
    exact: Option<T>,
    wildcard: Option<T>,
}

/// A set of domain patterns, each carrying a value (e.g. a service index).
#[derive(Debug, Clone)]
pub struct DomainTrie<T> {
    nodes: Vec<Node<T>>,
}

/// How a lookup matched.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Match<'a, T> {
    pub value: &'a T,
    /// Labels of the matching entry (specificity).
    pub depth: usize,
    /// Whether the entry was a `*.` wildcard.
    pub wildcard: bool,
}

impl<T: Clone> Default for DomainTrie<T> {
    fn default() -> Self {
        Self::new()
    }
}

impl<T: Clone> DomainTrie<T> {
    pub fn new() -> Self {
        DomainTrie {
            nodes: vec![Node {
                children: HashMap::default(),
                exact: None,
                wildcard: None,
            }],
        }
    }

    /// Add a pattern (already normalised: see [`normalize`]). Returns the value it replaced.
    pub fn insert(&mut self, pattern: &str, value: T) -> Option<T> {
        let (wild, name) = match pattern.strip_prefix("*.") {
            Some(rest) => (true, rest),
            None => (false, pattern),
        };
        let mut at = 0;
        for label in name.rsplit('.') {
            at = match self.nodes[at].children.get(label) {
                Some(&i) => i,
                None => {
                    self.nodes.push(Node {
                        children: HashMap::default(),
                        exact: None,
                        wildcard: None,
                    });
                    let i = self.nodes.len() - 1;
                    self.nodes[at].children.insert(label.into(), i);
                    i
                }
            };
        }
        let slot = if wild {
            &mut self.nodes[at].wildcard
        } else {
            &mut self.nodes[at].exact
        };
        slot.replace(value)
    }

    /// The most specific entry matching `name` (lower-case ASCII, no trailing dot).
    pub fn lookup(&self, name: &str) -> Option<Match<'_, T>> {
        let mut at = 0;
        let mut best = None;
        let mut depth = 0;
        let mut labels = name.rsplit('.').peekable();
        while let Some(label) = labels.next() {
            let Some(&next) = self.nodes[at].children.get(label) else {
                break;
            };
            at = next;
            depth += 1;
            let node = &self.nodes[at];
            if labels.peek().is_some() {
                if let Some(v) = &node.wildcard {
                    best = Some(Match {
                        value: v,
                        depth,
                        wildcard: true,
                    });
                }
            } else if let Some(v) = &node.exact {
                best = Some(Match {
                    value: v,
                    depth,
                    wildcard: false,
                });
            }
        }
        best
    }

    pub fn len(&self) -> usize {
        self.nodes
            .iter()
            .map(|n| n.exact.is_some() as usize + n.wildcard.is_some() as usize)
            .sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Why a name cannot be matched.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NameError {
    Empty,
    TooLong,
    Invalid(String),
}

impl std::fmt::Display for NameError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            NameError::Empty => write!(f, "empty name"),
            NameError::TooLong => write!(f, "name longer than {MAX_NAME} characters"),
            NameError::Invalid(e) => write!(f, "not a valid domain name ({e})"),
        }
    }
}

/// Normalise a name for matching: trim, drop a trailing dot, lower-case, IDN to punycode
/// (`bücher.example` -> `xn--bcher-kva.example`). Borrows when the name is already normal.
pub fn normalize(name: &str) -> Result<std::borrow::Cow<'_, str>, NameError> {
    use std::borrow::Cow;
    let n = name.trim();
    let n = n.strip_suffix('.').unwrap_or(n);
    if n.is_empty() {
        return Err(NameError::Empty);
    }
    let out: Cow<'_, str> = if n.bytes().all(|b| b.is_ascii() && !b.is_ascii_uppercase()) {
        Cow::Borrowed(n)
    } else if n.is_ascii() {
        Cow::Owned(n.to_ascii_lowercase())
    } else {
        Cow::Owned(idna::domain_to_ascii(n).map_err(|e| NameError::Invalid(e.to_string()))?)
    };
    if out.len() > MAX_NAME {
        return Err(NameError::TooLong);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn trie() -> DomainTrie<&'static str> {
        let mut t = DomainTrie::new();
        for (p, v) in [
            ("claude.ai", "claude"),
            ("*.claude.ai", "claude"),
            ("anthropic.com", "anthropic-web"),
            ("*.anthropic.com", "anthropic-web"),
            ("api.anthropic.com", "anthropic-api"),
            ("*.openai.com", "openai-web"),
            ("api.openai.com", "openai-api"),
            ("gemini.google.com", "gemini"),
        ] {
            t.insert(p, v);
        }
        t
    }

    #[test]
    fn most_specific_wins() {
        let t = trie();
        assert_eq!(
            t.lookup("api.anthropic.com").unwrap().value,
            &"anthropic-api"
        );
        assert_eq!(
            t.lookup("console.anthropic.com").unwrap().value,
            &"anthropic-web"
        );
        assert_eq!(t.lookup("anthropic.com").unwrap().value, &"anthropic-web");
        assert_eq!(t.lookup("api.openai.com").unwrap().value, &"openai-api");
        assert_eq!(t.lookup("chat.openai.com").unwrap().value, &"openai-web");
        // A wildcard covers subdomains only, not the name itself.
        assert!(t.lookup("openai.com").is_none());
        // Deeper names under an exact-only entry do not match it.
        assert!(t.lookup("x.gemini.google.com").is_none());
        assert_eq!(t.lookup("a.b.claude.ai").unwrap().depth, 2);
    }

    #[test]
    fn look_alikes_do_not_match() {
        let t = trie();
        for n in [
            "claude.ai.evil.example",
            "notclaude.ai",
            "claude.ai-login.example",
            "claudeai",
            "ai",
            "gemini.com",
            "google.com",
            "xn--claude-.ai",
        ] {
            assert!(t.lookup(n).is_none(), "{n}");
        }
    }

    #[test]
    fn normalisation() {
        assert_eq!(normalize("Claude.AI.").unwrap(), "claude.ai");
        assert!(matches!(
            normalize("claude.ai").unwrap(),
            std::borrow::Cow::Borrowed(_)
        ));
        assert_eq!(
            normalize("Bücher.example").unwrap(),
            "xn--bcher-kva.example"
        );
        assert_eq!(normalize(" "), Err(NameError::Empty));
        assert_eq!(normalize(&"a.".repeat(200)), Err(NameError::TooLong));
    }
}
