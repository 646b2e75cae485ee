//! Which route a request takes, the same on the fast path and hyper's: the
//! path normalised (unless `--path-normalize=false`), the table's lookup,
//! and fabio's redirect-loop rule (a redirect whose Location is the request
//! itself is skipped and the lookup goes on with the next candidate host).
//! docs/router.md ("Tag grammar", "Redirects") is the contract.

use std::borrow::Cow;

use super::headers::rewrite_path;
use crate::routes::options::redirect_loops;
use crate::routes::{Route, Table, path, request_host};

/// The path routes see and the upstream gets.
pub fn request_path(raw: &str, normalize: bool) -> Cow<'_, str> {
    if normalize { path::normalize(raw) } else { Cow::Borrowed(raw) }
}

/// The route for a request; `path` is the (normalised) path without query.
pub fn route<'t>(table: &'t Table, host: &str, path: &str, query: Option<&str>, tls: bool) -> Option<&'t Route> {
    let scheme = if tls { "https" } else { "http" };
    let mut normalized: Option<String> = None;
    table.lookup_by(host, path, tls, |r| {
        if !r.fast.redirect {
            return true;
        }
        let host = normalized.get_or_insert_with(|| request_host(host, tls));
        redirect(r, host, path, query).is_none_or(|(_, loc)| !redirect_loops(&loc, scheme, host, path))
    })
}

/// The status and Location of a redirect route. `host` is the normalised
/// request host ([`request_host`]); `$path` is the path after the route's
/// `strip=` and `prepend=`, followed by the query.
pub fn redirect(route: &Route, host: &str, path: &str, query: Option<&str>) -> Option<(u16, String)> {
    let r = route.opts.redirect.as_ref()?;
    let path = rewrite_path(path, route.opts.strip.as_deref(), route.opts.prepend.as_deref());
    Some((r.code, r.location(host, &path, query)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::routes::Instance;

    fn table(tags: &[&[&str]]) -> Table {
        let instances: Vec<Instance> = tags
            .iter()
            .enumerate()
            .map(|(i, tags)| Instance {
                service: format!("s{i}"),
                id: format!("i{i}"),
                address: "10.0.0.1".into(),
                port: 8000 + i as u16,
                tags: tags.iter().map(|t| t.to_string()).collect(),
            })
            .collect();
        let (t, problems) = Table::build(&instances, "", "urlprefix-");
        assert!(problems.is_empty(), "{problems:?}");
        t
    }

    fn go(t: &Table, host: &str, target: &str, tls: bool) -> String {
        let (path, query) = match target.split_once('?') {
            Some((p, q)) => (p, Some(q)),
            None => (target, None),
        };
        let path = request_path(path, true);
        match route(t, host, &path, query, tls) {
            None => "none".into(),
            Some(r) => match redirect(r, &request_host(host, tls), &path, query) {
                Some((code, loc)) => format!("{code} {loc}"),
                None => format!("proxy {}", r.service),
            },
        }
    }

    #[test]
    fn an_https_redirect_and_the_plain_route_live_side_by_side() {
        let t = table(&[&["urlprefix-example.com:80/ redirect=301,https://$host$path"], &["urlprefix-example.com/"]]);
        assert_eq!(go(&t, "example.com", "/a?x=%20", false), "301 https://example.com/a?x=%20");
        assert_eq!(go(&t, "Example.com:80", "/", false), "301 https://example.com/");
        assert_eq!(go(&t, "example.com", "/a", true), "proxy s1", "over TLS the :80 route does not match");
        assert_eq!(go(&t, "example.com:443", "/a", true), "proxy s1");
    }

    #[test]
    fn a_redirect_to_the_request_itself_is_skipped_for_the_next_host() {
        let t = table(&[
            &["urlprefix-*.example.com/ redirect=302,http://$host$path"],
            &["urlprefix-*.com/"],
            &["urlprefix-/ redirect=301,http://a.example.com$path"],
        ]);
        assert_eq!(go(&t, "a.example.com", "/x", false), "proxy s1", "the loop is skipped, *.com serves");
        let t = table(&[&["urlprefix-a.com/ redirect=302,http://a.com/$path"], &["urlprefix-/"]]);
        assert_eq!(go(&t, "a.com", "/x", false), "proxy s1", "the host-less route serves");
        assert_eq!(go(&t, "a.com", "/x", true), "302 http://a.com/x", "another scheme is no loop");
        let t = table(&[&["urlprefix-a.com/ redirect=302,http://a.com/$path"]]);
        assert_eq!(go(&t, "a.com", "/x", false), "none");
    }

    #[test]
    fn redirect_path_is_after_strip_and_prepend_and_normalised() {
        let t = table(&[&["urlprefix-/old strip=/old prepend=/new redirect=301,https://b.com/$path"]]);
        assert_eq!(go(&t, "a.com", "/old/x?q=1", false), "301 https://b.com/new/x?q=1");
        assert_eq!(go(&t, "a.com", "/y/../old//x", false), "301 https://b.com/new/x");
    }

    #[test]
    fn normalisation_can_be_turned_off() {
        assert_eq!(request_path("/x/../admin", false), "/x/../admin");
        assert_eq!(request_path("/x/../admin", true), "/admin");
    }
}
