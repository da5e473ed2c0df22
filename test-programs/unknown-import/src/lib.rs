//! `wafer-test-unknown-import`: a wasi:http handler that also imports an
//! interface no Wafer host provides, `acme:missing/greeter`. Deploying it must
//! fail at link/instantiate time with a clear "unknown import" error.
//!
//! Build: `cd test-programs && cargo build --target wasm32-wasip2 --release`
//! Output: `test-programs/target/wasm32-wasip2/release/wafer_test_unknown_import.wasm`

use wasip2::exports::http::incoming_handler::Guest;
use wasip2::http::types::{
    Fields, IncomingRequest, OutgoingBody, OutgoingResponse, ResponseOutparam,
};

wit_bindgen::generate!({
    inline: "
        package acme:missing;

        interface greeter {
            greet: func(name: string) -> string;
        }

        world w {
            import greeter;
        }
    ",
    world: "w",
});

struct Handler;

wasip2::http::proxy::export!(Handler);

impl Guest for Handler {
    fn handle(_request: IncomingRequest, out: ResponseOutparam) {
        let greeting = acme::missing::greeter::greet("wafer");
        let resp = OutgoingResponse::new(Fields::new());
        let Ok(body) = resp.body() else { return };
        ResponseOutparam::set(out, Ok(resp));
        if let Ok(stream) = body.write() {
            let _ = stream.blocking_write_and_flush(greeting.as_bytes());
            drop(stream);
        }
        let _ = OutgoingBody::finish(body, None);
    }
}
