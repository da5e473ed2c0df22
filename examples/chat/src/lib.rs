// Run with: wafer build examples/chat && wafer deploy examples/chat && curl -N -d '{"messages":[{"role":"user","content":"What is the capital of France?"}]}' localhost:8080/chat
//! Chat with a model on the node, streamed back as it is generated.
//!
//! `POST /chat` with `{"messages": [{"role": "user", "content": "..."}],
//! "max_tokens": 128, "temperature": 0.7, "seed": 1}` (all but `messages`
//! optional) answers with server-sent events: one `data: {"text": "..."}`
//! per piece of text, then `event: usage` with
//! `{"finish": "stop", "prompt_tokens": 37, "completion_tokens": 9}`.
//! `?stream=false` answers one JSON object instead. `GET /chat` prints
//! usage.

use serde::Deserialize;
use serde_json::json;
use wafer_sdk::http::{self, BodyWriter, Request, Response};
use wafer_sdk::llm::{self, FinishReason, LlmError, Message, Params};

const USAGE: &str = "\
Chat with a model running on Wafer.

POST /chat {\"messages\": [{\"role\": \"user\", \"content\": \"Hello!\"}], \"max_tokens\": 128}
  -> text/event-stream: data: {\"text\": ...} ... then event: usage
POST /chat?stream=false -> {\"text\": ..., \"finish\": ..., \"usage\": {...}}
";

#[derive(Deserialize)]
struct ChatRequest {
    messages: Vec<Message>,
    max_tokens: Option<u32>,
    temperature: Option<f32>,
    top_p: Option<f32>,
    seed: Option<u64>,
    #[serde(default)]
    stop: Vec<String>,
}

fn model() -> String {
    std::env::var("MODEL").unwrap_or_else(|_| "smollm2-135m-instruct".into())
}

fn params(req: &ChatRequest) -> Params {
    let mut p = Params::new().max_tokens(req.max_tokens.unwrap_or(128));
    if let Some(t) = req.temperature {
        p = p.temperature(t);
    }
    if let Some(t) = req.top_p {
        p = p.top_p(t);
    }
    if let Some(s) = req.seed {
        p = p.seed(s);
    }
    for s in &req.stop {
        p = p.stop(s.clone());
    }
    p
}

fn error(e: &LlmError) -> Response {
    Response::json(e.http_status(), &json!({ "error": { "code": e.code(), "message": e.message() } }))
}

fn finish_name(f: FinishReason) -> &'static str {
    match f {
        FinishReason::Stop => "stop",
        FinishReason::Length => "length",
    }
}

fn handle(mut req: Request) -> Response {
    if req.method() == "GET" {
        return Response::text(200, USAGE);
    }
    if req.method() != "POST" {
        return Response::text(405, "use POST (or GET for usage)\n");
    }
    let mut chat: ChatRequest = match req.json() {
        Ok(c) => c,
        Err(e) => return Response::json(400, &json!({ "error": { "code": "bad_request", "message": e.to_string() } })),
    };
    // Small models answer far better with a short system prompt than with
    // the long default their chat template would add.
    if chat.messages.first().is_none_or(|m| m.role != "system") {
        chat.messages.insert(0, Message::system("You are a helpful assistant."));
    }
    let model = model();
    let params = params(&chat);
    if req.query_param("stream").as_deref() == Some("false") {
        return match llm::chat(&model, &chat.messages, &params) {
            Ok(c) => Response::json(
                200,
                &json!({ "text": c.text, "finish": finish_name(c.finish), "usage": {
                    "prompt_tokens": c.usage.prompt_tokens, "completion_tokens": c.usage.completion_tokens } }),
            ),
            Err(e) => error(&e),
        };
    }
    // Start the generation before the head goes out, so a bad request still
    // gets a proper status code.
    let stream = match llm::chat_stream(&model, &chat.messages, &params) {
        Ok(s) => s,
        Err(e) => return error(&e),
    };
    http::stream(200, &[("content-type", "text/event-stream"), ("cache-control", "no-cache")], move |out| {
        send_events(stream, out)
    })
}

fn send_events(mut stream: llm::Stream, out: &mut BodyWriter) -> Result<(), wafer_sdk::Error> {
    for piece in &mut stream {
        match piece {
            Ok(text) => {
                out.write(format!("data: {}\n\n", json!({ "text": text })))?;
                out.flush()?;
            }
            Err(e) => {
                out.write(format!("event: error\ndata: {}\n\n", json!({ "code": e.code(), "message": e.message() })))?;
                return Ok(());
            }
        }
    }
    if let Some((finish, usage)) = stream.finish() {
        let usage = json!({ "finish": finish_name(finish), "prompt_tokens": usage.prompt_tokens,
            "completion_tokens": usage.completion_tokens });
        out.write(format!("event: usage\ndata: {usage}\n\n"))?;
    }
    Ok(())
}

wafer_sdk::http_handler!(handle);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn get_prints_usage_and_bad_json_is_400() {
        assert_eq!(handle(Request::new("GET", "/chat")).status(), 200);
        let bad = Request::new("POST", "/chat").with_body("{not json");
        assert_eq!(handle(bad).status(), 400);
    }

    #[test]
    fn natively_the_model_is_unavailable() {
        let req = Request::new("POST", "/chat?stream=false")
            .with_body(r#"{"messages":[{"role":"user","content":"hi"}]}"#);
        assert_eq!(handle(req).status(), 500);
    }
}
