//! Consul parses check durations with Go's `time.ParseDuration`; a value it
//! rejects fails the whole registration. Validating here lets a bad
//! `SERVICE_CHECK_INTERVAL` cost only that key, with a warning.

/// True for Go duration syntax: one or more `<decimal><unit>` with units
/// `ns`, `us`, `µs`, `ms`, `s`, `m`, `h` (`10s`, `1m30s`, `1.5s`), or `0`.
/// Signs are refused: no check duration may be negative.
pub fn is_valid(s: &str) -> bool {
    if s == "0" {
        return true;
    }
    let mut rest = s;
    if rest.is_empty() {
        return false;
    }
    while !rest.is_empty() {
        let num_len = rest.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(rest.len());
        let num = &rest[..num_len];
        if num.is_empty() || num == "." || num.matches('.').count() > 1 {
            return false;
        }
        rest = &rest[num_len..];
        let unit = ["ns", "us", "µs", "ms", "s", "m", "h"].iter().find(|u| rest.starts_with(**u));
        match unit {
            Some(u) => rest = &rest[u.len()..],
            None => return false,
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::is_valid;

    #[test]
    fn go_durations() {
        for ok in ["10s", "1m30s", "1.5s", "500ms", "2h", "0", "100us", "1µs", "3ns", ".5s", "1h2m3s4ms"] {
            assert!(is_valid(ok), "{ok}");
        }
        for bad in ["", "10", "s", "abc", "10 s", "-1s", "1.2.3s", "10sec", "1d", "1m30", "."] {
            assert!(!is_valid(bad), "{bad}");
        }
    }
}
