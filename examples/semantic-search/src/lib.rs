// Run with: wafer build examples/semantic-search && wafer deploy examples/semantic-search && curl 'localhost:8080/search?q=how+do+plants+make+food'
//! Semantic search: rank a small corpus by meaning, not by shared words.
//!
//! `GET /search?q=...&k=3` embeds the query and the corpus (`corpus.txt`,
//! one document per line, compiled in) with `wafer:ai/embeddings` and
//! answers `{"query": ..., "results": [{"text", "score"}, ...]}`, best
//! first. `POST /search` with `{"query": ..., "documents": [...], "k": 3}`
//! ranks your own documents instead.

use serde::Deserialize;
use serde_json::json;
use wafer_sdk::embeddings::{self, cosine};
use wafer_sdk::http::{Request, Response};

const CORPUS: &str = include_str!("../corpus.txt");
/// Documents per POST: the host takes at most 256 texts per call.
const MAX_DOCUMENTS: usize = 255;

#[derive(Deserialize)]
struct SearchRequest {
    query: String,
    documents: Vec<String>,
    k: Option<usize>,
}

fn model() -> String {
    std::env::var("MODEL").unwrap_or_else(|_| "all-minilm-l6-v2".into())
}

/// Documents ranked by cosine similarity to the query, best first.
fn rank(query: &str, documents: &[&str], k: usize) -> Result<Vec<(usize, f32)>, wafer_sdk::llm::LlmError> {
    let mut texts = vec![query];
    texts.extend_from_slice(documents);
    let batch = embeddings::embed(&model(), &texts)?;
    let Some((q, docs)) = batch.vectors.split_first() else { return Ok(Vec::new()) };
    let mut scored: Vec<(usize, f32)> = docs.iter().map(|d| cosine(q, d)).enumerate().collect();
    scored.sort_by(|a, b| b.1.total_cmp(&a.1));
    scored.truncate(k);
    Ok(scored)
}

fn handle(mut req: Request) -> Response {
    let (query, documents, k): (String, Vec<String>, usize) = match req.method() {
        "GET" => match req.query_param("q") {
            Some(q) => {
                let k = req.query_param("k").and_then(|k| k.parse().ok()).unwrap_or(3);
                (q, CORPUS.lines().filter(|l| !l.trim().is_empty()).map(str::to_owned).collect(), k)
            }
            None => return Response::text(200, "GET /search?q=QUERY&k=3, or POST {\"query\", \"documents\", \"k\"}\n"),
        },
        "POST" => match req.json::<SearchRequest>() {
            Ok(r) if r.documents.len() <= MAX_DOCUMENTS => (r.query, r.documents, r.k.unwrap_or(3)),
            Ok(r) => {
                return Response::json(400, &json!({ "error": format!("{} documents; at most {MAX_DOCUMENTS}", r.documents.len()) }));
            }
            Err(e) => return Response::json(400, &json!({ "error": e.to_string() })),
        },
        _ => return Response::text(405, "use GET or POST\n"),
    };
    let refs: Vec<&str> = documents.iter().map(String::as_str).collect();
    match rank(&query, &refs, k) {
        Ok(ranked) => {
            let results: Vec<_> =
                ranked.iter().map(|&(i, score)| json!({ "text": documents[i], "score": score })).collect();
            Response::json(200, &json!({ "query": query, "results": results }))
        }
        Err(e) => Response::json(e.http_status(), &json!({ "error": { "code": e.code(), "message": e.message() } })),
    }
}

wafer_sdk::http_handler!(handle);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_corpus_is_not_empty_and_get_without_query_explains() {
        assert!(CORPUS.lines().count() >= 10);
        assert_eq!(handle(Request::new("GET", "/search")).status(), 200);
    }

    #[test]
    fn too_many_documents_is_400() {
        let docs: Vec<String> = (0..300).map(|i| i.to_string()).collect();
        let body = json!({ "query": "x", "documents": docs }).to_string();
        assert_eq!(handle(Request::new("POST", "/search").with_body(body)).status(), 400);
    }
}
