//! Routing a request to a function: by path prefix, optionally by host.
//!
//! A route is `"/prefix"` (any host) or `"host/prefix"`. The most specific
//! route wins: a route naming the request's host beats one that names none,
//! then the longest prefix wins. A prefix matches whole path segments, so
//! `/hello` serves `/hello` and `/hello/x` but not `/helloworld`.

use std::fmt;

/// Paths the node keeps for itself.
pub const RESERVED_PREFIXES: [&str; 4] = ["/v1", "/healthz", "/metrics", "/_wafer"];

/// One parsed route.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Route {
    /// Lowercase host without port, or `None` for any host.
    pub host: Option<String>,
    /// Path prefix starting with `/`, without a trailing `/` (except the root).
    pub prefix: String,
}

impl Route {
    /// Parses `"/prefix"` or `"host/prefix"`.
    pub fn parse(text: &str) -> Result<Self, String> {
        let (host, path) = match text.find('/') {
            Some(0) => (None, text),
            Some(i) => (Some(&text[..i]), &text[i..]),
            None => return Err(format!("route `{text}` must be `/prefix` or `host/prefix`")),
        };
        if path.contains(['?', '#', ' ', '*']) || path.contains("//") || path.split('/').any(|s| s == ".." || s == ".")
        {
            return Err(format!(
                "route `{text}`: the path must be a plain prefix like `/api/v2`"
            ));
        }
        let host = match host {
            Some(host) => {
                let host = host.to_ascii_lowercase();
                let valid = host.len() <= 253
                    && host.split('.').all(|label| {
                        !label.is_empty()
                            && label.len() <= 63
                            && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
                    });
                if !valid {
                    return Err(format!("route `{text}`: `{host}` is not a host name"));
                }
                Some(host)
            }
            None => None,
        };
        let prefix = if path.len() > 1 {
            path.trim_end_matches('/')
        } else {
            path
        };
        for reserved in RESERVED_PREFIXES {
            if segment_prefix_matches(reserved, prefix) {
                return Err(format!(
                    "route `{text}` overlaps `{reserved}`, which the node keeps for itself"
                ));
            }
        }
        Ok(Self {
            host,
            prefix: prefix.to_owned(),
        })
    }

    fn matches(&self, host: Option<&str>, path: &str) -> bool {
        if let Some(route_host) = &self.host {
            match host {
                Some(host) if host.eq_ignore_ascii_case(route_host) => {}
                _ => return false,
            }
        }
        segment_prefix_matches(&self.prefix, path)
    }
}

impl fmt::Display for Route {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.host {
            Some(host) => write!(f, "{host}{}", self.prefix),
            None => f.write_str(&self.prefix),
        }
    }
}

/// True when `prefix` is `path` or a leading run of whole segments of it.
fn segment_prefix_matches(prefix: &str, path: &str) -> bool {
    if prefix == "/" {
        return true;
    }
    match path.strip_prefix(prefix) {
        Some(rest) => rest.is_empty() || rest.starts_with('/'),
        None => false,
    }
}

/// An immutable routing snapshot: swapped whole on every deploy, so a
/// request sees either the old table or the new one, never a mix.
#[derive(Debug)]
pub struct RoutingTable<T> {
    /// Sorted most specific first.
    entries: Vec<(Route, T)>,
}

impl<T> Default for RoutingTable<T> {
    fn default() -> Self {
        Self { entries: Vec::new() }
    }
}

impl<T: Clone> RoutingTable<T> {
    /// Builds a table; two identical routes are a conflict.
    pub fn new(mut entries: Vec<(Route, T)>) -> Result<Self, Route> {
        entries.sort_by(|(a, _), (b, _)| {
            b.host
                .is_some()
                .cmp(&a.host.is_some())
                .then(b.prefix.len().cmp(&a.prefix.len()))
                .then(a.prefix.cmp(&b.prefix))
                .then(a.host.cmp(&b.host))
        });
        for pair in entries.windows(2) {
            if pair[0].0 == pair[1].0 {
                return Err(pair[0].0.clone());
            }
        }
        Ok(Self { entries })
    }

    /// The most specific entry for a request's host (port stripped) and path.
    pub fn find(&self, host: Option<&str>, path: &str) -> Option<(&Route, &T)> {
        let host = host.map(|h| h.rsplit_once(':').map_or(h, |(name, _port)| name));
        self.entries
            .iter()
            .find(|(route, _)| route.matches(host, path))
            .map(|(route, value)| (route, value))
    }

    /// Every entry, most specific first.
    pub fn entries(&self) -> impl Iterator<Item = &(Route, T)> {
        self.entries.iter()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn route(text: &str) -> Route {
        Route::parse(text).unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn parse_accepts_paths_and_hosts() {
        assert_eq!(route("/hello/").prefix, "/hello");
        assert_eq!(route("API.example.com/x").host.as_deref(), Some("api.example.com"));
        assert_eq!(route("/").prefix, "/");
    }

    #[test]
    fn parse_rejects_reserved_and_odd_paths() {
        for bad in [
            "hello",
            "/v1",
            "/v1/x",
            "/metrics",
            "/a?b",
            "/a/../b",
            "bad host/x",
            "/a//b",
            "/healthz/x",
        ] {
            assert!(Route::parse(bad).is_err(), "{bad}");
        }
        // `/` as a catch-all is allowed: reserved paths are matched before functions.
        assert!(Route::parse("/").is_ok());
        assert!(Route::parse("/v10").is_ok());
    }

    #[test]
    fn most_specific_route_wins() {
        let table = RoutingTable::new(vec![
            (route("/"), "root"),
            (route("/api"), "api"),
            (route("/api/v2"), "v2"),
            (route("example.com/api"), "host-api"),
        ])
        .unwrap_or_else(|r| panic!("conflict {r}"));
        let find = |host, path| table.find(host, path).map(|(_, v)| *v);
        assert_eq!(find(None, "/api/v2/x"), Some("v2"));
        assert_eq!(find(None, "/api/v3"), Some("api"));
        assert_eq!(find(None, "/apix"), Some("root"));
        assert_eq!(find(Some("example.com:8080"), "/api/v3"), Some("host-api"));
        assert_eq!(find(Some("EXAMPLE.com"), "/api/v2"), Some("host-api"));
        assert_eq!(find(Some("other.com"), "/api"), Some("api"));
    }

    #[test]
    fn identical_routes_conflict() {
        let err = RoutingTable::new(vec![(route("/a"), 1), (route("/a/"), 2)]).err();
        assert_eq!(err, Some(route("/a")));
        assert!(RoutingTable::new(vec![(route("/a"), 1), (route("h.com/a"), 2)]).is_ok());
    }
}
