//! Routing by method and path inside one function.
//!
//! Patterns match whole segments; `:name` captures one segment and a final
//! `*` captures the rest. Paths are matched below the route the function is
//! mounted at (the node's `x-wafer-path-info` header), so a function
//! deployed at `/api` writes its patterns as `/items/:id`, not
//! `/api/items/:id`. A path that matches with another method answers 405
//! with `Allow`; no match answers 404.
//!
//! ```
//! use wafer_sdk::http::{Request, Response};
//! use wafer_sdk::router::Router;
//!
//! fn handle(req: Request) -> Response {
//!     Router::new()
//!         .get("/items/:id", |_req, p| Response::text(200, format!("item {}", p.get("id").unwrap_or(""))))
//!         .post("/items", |_req, _| Response::text(201, "created"))
//!         .get("/files/*", |_req, p| Response::text(200, p.get("*").unwrap_or("").to_owned()))
//!         .handle(req)
//! }
//!
//! assert_eq!(handle(Request::new("GET", "/items/7")).body(), Some(&b"item 7"[..]));
//! assert_eq!(handle(Request::new("DELETE", "/items")).status(), 405);
//! assert_eq!(handle(Request::new("GET", "/files/a/b.txt")).body(), Some(&b"a/b.txt"[..]));
//! assert_eq!(handle(Request::new("GET", "/nope")).status(), 404);
//! ```

use crate::http::{Request, Response};

/// Values captured by a pattern.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Params(Vec<(String, String)>);

impl Params {
    /// The value captured as `name` (`"*"` for the rest of the path).
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }
}

type Handler<'a> = Box<dyn FnOnce(Request, Params) -> Response + 'a>;

/// Routes, tried in the order they were added.
#[derive(Default)]
pub struct Router<'a> {
    routes: Vec<(String, String, Handler<'a>)>,
}

impl<'a> Router<'a> {
    /// No routes.
    pub fn new() -> Self {
        Router { routes: Vec::new() }
    }

    /// A route for `method` (upper case) and `pattern`.
    pub fn route(
        mut self,
        method: &str,
        pattern: &str,
        handler: impl FnOnce(Request, Params) -> Response + 'a,
    ) -> Self {
        self.routes
            .push((method.to_ascii_uppercase(), pattern.to_owned(), Box::new(handler)));
        self
    }

    /// A `GET` route (also answers `HEAD`).
    pub fn get(self, pattern: &str, handler: impl FnOnce(Request, Params) -> Response + 'a) -> Self {
        self.route("GET", pattern, handler)
    }

    /// A `POST` route.
    pub fn post(self, pattern: &str, handler: impl FnOnce(Request, Params) -> Response + 'a) -> Self {
        self.route("POST", pattern, handler)
    }

    /// A `PUT` route.
    pub fn put(self, pattern: &str, handler: impl FnOnce(Request, Params) -> Response + 'a) -> Self {
        self.route("PUT", pattern, handler)
    }

    /// A `DELETE` route.
    pub fn delete(self, pattern: &str, handler: impl FnOnce(Request, Params) -> Response + 'a) -> Self {
        self.route("DELETE", pattern, handler)
    }

    /// Runs the first route whose method and pattern match.
    pub fn handle(self, req: Request) -> Response {
        let path = req.header("x-wafer-path-info").unwrap_or_else(|| req.path().to_owned());
        let method = req.method().to_ascii_uppercase();
        let mut allowed: Vec<String> = Vec::new();
        for (route_method, pattern, handler) in self.routes {
            let Some(params) = match_path(&pattern, &path) else {
                continue;
            };
            if route_method == method || (method == "HEAD" && route_method == "GET") {
                return handler(req, params);
            }
            if !allowed.contains(&route_method) {
                allowed.push(route_method);
            }
        }
        if allowed.is_empty() {
            Response::text(404, format!("no route for {path}\n"))
        } else {
            Response::text(
                405,
                format!("{method} is not allowed here; use {}\n", allowed.join(", ")),
            )
            .with_header("allow", allowed.join(", "))
        }
    }
}

fn match_path(pattern: &str, path: &str) -> Option<Params> {
    let mut params = Vec::new();
    let mut segments = path.trim_start_matches('/').split('/').filter(|s| !s.is_empty());
    let mut parts = pattern
        .trim_start_matches('/')
        .split('/')
        .filter(|s| !s.is_empty())
        .peekable();
    while let Some(part) = parts.next() {
        if part == "*" && parts.peek().is_none() {
            let rest: Vec<&str> = segments.by_ref().collect();
            params.push(("*".to_owned(), rest.join("/")));
            return Some(Params(params));
        }
        let segment = segments.next()?;
        match part.strip_prefix(':') {
            Some(name) => params.push((name.to_owned(), segment.to_owned())),
            None if part == segment => {}
            None => return None,
        }
    }
    segments.next().is_none().then_some(Params(params))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn patterns_match_whole_segments() {
        assert!(match_path("/items", "/items/").is_some());
        assert!(match_path("/items", "/itemsx").is_none());
        assert!(match_path("/items/:id", "/items").is_none());
        assert_eq!(match_path("/a/:x/c/:y", "/a/1/c/2").unwrap().get("y"), Some("2"));
        assert_eq!(match_path("/", "/").unwrap(), Params::default());
        assert_eq!(match_path("/f/*", "/f").unwrap().get("*"), Some(""));
    }

    #[test]
    fn the_node_path_info_wins_over_the_full_path() {
        let req = Request::new("GET", "/api/items/3").with_header("x-wafer-path-info", "/items/3");
        let resp = Router::new()
            .get("/items/:id", |_, p| {
                Response::text(200, p.get("id").unwrap().to_owned())
            })
            .handle(req);
        assert_eq!(resp.body(), Some(&b"3"[..]));
        let head = Router::new()
            .get("/", |_, _| Response::text(200, "x"))
            .handle(Request::new("HEAD", "/"));
        assert_eq!(head.status(), 200);
    }
}
