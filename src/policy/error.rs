//! Policy errors that point at the file, line and column and say what to do next.

use std::fmt;
use std::path::{Path, PathBuf};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyError {
    pub file: PathBuf,
    /// 1-based line and column, when the error has a position.
    pub line: Option<usize>,
    pub column: Option<usize>,
    pub message: String,
    pub hint: Option<String>,
}

impl PolicyError {
    pub fn new(file: &Path, message: impl Into<String>) -> Self {
        PolicyError {
            file: file.into(),
            line: None,
            column: None,
            message: message.into(),
            hint: None,
        }
    }

    /// Position from a byte offset into `text`.
    pub fn at(mut self, text: &str, offset: usize) -> Self {
        let before = &text[..offset.min(text.len())];
        self.line = Some(before.matches('\n').count() + 1);
        self.column = Some(before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1);
        self
    }

    pub fn hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }
}

impl fmt::Display for PolicyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file.display())?;
        if let (Some(l), Some(c)) = (self.line, self.column) {
            write!(f, ":{l}:{c}")?;
        }
        write!(f, ": {}", self.message)?;
        if let Some(h) = &self.hint {
            write!(f, "\n  hint: {h}")?;
        }
        Ok(())
    }
}

impl std::error::Error for PolicyError {}

/// Several errors found in one pass (a user fixes them all at once).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyErrors(pub Vec<PolicyError>);

impl fmt::Display for PolicyErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for PolicyErrors {}

/// Closest candidate by edit distance, for "did you mean" hints. Ties go to the longer common
/// prefix, then to the alphabetically first, so the hint does not depend on iteration order
/// ("claud": "claude", not "plaud").
pub fn closest<'a>(word: &str, candidates: impl Iterator<Item = &'a str>) -> Option<&'a str> {
    let prefix = |c: &str| {
        word.chars()
            .zip(c.chars())
            .take_while(|(a, b)| a == b)
            .count()
    };
    candidates
        .filter_map(|c| {
            let d = strsim::levenshtein(word, c);
            (d <= 3.max(word.len() / 3)).then(|| (d, std::cmp::Reverse(prefix(c)), c))
        })
        .min()
        .map(|(_, _, c)| c)
}

/// Read a policy file, or say why not.
pub(super) fn read(path: &Path) -> Result<String, PolicyError> {
    std::fs::read_to_string(path).map_err(|e| {
        PolicyError::new(path, format!("cannot read: {e}"))
            .hint("check the path and that the file is readable by shadowgate")
    })
}

/// A TOML syntax or shape error, at its position.
pub(super) fn toml_error(path: &Path, text: &str, e: toml::de::Error) -> PolicyError {
    let mut err = PolicyError::new(path, e.message().trim().to_string());
    if let Some(span) = e.span() {
        err = err.at(text, span.start);
    }
    err.hint("fix the TOML at that position; `shadowgate policy check` validates without applying")
}

/// A word (action, severity) that is not one of `allowed`.
pub(super) fn bad_word(
    f: &Path,
    text: &str,
    what: &str,
    v: &toml::Spanned<String>,
    allowed: &[&str],
) -> PolicyError {
    PolicyError::new(f, format!("{:?} is not a valid {what}", v.get_ref()))
        .at(text, v.span().start)
        .hint(format!("use one of: {}", allowed.join(", ")))
}
