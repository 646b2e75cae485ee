//! Request path normalisation before routing, so that a route or an
//! `allow=`/`deny=` on `/admin` cannot be dodged with `/x/../admin`,
//! `/x/..%2Fadmin` or `//admin`: percent-encoded `/` (and `.`) decoded, `.`
//! and `..` segments removed (RFC 3986 section 5.2.4), repeated slashes
//! merged, a trailing slash kept. The normalised path is also the one
//! forwarded. `--path-normalize=false` turns it off.

use std::borrow::Cow;

/// The normalised path; borrowed (no work beyond one pass) when there is
/// nothing to change, which is the usual request. A path not starting with
/// `/` (`*`) is left alone.
pub fn normalize(path: &str) -> Cow<'_, str> {
    if !path.starts_with('/') || !needs_work(path.as_bytes()) {
        return Cow::Borrowed(path);
    }
    let decoded = decode_slash_and_dot(path);
    let mut out: Vec<&str> = Vec::new();
    let mut trailing = false;
    for seg in decoded[1..].split('/') {
        trailing = matches!(seg, "" | "." | "..");
        match seg {
            "" | "." => {}
            ".." => {
                out.pop();
            }
            s => out.push(s),
        }
    }
    let mut s = String::with_capacity(decoded.len());
    for seg in &out {
        s.push('/');
        s.push_str(seg);
    }
    if trailing || out.is_empty() {
        s.push('/');
    }
    Cow::Owned(s)
}

/// Whether the path has a `%`, a `//` or a segment starting with `.`.
fn needs_work(b: &[u8]) -> bool {
    b.iter().zip(&b[1..]).any(|(&p, &c)| c == b'%' || (p == b'/' && (c == b'/' || c == b'.')))
}

/// `%2F`/`%2f` -> `/` and `%2E`/`%2e` -> `.` (the one unreserved character
/// that matters for dot segments); every other escape is kept byte for byte.
fn decode_slash_and_dot(path: &str) -> Cow<'_, str> {
    if !path.contains('%') {
        return Cow::Borrowed(path);
    }
    let b = path.as_bytes();
    let mut out = String::with_capacity(path.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() && b[i + 1] == b'2' {
            match b[i + 2] {
                b'f' | b'F' => {
                    out.push('/');
                    i += 3;
                    continue;
                }
                b'e' | b'E' => {
                    out.push('.');
                    i += 3;
                    continue;
                }
                _ => {}
            }
        }
        // Not an escape we decode: copy up to the next '%'.
        let next = b[i + 1..].iter().position(|&c| c == b'%').map_or(b.len(), |n| i + 1 + n);
        out.push_str(&path[i..next]);
        i = next;
    }
    Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn n(p: &str) -> String {
        normalize(p).into_owned()
    }

    #[test]
    fn the_issue_example() {
        assert_eq!(n("/api%2F..%2Fv2//users/"), "/v2/users/");
    }

    #[test]
    fn dot_segments_are_removed() {
        assert_eq!(n("/x/../admin"), "/admin");
        assert_eq!(n("/a/./b"), "/a/b");
        assert_eq!(n("/a/b/.."), "/a/", "RFC 3986: a final .. leaves a trailing slash");
        assert_eq!(n("/a/b/."), "/a/b/");
        assert_eq!(n("/../../a"), "/a", "nothing above the root");
        assert_eq!(n("/.."), "/");
        assert_eq!(n("/a/.hidden/..x"), "/a/.hidden/..x", "names starting with a dot stay");
        assert_eq!(n("/x/%2e%2E/admin"), "/admin", "encoded dots are dots");
    }

    #[test]
    fn slashes_are_merged_and_the_trailing_one_kept() {
        assert_eq!(n("//admin"), "/admin");
        assert_eq!(n("/a///b//"), "/a/b/");
        assert_eq!(n("/a/b/"), "/a/b/");
        assert_eq!(n("/a%2fb"), "/a/b");
        assert_eq!(n("/a%2F%2Fb"), "/a/b");
    }

    /// RFC 3986 section 5.2.4 written out literally (its input-buffer loop),
    /// on a path whose escapes are decoded and slashes merged first.
    fn reference(path: &str) -> String {
        let mut decoded = path.replace("%2F", "/").replace("%2f", "/").replace("%2E", ".").replace("%2e", ".");
        while decoded.contains("//") {
            decoded = decoded.replace("//", "/");
        }
        let mut input = decoded.as_str().to_string();
        let mut output = String::new();
        while !input.is_empty() {
            if let Some(rest) = input.strip_prefix("../").or_else(|| input.strip_prefix("./")) {
                input = rest.to_string();
            } else if input.starts_with("/./") {
                input = input[2..].to_string();
            } else if input == "/." {
                input = "/".into();
            } else if input.starts_with("/../") || input == "/.." {
                input = if input == "/.." { "/".into() } else { input[3..].to_string() };
                match output.rfind('/') {
                    Some(i) => output.truncate(i),
                    None => output.clear(),
                }
            } else if input == "." || input == ".." {
                input.clear();
            } else {
                let start = usize::from(input.starts_with('/'));
                let end = input[start..].find('/').map_or(input.len(), |i| i + start);
                output.push_str(&input[..end]);
                input = input[end..].to_string();
            }
        }
        if output.is_empty() { "/".into() } else { output }
    }

    #[test]
    fn agrees_with_rfc_3986_on_random_paths_and_is_idempotent() {
        let mut next = crate::routes::xorshift(0x2545_f491_4f6c_dd1d_u64);
        let pieces = ["/", "/", ".", "..", "a", "b", "%2F", "%2e", "%2E%2e", "%20", "%", "é", "%2"];
        for _ in 0..20_000 {
            let mut p = String::from("/");
            for _ in 0..next(10) {
                p.push_str(pieces[next(pieces.len())]);
            }
            let got = n(&p);
            assert_eq!(got, reference(&p), "{p}");
            assert_eq!(n(&got), got, "idempotent: {p}");
            assert!(got.starts_with('/') && !got.contains("//"), "{p} -> {got}");
        }
    }

    #[test]
    fn everything_else_is_kept_byte_for_byte() {
        for p in ["/", "/a/b", "/a%20b", "/%41", "/a%2", "/a%", "/a%2G", "*", "/é/ü"] {
            assert_eq!(n(p), p, "{p}");
        }
        assert!(matches!(normalize("/api/users/42"), Cow::Borrowed(_)));
        assert_eq!(n("/a%20b/../c%3F"), "/c%3F");
    }
}
