//! `wafer-test-guests`: one wasi:http component with many behaviours, used by
//! the Wafer runtime's integration tests.
//!
//! The handler dispatches on the LAST segment of the request path, so the
//! component works under any route prefix (`/loop`, `/t/loop`, `/fn/x/loop`
//! all select `loop`). Query parameters are parsed by hand (with `%XX` and `+`
//! decoding). See the `match` in [`Handler::handle`] for the list.
//!
//! Build: `cd test-programs && cargo build --target wasm32-wasip2 --release`
//! Output: `test-programs/target/wasm32-wasip2/release/wafer_test_guests.wasm`

use std::hint::black_box;

use wasip2::clocks::monotonic_clock;
use wasip2::exports::http::incoming_handler::Guest;
use wasip2::http::types::{
    Fields, IncomingRequest, Method, OutgoingBody, OutgoingResponse, ResponseOutparam,
};
use wasip2::io::streams::{InputStream, OutputStream, StreamError};

struct Handler;

wasip2::http::proxy::export!(Handler);

impl Guest for Handler {
    fn handle(request: IncomingRequest, out: ResponseOutparam) {
        let path_with_query = request.path_with_query().unwrap_or_else(|| "/".to_string());
        let (path, query) = match path_with_query.split_once('?') {
            Some((p, q)) => (p, q),
            None => (path_with_query.as_str(), ""),
        };
        let name = path.trim_end_matches('/').rsplit('/').next().unwrap_or("");
        let q = Query(query);

        match name {
            "hello" => respond(out, 200, Some("text/plain"), b"hello from guest"),
            "echo" => echo(request, out),
            "read-body" => {
                let len = read_body_len(&request);
                match len {
                    Some(n) => respond(out, 200, Some("text/plain"), n.to_string().as_bytes()),
                    None => respond(out, 400, Some("text/plain"), b"could not read body"),
                }
            }
            "env" => {
                let key = q.get("key").unwrap_or_default();
                match std::env::var(&key) {
                    Ok(v) => respond(out, 200, Some("text/plain"), v.as_bytes()),
                    Err(_) => respond(out, 404, Some("text/plain"), b"unset"),
                }
            }
            "log" => {
                let lines = q.num("lines").unwrap_or(1);
                for n in 0..lines {
                    println!("stdout line {n}");
                    eprintln!("stderr line {n}");
                }
                respond(out, 200, Some("text/plain"), b"logged")
            }
            "loop" => spin(),
            "sleep" => {
                let ms = q.num("ms").unwrap_or(0);
                sleep_ms(ms);
                respond(out, 200, Some("text/plain"), b"slept")
            }
            "alloc" => {
                let mb = q.num("mb").unwrap_or(1);
                alloc(mb as usize);
                let msg = format!("allocated {mb} MiB");
                respond(out, 200, Some("text/plain"), msg.as_bytes())
            }
            "recurse" => {
                let depth = q.num("depth").unwrap_or(10_000_000);
                let r = recurse(black_box(depth));
                let msg = format!("recursed {depth}: {r}");
                respond(out, 200, Some("text/plain"), msg.as_bytes())
            }
            "trap" => panic!("guest asked to trap"),
            "huge" => {
                let mb = q.num("mb").unwrap_or(1);
                huge(out, mb)
            }
            "slow" => {
                let chunks = q.num("chunks").unwrap_or(3);
                let ms = q.num("ms").unwrap_or(100);
                slow(out, chunks, ms)
            }
            "headers" => {
                let method = method_str(&request.method());
                let authority = request.authority().unwrap_or_default();
                let x_test = header_value(&request.headers(), "x-test").unwrap_or_default();
                let text = format!(
                    "method={method}\npath={path_with_query}\nauthority={authority}\nx-test={x_test}\n"
                );
                respond(out, 200, Some("text/plain"), text.as_bytes())
            }
            "status" => match q.num("code").and_then(|c| u16::try_from(c).ok()) {
                Some(code) if (100..=999).contains(&code) => respond(out, code, None, b""),
                _ => respond(out, 400, Some("text/plain"), b"bad status code"),
            },
            _ => respond(out, 404, Some("text/plain"), b"no such test"),
        }
    }
}

// ---------------------------------------------------------------------------
// Query strings
// ---------------------------------------------------------------------------

/// A raw query string (`a=1&b=two`), parsed on demand.
struct Query<'a>(&'a str);

impl Query<'_> {
    /// The first value for `name`, percent-decoded.
    fn get(&self, name: &str) -> Option<String> {
        self.0
            .split('&')
            .filter(|pair| !pair.is_empty())
            .map(|pair| pair.split_once('=').unwrap_or((pair, "")))
            .find(|(k, _)| percent_decode(k) == name)
            .map(|(_, v)| percent_decode(v))
    }

    /// The first value for `name` as an unsigned integer.
    fn num(&self, name: &str) -> Option<u64> {
        self.get(name)?.trim().parse().ok()
    }
}

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
                (Some(h), Some(l)) => {
                    out.push(h << 4 | l);
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

// ---------------------------------------------------------------------------
// Responses and streams
// ---------------------------------------------------------------------------

/// Sends the response head and returns the body plus its output stream.
/// Returns `None` if the host refused the response (nothing more to do then).
fn start_response(
    out: ResponseOutparam,
    status: u16,
    headers: &[(&str, &[u8])],
) -> Option<(OutgoingBody, OutputStream)> {
    let entries: Vec<(String, Vec<u8>)> = headers
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_vec()))
        .collect();
    let fields = match Fields::from_list(&entries) {
        Ok(f) => f,
        Err(_) => Fields::new(),
    };
    let resp = OutgoingResponse::new(fields);
    if resp.set_status_code(status).is_err() {
        let _ = resp.set_status_code(500);
    }
    let body = resp.body().ok()?;
    ResponseOutparam::set(out, Ok(resp));
    let stream = body.write().ok()?;
    Some((body, stream))
}

/// Ends a response body: the stream must be dropped before `finish`.
fn finish(body: OutgoingBody, stream: OutputStream) {
    let _ = stream.blocking_flush();
    drop(stream);
    let _ = OutgoingBody::finish(body, None);
}

/// A complete response with a fixed body (and a matching content-length).
fn respond(out: ResponseOutparam, status: u16, content_type: Option<&str>, body: &[u8]) {
    let len = body.len().to_string();
    let mut headers: Vec<(&str, &[u8])> = Vec::new();
    if let Some(ct) = content_type {
        headers.push(("content-type", ct.as_bytes()));
    }
    if !body.is_empty() {
        headers.push(("content-length", len.as_bytes()));
    }
    let Some((body_res, stream)) = start_response(out, status, &headers) else {
        return;
    };
    if write_all(&stream, body).is_err() {
        return;
    }
    finish(body_res, stream);
}

/// Writes all of `data`, honouring `check-write` (the host may accept only a
/// few bytes at a time) and waiting on the stream's pollable when it is full.
fn write_all(stream: &OutputStream, mut data: &[u8]) -> Result<(), StreamError> {
    while !data.is_empty() {
        let permitted = stream.check_write()?;
        if permitted == 0 {
            stream.subscribe().block();
            continue;
        }
        let n = usize::try_from(permitted)
            .unwrap_or(usize::MAX)
            .min(data.len());
        stream.write(&data[..n])?;
        data = &data[n..];
    }
    Ok(())
}

/// Reads an input stream to the end, calling `f` for each chunk.
fn read_chunks(
    stream: &InputStream,
    mut f: impl FnMut(&[u8]) -> Result<(), StreamError>,
) -> Result<(), StreamError> {
    loop {
        match stream.blocking_read(64 * 1024) {
            Ok(chunk) => f(&chunk)?,
            Err(StreamError::Closed) => return Ok(()),
            Err(e) => return Err(e),
        }
    }
}

fn header_value(fields: &Fields, name: &str) -> Option<String> {
    fields
        .get(name)
        .into_iter()
        .next()
        .map(|v| String::from_utf8_lossy(&v).into_owned())
}

fn method_str(m: &Method) -> String {
    match m {
        Method::Get => "GET".into(),
        Method::Head => "HEAD".into(),
        Method::Post => "POST".into(),
        Method::Put => "PUT".into(),
        Method::Delete => "DELETE".into(),
        Method::Connect => "CONNECT".into(),
        Method::Options => "OPTIONS".into(),
        Method::Trace => "TRACE".into(),
        Method::Patch => "PATCH".into(),
        Method::Other(s) => s.clone(),
    }
}

fn sleep_ms(ms: u64) {
    monotonic_clock::subscribe_duration(ms.saturating_mul(1_000_000)).block();
}

// ---------------------------------------------------------------------------
// Behaviours
// ---------------------------------------------------------------------------

/// Streams the request body back, chunk by chunk, with the request's
/// content-type.
fn echo(request: IncomingRequest, out: ResponseOutparam) {
    let content_type = header_value(&request.headers(), "content-type");
    let mut headers: Vec<(&str, &[u8])> = Vec::new();
    if let Some(ct) = &content_type {
        headers.push(("content-type", ct.as_bytes()));
    }
    let Ok(in_body) = request.consume() else {
        respond(out, 400, Some("text/plain"), b"body already consumed");
        return;
    };
    let Ok(in_stream) = in_body.stream() else {
        respond(out, 400, Some("text/plain"), b"no body stream");
        return;
    };
    let Some((out_body, out_stream)) = start_response(out, 200, &headers) else {
        return;
    };
    let copied = read_chunks(&in_stream, |chunk| {
        write_all(&out_stream, chunk)?;
        out_stream.flush()
    });
    drop(in_stream);
    drop(in_body);
    if copied.is_ok() {
        finish(out_body, out_stream);
    }
}

/// Reads the whole request body and returns its length.
fn read_body_len(request: &IncomingRequest) -> Option<u64> {
    let body = request.consume().ok()?;
    let stream = body.stream().ok()?;
    let mut total = 0u64;
    read_chunks(&stream, |chunk| {
        total += chunk.len() as u64;
        Ok(())
    })
    .ok()?;
    drop(stream);
    drop(body);
    Some(total)
}

/// Pure compute, forever: never calls the host.
fn spin() -> ! {
    let mut x = 0u64;
    loop {
        x = black_box(x.wrapping_mul(6364136223846793005).wrapping_add(1));
    }
}

/// Allocates and touches `mb` MiB. Allocation failure aborts (traps).
fn alloc(mb: usize) {
    let size = mb.saturating_mul(1 << 20);
    let mut v = vec![0u8; size];
    for i in (0..size).step_by(4096) {
        v[i] = 1;
    }
    black_box(&mut v);
}

/// Non-tail recursion: the result of the recursive call is laundered through
/// `black_box` and combined after the call, so it can be neither tail-call
/// optimised nor turned into a loop. Frames live on the wasm (native) stack
/// only, so a deep recursion hits wasmtime's `max_wasm_stack` ("call stack
/// exhausted" trap) rather than the shadow stack in linear memory.
#[inline(never)]
fn recurse(depth: u64) -> u64 {
    if depth == 0 {
        return 1;
    }
    let a = black_box(depth);
    let b = black_box(depth.wrapping_mul(31));
    let r = black_box(recurse(black_box(depth - 1)));
    r.rotate_left((a % 7) as u32) ^ b
}

/// `mb` MiB in 64 KiB chunks, no content-length (chunked encoding).
fn huge(out: ResponseOutparam, mb: u64) {
    let Some((body, stream)) =
        start_response(out, 200, &[("content-type", b"application/octet-stream")])
    else {
        return;
    };
    let chunk = vec![b'x'; 64 * 1024];
    for _ in 0..mb.saturating_mul(16) {
        if write_all(&stream, &chunk).is_err() {
            return;
        }
    }
    finish(body, stream);
}

/// `chunks` lines of `chunk\n`, flushed one by one, `ms` apart.
fn slow(out: ResponseOutparam, chunks: u64, ms: u64) {
    let Some((body, stream)) = start_response(out, 200, &[("content-type", b"text/plain")]) else {
        return;
    };
    for i in 0..chunks {
        if i > 0 {
            sleep_ms(ms);
        }
        if write_all(&stream, b"chunk\n").is_err() || stream.blocking_flush().is_err() {
            return;
        }
    }
    finish(body, stream);
}
