// Run with: wafer build examples/hello && wafer deploy examples/hello && curl localhost:8080/hello
//! A minimal Wafer function: answers `GET` with a greeting and the path.
//!
//! The greeting comes from the `GREETING` config value (functions receive
//! their `[config]` as environment variables), falling back to `Hello`.

use wafer_sdk::http::{Request, Response};

fn handle(req: Request) -> Response {
    if req.method() != "GET" {
        return Response::text(405, "only GET is supported\n").with_header("allow", "GET");
    }
    let greeting = std::env::var("GREETING").unwrap_or_else(|_| "Hello".to_string());
    Response::text(200, format!("{greeting} from Wafer! path={}\n", req.path()))
}

wafer_sdk::http_handler!(handle);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn greets_with_the_path() {
        let resp = handle(Request::new("GET", "/hello/there"));
        assert_eq!(resp.status(), 200);
        let body = String::from_utf8_lossy(resp.body().unwrap_or_default()).into_owned();
        assert!(body.contains("from Wafer! path=/hello/there"), "{body}");
    }

    #[test]
    fn rejects_other_methods() {
        assert_eq!(handle(Request::new("POST", "/hello")).status(), 405);
    }
}
