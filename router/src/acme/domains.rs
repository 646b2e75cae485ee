//! Which names the edge may order certificates for.
//!
//! `--acme-domains` is required so that a stray service tag cannot make the
//! edge order certificates for arbitrary names and burn the CA's rate
//! limits. A pattern is an exact name (`example.org`) or a wildcard
//! (`*.example.com`) that, like a wildcard certificate, covers exactly one
//! label: `www.example.com`, not `example.com` and not `a.b.example.com`.
//! Only exact route hosts are ordered: a wildcard route host would need a
//! DNS-01 challenge, which the edge cannot answer. A name some
//! `--cert-source` certificate already covers is left to that certificate.

use std::collections::BTreeSet;
use std::fmt;

/// The parsed `--acme-domains` list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DomainPatterns {
    exact: BTreeSet<String>,
    /// `*.example.com` is kept as `example.com`.
    wildcard: BTreeSet<String>,
}

impl DomainPatterns {
    /// Parses `PATTERN,...`. Every entry must be usable: a list with one bad
    /// entry is refused whole (the flag is read at start-up, where refusing
    /// is the safe answer), naming the entry and why.
    pub fn parse(list: &str) -> Result<DomainPatterns, String> {
        let mut p = DomainPatterns { exact: BTreeSet::new(), wildcard: BTreeSet::new() };
        for entry in list.split(',') {
            let entry = entry.trim();
            if entry.is_empty() {
                return Err(format!("empty pattern in {list:?}"));
            }
            let lower = entry.to_ascii_lowercase();
            match lower.strip_prefix("*.") {
                Some(rest) => {
                    dns_name(rest).map_err(|e| format!("pattern {entry:?}: {e}"))?;
                    // `*.com` would let any tag order names under a whole
                    // top-level domain: at least two labels after the star.
                    if !rest.contains('.') {
                        return Err(format!("pattern {entry:?}: a wildcard needs at least two labels after `*.`"));
                    }
                    p.wildcard.insert(rest.to_string());
                }
                None => {
                    dns_name(&lower).map_err(|e| format!("pattern {entry:?}: {e}"))?;
                    p.exact.insert(lower);
                }
            }
        }
        Ok(p)
    }

    /// Whether `name` (lower-case, as route hosts are) matches a pattern.
    pub fn matches(&self, name: &str) -> bool {
        self.exact.contains(name) || name.split_once('.').is_some_and(|(_, parent)| self.wildcard.contains(parent))
    }
}

impl fmt::Display for DomainPatterns {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let all: Vec<String> =
            self.wildcard.iter().map(|w| format!("*.{w}")).chain(self.exact.iter().cloned()).collect();
        f.write_str(&all.join(","))
    }
}

/// Checks a lower-case DNS name as a CA accepts it: 1 to 253 bytes, labels
/// of 1 to 63 letters, digits and inner hyphens, at least two labels, not
/// all-numeric at the end (an IPv4 literal is not a DNS name).
pub fn dns_name(name: &str) -> Result<(), &'static str> {
    if name.is_empty() || name.len() > 253 {
        return Err("a name is 1 to 253 characters");
    }
    let labels: Vec<&str> = name.split('.').collect();
    if labels.len() < 2 {
        return Err("a name needs at least two labels");
    }
    for l in &labels {
        if l.is_empty() || l.len() > 63 {
            return Err("a label is 1 to 63 characters");
        }
        if !l.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-') {
            return Err("a label holds only letters, digits and hyphens");
        }
        if l.starts_with('-') || l.ends_with('-') {
            return Err("a label neither starts nor ends with a hyphen");
        }
    }
    if labels.last().is_some_and(|l| l.bytes().all(|b| b.is_ascii_digit())) {
        return Err("the last label is not all digits (an IP address is not a DNS name)");
    }
    Ok(())
}

/// The names to keep certificates for: every exact route host (`hosts`
/// lower-case, as the routing table keeps them) that is a DNS name,
/// matches a pattern, and is not covered by a `--cert-source` certificate
/// (`covered`). The any-host route (`""`) and wildcard hosts are never
/// ordered.
pub fn wanted<'a>(
    hosts: impl IntoIterator<Item = &'a str>,
    patterns: &DomainPatterns,
    covered: impl Fn(&str) -> bool,
) -> BTreeSet<String> {
    hosts
        .into_iter()
        .filter(|h| !h.starts_with("*.") && dns_name(h).is_ok() && patterns.matches(h) && !covered(h))
        .map(str::to_string)
        .collect()
}

#[cfg(test)]
mod tests;
