//! Write [Wafer](https://github.com/wafer-dev/wafer) functions in Rust.
//!
//! A Wafer function is a WebAssembly component (the `wasi:http/proxy` world)
//! that handles one HTTP request per invocation. This crate hides the WASI
//! plumbing behind a small, synchronous API: write a function from
//! [`Request`](http::Request) to [`Response`](http::Response) and register it
//! with [`http_handler!`].
//!
//! ```
//! use wafer_sdk::http::{Request, Response};
//!
//! fn handle(req: Request) -> Response {
//!     Response::text(200, format!("hello {}", req.path()))
//! }
//!
//! wafer_sdk::http_handler!(handle);
//!
//! // Handlers are plain functions, so they can be unit-tested natively:
//! let resp = handle(Request::new("GET", "/world"));
//! assert_eq!(resp.status(), 200);
//! assert_eq!(resp.body(), Some(&b"hello /world"[..]));
//! ```
//!
//! # Building
//!
//! A function is a `cdylib` crate compiled for `wasm32-wasip2`:
//!
//! ```toml
//! [lib]
//! crate-type = ["cdylib"]
//!
//! [dependencies]
//! wafer-sdk = "0.1"
//! ```
//!
//! ```text
//! cargo build --target wasm32-wasip2 --release
//! ```
//!
//! The output, `target/wasm32-wasip2/release/<name>.wasm`, is a component that
//! exports `wasi:http/incoming-handler@0.2.12`.
//!
//! # The environment
//!
//! * **Configuration**: a function's `[config]` values arrive as environment
//!   variables; read them with [`std::env::var`].
//! * **Logs**: anything written to stdout/stderr (`println!`, `eprintln!`) is
//!   captured as the function's logs.
//! * **Panics** trap the instance; Wafer answers the request with a 500 (or
//!   cuts a response that was already streaming).
//! * **Request bodies** are read into memory on demand and are capped at
//!   [`DEFAULT_MAX_BODY_SIZE`](http::DEFAULT_MAX_BODY_SIZE) bytes by default
//!   (see [`Request::set_max_body_size`](http::Request::set_max_body_size)).
//! * **Streaming responses**: see [`http::stream`].
//! * **Tensors**: [`tensor::Tensor`] runs tensor operations on the host's
//!   devices (CPU or GPU) through the `wafer:ai/tensor` import.
//! * **Models**: [`llm::chat`], [`llm::infer`] and their streaming forms
//!   generate text, and [`embeddings::embed`] embeds it, on the models the
//!   node serves. A function names the models it may use in its manifest
//!   (`models = ["smollm2-135m-instruct"]`).
//!
//! # Features
//!
//! * `json` (off by default): `Request::json` and `Response::json`, using
//!   `serde` and `serde_json`.

pub mod embeddings;
mod error;
pub mod http;
pub mod llm;
pub mod router;
pub mod tensor;

/// Bindings for the `wafer:ai` imports, generated from `host-apis/wit`.
/// Needed on every target: off wasm32 the generated imports are never
/// reached, because every entry point checks for the host first.
#[allow(missing_docs, unsafe_code, clippy::all)]
mod bindings {
    wit_bindgen::generate!({
        path: "../../host-apis/wit",
        world: "imports",
    });
}
#[cfg(target_arch = "wasm32")]
mod wasm;

pub use error::Error;

/// Registers a function as the component's HTTP handler.
///
/// The argument is anything callable as `FnOnce(Request) -> Response`,
/// usually the name of a function. Invoke the macro exactly once per crate, at
/// item level.
///
/// ```
/// use wafer_sdk::http::{Request, Response};
///
/// fn handle(_req: Request) -> Response {
///     Response::new(204)
/// }
///
/// wafer_sdk::http_handler!(handle);
/// ```
///
/// When compiling for `wasm32` this exports `wasi:http/incoming-handler`.
/// On any other target it only type-checks the handler, so crates using it
/// still build (and their tests run) natively.
#[macro_export]
macro_rules! http_handler {
    ($handler:expr $(,)?) => {
        #[cfg(target_arch = "wasm32")]
        const _: () = {
            struct __WaferHttpHandler;

            impl $crate::__private::wasip2::exports::http::incoming_handler::Guest for __WaferHttpHandler {
                fn handle(
                    request: $crate::__private::wasip2::http::types::IncomingRequest,
                    response_out: $crate::__private::wasip2::http::types::ResponseOutparam,
                ) {
                    $crate::__private::serve(request, response_out, $handler)
                }
            }

            $crate::__private::wasip2::http::proxy::export!(__WaferHttpHandler);
        };

        #[cfg(not(target_arch = "wasm32"))]
        const _: () = {
            fn __wafer_check_handler<F>(_: F)
            where
                F: FnOnce($crate::http::Request) -> $crate::http::Response,
            {
            }
            let _ = || __wafer_check_handler($handler);
        };
    };
}

/// Implementation details of [`http_handler!`]; not a public API.
#[doc(hidden)]
pub mod __private {
    #[cfg(target_arch = "wasm32")]
    pub use crate::wasm::serve;
    #[cfg(target_arch = "wasm32")]
    pub use wasip2;
}
