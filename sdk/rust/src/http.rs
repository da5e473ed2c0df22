//! HTTP requests and responses.
//!
//! A handler receives a [`Request`] and returns a [`Response`]. Responses are
//! either buffered ([`Response::text`], [`Response::with_body`], ...) or
//! streamed ([`stream`]).

use std::fmt;

use crate::Error;

/// The default cap on a request body read with [`Request::body`] and friends:
/// 16 MiB. Change it per request with [`Request::set_max_body_size`].
pub const DEFAULT_MAX_BODY_SIZE: usize = 16 * 1024 * 1024;

/// Where a request's body is.
enum Body {
    /// In memory (already read, or given to [`Request::with_body`]).
    Buffered(Vec<u8>),
    /// Still on the host, unread.
    #[cfg(target_arch = "wasm32")]
    Incoming(wasip2::http::types::IncomingRequest),
    /// A read failed part-way; the body is gone.
    Unavailable,
}

/// An incoming HTTP request.
///
/// Inside a function, the SDK builds it from the request the host passes in;
/// the body stays on the host until you ask for it ([`Request::body`],
/// [`Request::into_body`], [`Request::text`], `Request::json`). In native unit
/// tests, build one with [`Request::new`].
pub struct Request {
    method: String,
    path_with_query: String,
    authority: Option<String>,
    headers: Vec<(String, Vec<u8>)>,
    body: Body,
    max_body_size: usize,
}

impl Request {
    /// A request with the given method and path (optionally with a
    /// `?query`), no headers and an empty body. Meant for unit tests.
    ///
    /// ```
    /// use wafer_sdk::http::Request;
    ///
    /// let req = Request::new("POST", "/items?id=7")
    ///     .with_header("content-type", "text/plain")
    ///     .with_body("hi");
    /// assert_eq!(req.path(), "/items");
    /// assert_eq!(req.query_param("id").as_deref(), Some("7"));
    /// ```
    pub fn new(method: impl Into<String>, path_with_query: impl Into<String>) -> Self {
        Self {
            method: method.into(),
            path_with_query: path_with_query.into(),
            authority: None,
            headers: Vec::new(),
            body: Body::Buffered(Vec::new()),
            max_body_size: DEFAULT_MAX_BODY_SIZE,
        }
    }

    #[cfg(target_arch = "wasm32")]
    pub(crate) fn from_parts(
        method: String,
        path_with_query: String,
        authority: Option<String>,
        headers: Vec<(String, Vec<u8>)>,
        incoming: wasip2::http::types::IncomingRequest,
    ) -> Self {
        Self {
            method,
            path_with_query,
            authority,
            headers,
            body: Body::Incoming(incoming),
            max_body_size: DEFAULT_MAX_BODY_SIZE,
        }
    }

    /// Adds a header (builder style, for tests).
    pub fn with_header(mut self, name: impl Into<String>, value: impl AsRef<[u8]>) -> Self {
        self.headers.push((name.into(), value.as_ref().to_vec()));
        self
    }

    /// Replaces the body (builder style, for tests).
    pub fn with_body(mut self, body: impl Into<Vec<u8>>) -> Self {
        self.body = Body::Buffered(body.into());
        self
    }

    /// Sets the authority (`Host`), builder style, for tests.
    pub fn with_authority(mut self, authority: impl Into<String>) -> Self {
        self.authority = Some(authority.into());
        self
    }

    /// The method, upper case as sent (`"GET"`, `"POST"`, ...).
    pub fn method(&self) -> &str {
        &self.method
    }

    /// The path, without the query string. This is the full path the client
    /// requested, including the route prefix the function is mounted under.
    pub fn path(&self) -> &str {
        match self.path_with_query.split_once('?') {
            Some((path, _)) => path,
            None => &self.path_with_query,
        }
    }

    /// The raw query string (after `?`, not decoded), if there is one.
    pub fn query(&self) -> Option<&str> {
        self.path_with_query.split_once('?').map(|(_, q)| q)
    }

    /// The path and query as sent (`/items?id=7`).
    pub fn path_with_query(&self) -> &str {
        &self.path_with_query
    }

    /// The first value of query parameter `name`, decoded (`%XX` escapes and
    /// `+` as space). A parameter without `=` has the empty string as value.
    pub fn query_param(&self, name: &str) -> Option<String> {
        self.query()?
            .split('&')
            .filter(|pair| !pair.is_empty())
            .map(|pair| pair.split_once('=').unwrap_or((pair, "")))
            .find(|(key, _)| percent_decode(key) == name)
            .map(|(_, value)| percent_decode(value))
    }

    /// The authority (host and port) the request was sent to, if known.
    pub fn authority(&self) -> Option<&str> {
        self.authority.as_deref()
    }

    /// The first value of header `name` (case-insensitive), as text (invalid
    /// UTF-8 is replaced with U+FFFD).
    pub fn header(&self, name: &str) -> Option<String> {
        self.header_bytes(name).map(|v| String::from_utf8_lossy(v).into_owned())
    }

    /// The first value of header `name` (case-insensitive), as raw bytes.
    pub fn header_bytes(&self, name: &str) -> Option<&[u8]> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_slice())
    }

    /// All headers, in the order received. A header sent several times
    /// appears several times.
    pub fn headers(&self) -> impl Iterator<Item = (&str, &[u8])> {
        self.headers.iter().map(|(k, v)| (k.as_str(), v.as_slice()))
    }

    /// The most bytes [`Request::body`] and friends will read.
    pub fn max_body_size(&self) -> usize {
        self.max_body_size
    }

    /// Changes the most bytes [`Request::body`] and friends will read
    /// (default [`DEFAULT_MAX_BODY_SIZE`]). Reading a larger body fails with
    /// [`Error::BodyTooLarge`].
    pub fn set_max_body_size(&mut self, limit: usize) {
        self.max_body_size = limit;
    }

    /// The whole body. The first call reads it from the host (at most
    /// [`Request::max_body_size`] bytes); later calls return the same bytes.
    ///
    /// # Errors
    ///
    /// [`Error::BodyTooLarge`] if the body exceeds the limit, [`Error::Io`] if
    /// the host's stream fails, and [`Error::BodyUnavailable`] after such a
    /// failure.
    pub fn body(&mut self) -> Result<&[u8], Error> {
        self.buffer_body()?;
        match &self.body {
            Body::Buffered(bytes) => {
                if bytes.len() > self.max_body_size {
                    return Err(Error::BodyTooLarge {
                        limit: self.max_body_size,
                    });
                }
                Ok(bytes)
            }
            _ => Err(Error::BodyUnavailable),
        }
    }

    /// Consumes the request and returns its whole body; see [`Request::body`].
    ///
    /// # Errors
    ///
    /// As for [`Request::body`].
    pub fn into_body(mut self) -> Result<Vec<u8>, Error> {
        self.body()?;
        match std::mem::replace(&mut self.body, Body::Unavailable) {
            Body::Buffered(bytes) => Ok(bytes),
            _ => Err(Error::BodyUnavailable),
        }
    }

    /// The whole body as UTF-8 text; see [`Request::body`].
    ///
    /// # Errors
    ///
    /// As for [`Request::body`], plus [`Error::Utf8`].
    pub fn text(&mut self) -> Result<String, Error> {
        Ok(String::from_utf8(self.body()?.to_vec())?)
    }

    /// The whole body parsed as JSON; see [`Request::body`].
    ///
    /// ```
    /// # #[cfg(feature = "json")] {
    /// use wafer_sdk::http::Request;
    ///
    /// #[derive(serde::Deserialize)]
    /// struct Item {
    ///     name: String,
    /// }
    ///
    /// let mut req = Request::new("POST", "/items").with_body(r#"{"name":"x"}"#);
    /// let item: Item = req.json().unwrap();
    /// assert_eq!(item.name, "x");
    /// # }
    /// ```
    ///
    /// # Errors
    ///
    /// As for [`Request::body`], plus [`Error::Json`].
    #[cfg(feature = "json")]
    pub fn json<T: serde::de::DeserializeOwned>(&mut self) -> Result<T, Error> {
        Ok(serde_json::from_slice(self.body()?)?)
    }

    /// Makes sure the body is in memory (or marked unavailable).
    fn buffer_body(&mut self) -> Result<(), Error> {
        #[cfg(target_arch = "wasm32")]
        if matches!(self.body, Body::Incoming(_)) {
            let Body::Incoming(incoming) = std::mem::replace(&mut self.body, Body::Unavailable) else {
                return Err(Error::BodyUnavailable);
            };
            let declared_len = self.header("content-length").and_then(|v| v.trim().parse::<u64>().ok());
            let bytes = crate::wasm::read_body(&incoming, self.max_body_size, declared_len)?;
            self.body = Body::Buffered(bytes);
        }
        Ok(())
    }
}

impl fmt::Debug for Request {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let headers: Vec<(&str, String)> = self
            .headers
            .iter()
            .map(|(k, v)| (k.as_str(), String::from_utf8_lossy(v).into_owned()))
            .collect();
        f.debug_struct("Request")
            .field("method", &self.method)
            .field("path_with_query", &self.path_with_query)
            .field("authority", &self.authority)
            .field("headers", &headers)
            .finish_non_exhaustive()
    }
}

/// Decodes `%XX` escapes and `+` (as space); invalid escapes are kept as is.
fn percent_decode(s: &str) -> String {
    fn hex(b: u8) -> Option<u8> {
        match b {
            b'0'..=b'9' => Some(b - b'0'),
            b'a'..=b'f' => Some(b - b'a' + 10),
            b'A'..=b'F' => Some(b - b'A' + 10),
            _ => None,
        }
    }
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => match (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                (Some(hi), Some(lo)) => {
                    out.push((hi << 4) | lo);
                    i += 2;
                }
                _ => out.push(b'%'),
            },
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The body of a streamed response: a closure run after the head is sent.
type StreamFn = Box<dyn FnOnce(&mut BodyWriter) -> Result<(), Error>>;

pub(crate) enum ResponseBody {
    Bytes(Vec<u8>),
    Stream(StreamFn),
}

/// An HTTP response.
///
/// ```
/// use wafer_sdk::http::Response;
///
/// let resp = Response::new(201)
///     .with_header("content-type", "text/csv")
///     .with_header("x-count", "2")
///     .with_body("a,b\n1,2\n");
/// assert_eq!(resp.status(), 201);
/// assert_eq!(resp.header("X-Count"), Some("2"));
/// ```
///
/// A buffered body gets a `content-length` header automatically (unless you
/// set one). Status codes outside 100..=999 and headers the host forbids
/// (`connection`, `transfer-encoding`, ...) make Wafer answer 500 instead, with
/// the reason in the function's logs.
pub struct Response {
    pub(crate) status: u16,
    pub(crate) headers: Vec<(String, String)>,
    pub(crate) body: ResponseBody,
}

impl Response {
    /// A response with this status, no headers and an empty body.
    pub fn new(status: u16) -> Self {
        Self {
            status,
            headers: Vec::new(),
            body: ResponseBody::Bytes(Vec::new()),
        }
    }

    /// A `text/plain; charset=utf-8` response.
    pub fn text(status: u16, body: impl Into<String>) -> Self {
        Self::new(status)
            .with_header("content-type", "text/plain; charset=utf-8")
            .with_body(body.into())
    }

    /// An `application/json` response with `value` serialized as its body.
    ///
    /// If `value` cannot be serialized (a map with non-string keys, a failing
    /// `Serialize` impl) the response is a 500 with the error as text instead.
    ///
    /// ```
    /// # #[cfg(feature = "json")] {
    /// use wafer_sdk::http::Response;
    ///
    /// let resp = Response::json(200, &serde_json::json!({ "ok": true }));
    /// assert_eq!(resp.body(), Some(&br#"{"ok":true}"#[..]));
    /// # }
    /// ```
    #[cfg(feature = "json")]
    pub fn json<T: serde::Serialize + ?Sized>(status: u16, value: &T) -> Self {
        match serde_json::to_vec(value) {
            Ok(bytes) => Self::new(status)
                .with_header("content-type", "application/json")
                .with_body(bytes),
            Err(e) => Self::text(500, format!("could not serialize response: {e}")),
        }
    }

    /// A streamed response: the head is sent first, then `body` runs and
    /// writes the body piece by piece. See [`stream`].
    pub fn stream<F>(status: u16, body: F) -> Self
    where
        F: FnOnce(&mut BodyWriter) -> Result<(), Error> + 'static,
    {
        Self {
            status,
            headers: Vec::new(),
            body: ResponseBody::Stream(Box::new(body)),
        }
    }

    /// Adds a header. Adding a name twice sends it twice.
    pub fn with_header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }

    /// Sets the body (replacing a previous body, streamed or not).
    pub fn with_body(mut self, body: impl Into<Vec<u8>>) -> Self {
        self.body = ResponseBody::Bytes(body.into());
        self
    }

    /// Changes the status code.
    pub fn with_status(mut self, status: u16) -> Self {
        self.status = status;
        self
    }

    /// The status code.
    pub fn status(&self) -> u16 {
        self.status
    }

    /// The first value of header `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// All headers, in the order added.
    pub fn headers(&self) -> impl Iterator<Item = (&str, &str)> {
        self.headers.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }

    /// The body, if it is buffered; `None` for a streamed response (see
    /// [`Response::collect_body`]).
    pub fn body(&self) -> Option<&[u8]> {
        match &self.body {
            ResponseBody::Bytes(bytes) => Some(bytes),
            ResponseBody::Stream(_) => None,
        }
    }

    /// Whether the body is streamed.
    pub fn is_streaming(&self) -> bool {
        matches!(self.body, ResponseBody::Stream(_))
    }

    /// The whole body in memory; a streamed body is produced by running its
    /// closure against an in-memory writer. Meant for unit tests.
    ///
    /// # Errors
    ///
    /// Whatever the stream closure returns.
    pub fn collect_body(self) -> Result<Vec<u8>, Error> {
        match self.body {
            ResponseBody::Bytes(bytes) => Ok(bytes),
            ResponseBody::Stream(f) => {
                let mut writer = BodyWriter::memory();
                f(&mut writer)?;
                Ok(writer.into_memory())
            }
        }
    }
}

impl fmt::Debug for Response {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut s = f.debug_struct("Response");
        s.field("status", &self.status).field("headers", &self.headers);
        match &self.body {
            ResponseBody::Bytes(bytes) => s.field("body_len", &bytes.len()),
            ResponseBody::Stream(_) => s.field("body", &"<stream>"),
        };
        s.finish()
    }
}

/// A streamed response: headers go out at once, then `body` writes the body
/// through a [`BodyWriter`] while the client is already receiving it (no
/// `content-length`; HTTP/1.1 uses chunked encoding).
///
/// ```
/// use wafer_sdk::http::{self, Request, Response};
///
/// fn handle(_req: Request) -> Response {
///     http::stream(200, &[("content-type", "text/plain")], |writer| {
///         for i in 0..3 {
///             writer.write(format!("line {i}\n"))?;
///             writer.flush()?; // push it to the client now
///         }
///         Ok(())
///     })
/// }
///
/// let body = handle(Request::new("GET", "/")).collect_body().unwrap();
/// assert_eq!(body, b"line 0\nline 1\nline 2\n");
/// ```
///
/// If the closure returns an error (or the client goes away, which makes
/// writes fail with [`Error::Closed`]), the response is cut off: the client
/// sees an incomplete body rather than a clean end. The error is logged to
/// stderr.
pub fn stream<F>(status: u16, headers: &[(&str, &str)], body: F) -> Response
where
    F: FnOnce(&mut BodyWriter) -> Result<(), Error> + 'static,
{
    let mut response = Response::stream(status, body);
    response.headers = headers
        .iter()
        .map(|(k, v)| ((*k).to_string(), (*v).to_string()))
        .collect();
    response
}

enum Sink {
    Memory(Vec<u8>),
    #[cfg(target_arch = "wasm32")]
    Host(wasip2::io::streams::OutputStream),
}

/// Writes a streamed response body; handed to the closure given to
/// [`stream`] / [`Response::stream`]. Also implements [`std::io::Write`], so
/// `write!` works.
pub struct BodyWriter {
    sink: Sink,
    written: u64,
}

impl BodyWriter {
    fn memory() -> Self {
        Self {
            sink: Sink::Memory(Vec::new()),
            written: 0,
        }
    }

    #[cfg(target_arch = "wasm32")]
    pub(crate) fn host(stream: wasip2::io::streams::OutputStream) -> Self {
        Self {
            sink: Sink::Host(stream),
            written: 0,
        }
    }

    fn into_memory(self) -> Vec<u8> {
        match self.sink {
            Sink::Memory(bytes) => bytes,
            #[cfg(target_arch = "wasm32")]
            Sink::Host(_) => Vec::new(),
        }
    }

    /// Writes all of `data`, waiting while the host's buffer is full.
    /// Data may sit in a buffer until [`BodyWriter::flush`] or the end of the
    /// body.
    ///
    /// # Errors
    ///
    /// [`Error::Closed`] if the client went away, [`Error::Io`] on other
    /// stream failures.
    pub fn write(&mut self, data: impl AsRef<[u8]>) -> Result<(), Error> {
        let data = data.as_ref();
        match &mut self.sink {
            Sink::Memory(bytes) => bytes.extend_from_slice(data),
            #[cfg(target_arch = "wasm32")]
            Sink::Host(stream) => crate::wasm::write_all(stream, data)?,
        }
        self.written += data.len() as u64;
        Ok(())
    }

    /// Waits until everything written so far has been handed to the host,
    /// so the client receives it now.
    ///
    /// # Errors
    ///
    /// As for [`BodyWriter::write`].
    pub fn flush(&mut self) -> Result<(), Error> {
        match &mut self.sink {
            Sink::Memory(_) => Ok(()),
            #[cfg(target_arch = "wasm32")]
            Sink::Host(stream) => crate::wasm::flush(stream),
        }
    }

    /// How many body bytes have been written so far.
    pub fn bytes_written(&self) -> u64 {
        self.written
    }
}

impl std::io::Write for BodyWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        BodyWriter::write(self, buf)?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(BodyWriter::flush(self)?)
    }
}

impl fmt::Debug for BodyWriter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BodyWriter")
            .field("bytes_written", &self.written)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn path_and_query() {
        let req = Request::new("GET", "/a/b?x=1&y=hello%20world&z=a+b&flag&x=2");
        assert_eq!(req.method(), "GET");
        assert_eq!(req.path(), "/a/b");
        assert_eq!(req.query(), Some("x=1&y=hello%20world&z=a+b&flag&x=2"));
        assert_eq!(req.query_param("x").as_deref(), Some("1"));
        assert_eq!(req.query_param("y").as_deref(), Some("hello world"));
        assert_eq!(req.query_param("z").as_deref(), Some("a b"));
        assert_eq!(req.query_param("flag").as_deref(), Some(""));
        assert_eq!(req.query_param("nope"), None);

        let req = Request::new("GET", "/plain");
        assert_eq!(req.path(), "/plain");
        assert_eq!(req.query(), None);
        assert_eq!(req.query_param("x"), None);
    }

    #[test]
    fn percent_decoding_edge_cases() {
        assert_eq!(percent_decode("%41%4a%"), "AJ%");
        assert_eq!(percent_decode("%zz"), "%zz");
        assert_eq!(percent_decode("%4"), "%4");
        assert_eq!(percent_decode("%C3%A9"), "é");
    }

    #[test]
    fn headers_are_case_insensitive() {
        let req = Request::new("GET", "/")
            .with_header("X-Test", "one")
            .with_header("x-test", "two");
        assert_eq!(req.header("x-test").as_deref(), Some("one"));
        assert_eq!(req.header_bytes("X-TEST"), Some(&b"one"[..]));
        assert_eq!(req.headers().count(), 2);
        assert_eq!(req.header("missing"), None);
    }

    #[test]
    fn body_limits() -> Result<(), Error> {
        let mut req = Request::new("POST", "/").with_body("hello");
        assert_eq!(req.body()?, b"hello");
        assert_eq!(req.text()?, "hello");
        req.set_max_body_size(3);
        assert!(matches!(req.body(), Err(Error::BodyTooLarge { limit: 3 })));
        let req = Request::new("POST", "/").with_body(vec![0xff]);
        assert_eq!(req.into_body()?, vec![0xff]);
        let mut req = Request::new("POST", "/").with_body(vec![0xff]);
        assert!(matches!(req.text(), Err(Error::Utf8(_))));
        Ok(())
    }

    #[test]
    fn responses() -> Result<(), Error> {
        let resp = Response::text(404, "nope").with_header("x-a", "1");
        assert_eq!(resp.status(), 404);
        assert_eq!(resp.header("content-type"), Some("text/plain; charset=utf-8"));
        assert_eq!(resp.header("X-A"), Some("1"));
        assert_eq!(resp.body(), Some(&b"nope"[..]));
        assert!(!resp.is_streaming());

        let resp = stream(200, &[("content-type", "text/plain")], |w| {
            w.write("a")?;
            std::io::Write::write_all(w, b"b")?;
            w.flush()?;
            assert_eq!(w.bytes_written(), 2);
            Ok(())
        });
        assert!(resp.is_streaming());
        assert_eq!(resp.body(), None);
        assert_eq!(resp.header("content-type"), Some("text/plain"));
        assert_eq!(resp.collect_body()?, b"ab");

        let failing = Response::stream(200, |_| Err(Error::other("boom")));
        assert_eq!(
            failing.collect_body().map_err(|e| e.to_string()),
            Err("boom".to_string())
        );
        Ok(())
    }

    #[cfg(feature = "json")]
    #[test]
    fn json_round_trip() -> Result<(), Error> {
        #[derive(serde::Serialize, serde::Deserialize, PartialEq, Debug)]
        struct Item {
            name: String,
            n: u32,
        }
        let mut req = Request::new("POST", "/").with_body(r#"{"name":"a","n":2}"#);
        let item: Item = req.json()?;
        assert_eq!(item, Item { name: "a".into(), n: 2 });
        let resp = Response::json(201, &item);
        assert_eq!(resp.status(), 201);
        assert_eq!(resp.header("content-type"), Some("application/json"));
        assert_eq!(resp.body(), Some(&br#"{"name":"a","n":2}"#[..]));
        let mut bad = Request::new("POST", "/").with_body("{");
        assert!(matches!(bad.json::<Item>(), Err(Error::Json(_))));
        Ok(())
    }
}
