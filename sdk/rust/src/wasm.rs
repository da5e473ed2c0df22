//! The glue between the SDK's types and `wasi:http` (wasm32 only).

use wasip2::http::types::{
    Fields, IncomingBody, IncomingRequest, Method, OutgoingBody, OutgoingResponse, ResponseOutparam,
};
use wasip2::io::streams::{OutputStream, StreamError};

use crate::Error;
use crate::http::{BodyWriter, Request, Response, ResponseBody};

/// How much to ask the host for per read.
const READ_CHUNK: u64 = 64 * 1024;

/// Runs `handler` for one incoming request and sends its response.
pub fn serve<F>(incoming: IncomingRequest, out: ResponseOutparam, handler: F)
where
    F: FnOnce(Request) -> Response,
{
    let headers = incoming
        .headers()
        .entries()
        .into_iter()
        .collect::<Vec<(String, Vec<u8>)>>();
    let request = Request::from_parts(
        method_name(incoming.method()),
        incoming.path_with_query().unwrap_or_else(|| "/".to_string()),
        incoming.authority(),
        headers,
        incoming,
    );
    send(handler(request), out);
}

fn method_name(method: Method) -> String {
    match method {
        Method::Get => "GET".into(),
        Method::Head => "HEAD".into(),
        Method::Post => "POST".into(),
        Method::Put => "PUT".into(),
        Method::Delete => "DELETE".into(),
        Method::Connect => "CONNECT".into(),
        Method::Options => "OPTIONS".into(),
        Method::Trace => "TRACE".into(),
        Method::Patch => "PATCH".into(),
        Method::Other(other) => other,
    }
}

fn send(response: Response, out: ResponseOutparam) {
    let Response {
        status,
        mut headers,
        body,
    } = response;
    if let ResponseBody::Bytes(bytes) = &body {
        let has_length = headers.iter().any(|(k, _)| k.eq_ignore_ascii_case("content-length"));
        if !bytes.is_empty() && !has_length {
            headers.push(("content-length".into(), bytes.len().to_string()));
        }
    }
    let entries: Vec<(String, Vec<u8>)> = headers.into_iter().map(|(k, v)| (k, v.into_bytes())).collect();
    let fields = match Fields::from_list(&entries) {
        Ok(fields) => fields,
        Err(e) => {
            eprintln!("wafer-sdk: the handler's response headers were rejected: {e}");
            return send_error(out, "invalid response header");
        }
    };
    let response = OutgoingResponse::new(fields);
    if !(100..=999).contains(&status) || response.set_status_code(status).is_err() {
        eprintln!("wafer-sdk: the handler returned an invalid status code {status}");
        return send_error(out, "invalid response status");
    }
    let Ok(out_body) = response.body() else {
        return send_error(out, "response body unavailable");
    };
    ResponseOutparam::set(out, Ok(response));
    let Ok(stream) = out_body.write() else {
        eprintln!("wafer-sdk: the response body stream is unavailable");
        return;
    };

    let mut writer = BodyWriter::host(stream);
    let result = match body {
        ResponseBody::Bytes(bytes) => writer.write(bytes),
        ResponseBody::Stream(produce) => produce(&mut writer),
    };
    let result = result.and_then(|()| writer.flush());
    // The stream is a child of the body: it must go before `finish`.
    drop(writer);
    match result {
        Ok(()) => {
            if let Err(e) = OutgoingBody::finish(out_body, None) {
                eprintln!("wafer-sdk: finishing the response body failed: {e}");
            }
        }
        // Dropping the body without `finish` tells the host it is incomplete.
        Err(Error::Closed) => {}
        Err(e) => eprintln!("wafer-sdk: writing the response body failed: {e}"),
    }
}

/// A plain-text 500, for when the handler's response can't be sent.
fn send_error(out: ResponseOutparam, message: &str) {
    let entries = [
        ("content-type".to_string(), b"text/plain".to_vec()),
        ("content-length".to_string(), message.len().to_string().into_bytes()),
    ];
    let fields = Fields::from_list(&entries).unwrap_or_else(|_| Fields::new());
    let response = OutgoingResponse::new(fields);
    let _ = response.set_status_code(500);
    let Ok(body) = response.body() else {
        return;
    };
    ResponseOutparam::set(out, Ok(response));
    if let Ok(stream) = body.write() {
        let ok = write_all(&stream, message.as_bytes()).is_ok() && flush(&stream).is_ok();
        drop(stream);
        if ok {
            let _ = OutgoingBody::finish(body, None);
        }
    }
}

fn stream_error(e: StreamError) -> Error {
    match e {
        StreamError::Closed => Error::Closed,
        StreamError::LastOperationFailed(e) => Error::Io(e.to_debug_string()),
    }
}

/// Writes all of `data`, honouring `check-write` and waiting on the stream's
/// pollable while the host's buffer is full.
pub(crate) fn write_all(stream: &OutputStream, mut data: &[u8]) -> Result<(), Error> {
    while !data.is_empty() {
        let permitted = stream.check_write().map_err(stream_error)?;
        if permitted == 0 {
            stream.subscribe().block();
            continue;
        }
        let n = usize::try_from(permitted).unwrap_or(usize::MAX).min(data.len());
        stream.write(&data[..n]).map_err(stream_error)?;
        data = &data[n..];
    }
    Ok(())
}

pub(crate) fn flush(stream: &OutputStream) -> Result<(), Error> {
    stream.blocking_flush().map_err(stream_error)
}

/// Reads the whole body of `incoming`, failing once it exceeds `limit` bytes.
pub(crate) fn read_body(incoming: &IncomingRequest, limit: usize, declared_len: Option<u64>) -> Result<Vec<u8>, Error> {
    if declared_len.is_some_and(|len| len > limit as u64) {
        return Err(Error::BodyTooLarge { limit });
    }
    let body = incoming.consume().map_err(|()| Error::BodyUnavailable)?;
    let stream = body.stream().map_err(|()| Error::BodyUnavailable)?;
    let capacity = declared_len
        .and_then(|len| usize::try_from(len).ok())
        .unwrap_or(0)
        .min(limit);
    let mut bytes = Vec::with_capacity(capacity);
    let result = loop {
        match stream.blocking_read(READ_CHUNK) {
            Ok(chunk) => {
                if bytes.len() + chunk.len() > limit {
                    break Err(Error::BodyTooLarge { limit });
                }
                bytes.extend_from_slice(&chunk);
            }
            Err(StreamError::Closed) => break Ok(()),
            Err(e) => break Err(stream_error(e)),
        }
    };
    // The stream is a child of the body: it must go first.
    drop(stream);
    if result.is_ok() {
        drop(IncomingBody::finish(body));
    }
    result.map(|()| bytes)
}
