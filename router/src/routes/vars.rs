//! Variables in a route's host and path (`$NAME`, `${NAME}`), expanded the
//! way fabio does it (Go's `os.Expand`): `DC` is the datacenter of the Consul
//! agent the router talks to, and a variable nobody defined expands to the
//! empty string, so `urlprefix-$x/$y` is the route `/`.

/// The values variables expand to.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Vars {
    /// `$DC`: the Consul agent's datacenter (empty until known).
    pub datacenter: String,
}

impl Vars {
    fn get(&self, name: &str) -> &str {
        match name {
            "DC" => &self.datacenter,
            _ => "",
        }
    }

    /// `s` with every variable replaced. Borrowed when it has no `$`.
    pub fn expand<'a>(&self, s: &'a str) -> std::borrow::Cow<'a, str> {
        if !s.contains('$') {
            return std::borrow::Cow::Borrowed(s);
        }
        let b = s.as_bytes();
        let mut out = String::with_capacity(s.len());
        let mut i = 0;
        let mut j = 0;
        while j < b.len() {
            if b[j] == b'$' && j + 1 < b.len() {
                out.push_str(&s[i..j]);
                let (name, w) = shell_name(&s[j + 1..]);
                match name {
                    // Bad syntax (`${`, `${}`): the characters are eaten.
                    "" if w > 0 => {}
                    // `$` not followed by a name stays.
                    "" => out.push('$'),
                    name => out.push_str(self.get(name)),
                }
                j += w;
                i = j + 1;
            }
            j += 1;
        }
        out.push_str(&s[i.min(s.len())..]);
        std::borrow::Cow::Owned(out)
    }
}

/// The name after a `$` and how many bytes it takes (Go's `getShellName`).
fn shell_name(s: &str) -> (&str, usize) {
    let b = s.as_bytes();
    let special = |c: u8| b"*#$@!?-".contains(&c) || c.is_ascii_digit();
    if b[0] == b'{' {
        if b.len() > 2 && special(b[1]) && b[2] == b'}' {
            return (&s[1..2], 3);
        }
        return match s[1..].find('}') {
            Some(0) => ("", 2),
            Some(end) => (&s[1..=end], end + 2),
            None => ("", 1),
        };
    }
    if special(b[0]) {
        return (&s[..1], 1);
    }
    let n = b.iter().take_while(|c| c.is_ascii_alphanumeric() || **c == b'_').count();
    (&s[..n], n)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn x(s: &str) -> String {
        Vars { datacenter: "dc1".into() }.expand(s).into_owned()
    }

    #[test]
    fn dc_and_unknown_variables() {
        assert_eq!(x("$DC.example.com"), "dc1.example.com");
        assert_eq!(x("${DC}-api.example.com"), "dc1-api.example.com");
        assert_eq!(x("a.$DCx.com"), "a..com", "the name runs to the last alphanumeric");
        assert_eq!(x("$x"), "");
        assert_eq!(x("/$y"), "/");
        assert_eq!(x("/plain"), "/plain");
        assert_eq!(Vars::default().expand("$DC.x"), ".x", "no datacenter known yet");
    }

    #[test]
    fn random_input_never_panics_and_text_without_dollar_is_kept() {
        let mut next = crate::routes::xorshift(0x9e37_79b9_7f4a_7c15_u64);
        let pieces = ["$", "{", "}", "DC", "x", "1", "é", "/", "_", "-", "$$", "${", "${DC}"];
        for _ in 0..20_000 {
            let s: String = (0..next(12)).map(|_| pieces[next(pieces.len())]).collect();
            let out = x(&s);
            if !s.contains('$') {
                assert_eq!(out, s);
            }
            assert!(out.len() <= s.len() + 3 * s.matches("DC").count(), "{s} -> {out}");
        }
    }

    #[test]
    fn go_os_expand_edge_cases() {
        assert_eq!(x("a$"), "a$", "a trailing $ stays");
        assert_eq!(x("a$/b"), "a$/b", "$ before a non-name stays");
        assert_eq!(x("a${}b"), "ab", "${{}} is eaten");
        assert_eq!(x("a${b"), "ab", "an unclosed ${{ is eaten");
        assert_eq!(x("a$1b"), "ab", "$1 is a special one-character name");
        assert_eq!(x("a${*}b"), "ab");
        assert_eq!(x("$$"), "", "$$ names the variable '$'");
        assert_eq!(x("é$DC"), "édc1");
    }
}
