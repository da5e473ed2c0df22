//! Compares the Rust encoder with the NumPy float64 reference in `fixtures/embeddings.json`
//! (regenerate with `fixtures/make_reference.py`).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

mod model_common;
use model_common as common;

use common::{cosine, model, pool};
use serde::Deserialize;

#[derive(Deserialize)]
struct Fixture {
    max_seq_length: usize,
    cases: Vec<Case>,
}

#[derive(Deserialize)]
struct Case {
    text: String,
    ids: Vec<u32>,
    embedding: Vec<f32>,
}

fn fixture() -> Fixture {
    serde_json::from_str(include_str!("fixtures/minilm/embeddings.json")).unwrap()
}

#[test]
fn model_is_send_sync_and_debug_is_small() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<wafer_host_apis::model::bert::BertModel>();
    let Some(m) = model() else { return };
    let dbg = format!("{m:?}");
    assert!(dbg.len() < 400, "{dbg}");
    assert!(dbg.contains("hidden: 384"), "{dbg}");
}

#[test]
fn dims_and_limits() {
    let Some(m) = model() else { return };
    assert_eq!(m.dim(), 384);
    assert_eq!(m.max_tokens(), fixture().max_seq_length);
    assert_eq!(m.max_tokens(), 256);
}

#[test]
fn token_ids_and_counts_match_reference() {
    let Some(m) = model() else { return };
    let fx = fixture();
    let texts: Vec<&str> = fx.cases.iter().map(|c| c.text.as_str()).collect();
    let counts = m.count_tokens(&texts).unwrap();
    for (case, n) in fx.cases.iter().zip(&counts) {
        assert_eq!(*n, case.ids.len(), "token count of {:?}", case.text);
    }
    // The long text must have been truncated to the limit.
    assert_eq!(counts.iter().max(), Some(&256));
    let ids = m.token_ids(&texts).unwrap();
    for (case, got) in fx.cases.iter().zip(&ids) {
        assert_eq!(got, &case.ids, "token ids of {:?}", case.text);
    }
    let (_, total) = m.embed(&texts, &pool()).unwrap();
    assert_eq!(total, fx.cases.iter().map(|c| c.ids.len()).sum::<usize>());
}

#[test]
fn embeddings_match_reference() {
    let Some(m) = model() else { return };
    let fx = fixture();
    let texts: Vec<&str> = fx.cases.iter().map(|c| c.text.as_str()).collect();
    let (vecs, _) = m.embed(&texts, &pool()).unwrap();
    assert_eq!(vecs.len(), fx.cases.len());
    let mut min = f64::INFINITY;
    for (case, v) in fx.cases.iter().zip(&vecs) {
        assert_eq!(v.len(), 384);
        let c = cosine(v, &case.embedding);
        let norm: f32 = v.iter().map(|x| x * x).sum::<f32>().sqrt();
        assert!((norm - 1.0).abs() < 1e-5, "not normalised: {norm}");
        eprintln!(
            "1-cos {:.3e}  {:?}",
            1.0 - c,
            case.text.chars().take(40).collect::<String>()
        );
        min = min.min(c);
        assert!(c >= 0.999, "cosine {c} for {:?}", case.text);
    }
    eprintln!("min cosine vs reference: {min:.9} (1-min = {:.3e})", 1.0 - min);
}

#[test]
fn batched_equals_one_at_a_time() {
    let Some(m) = model() else { return };
    let fx = fixture();
    let texts: Vec<&str> = fx.cases.iter().map(|c| c.text.as_str()).collect();
    let p = pool();
    let (batched, total) = m.embed(&texts, &p).unwrap();
    let mut single_total = 0;
    for (text, b) in texts.iter().zip(&batched) {
        let (one, n) = m.embed(&[text], &p).unwrap();
        single_total += n;
        let max_diff = one[0].iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0.0f32, f32::max);
        assert!(max_diff < 1e-5, "batched vs single differ by {max_diff} for {text:?}");
    }
    assert_eq!(total, single_total);
    // Order is preserved even when the batch is reversed.
    let rev: Vec<&str> = texts.iter().rev().copied().collect();
    let (rv, _) = m.embed(&rev, &p).unwrap();
    for (a, b) in rv.iter().rev().zip(&batched) {
        assert!(cosine(a, b) > 0.99999);
    }
}

#[test]
fn single_thread_pool_gives_the_same_vectors() {
    let Some(m) = model() else { return };
    let texts = [
        "A man is eating food.",
        "Hello!",
        "Rust is a systems programming language.",
    ];
    let one = rayon::ThreadPoolBuilder::new().num_threads(1).build().unwrap();
    let (a, _) = m.embed(&texts, &one).unwrap();
    let (b, _) = m.embed(&texts, &pool()).unwrap();
    for (x, y) in a.iter().zip(&b) {
        assert!(cosine(x, y) > 0.99999);
    }
}

#[test]
fn semantic_sanity() {
    let Some(m) = model() else { return };
    let texts = [
        "A man is eating food.",
        "A man is eating a piece of bread.",
        "A man is riding a horse.",
    ];
    let (v, _) = m.embed(&texts, &pool()).unwrap();
    let near = cosine(&v[0], &v[1]);
    let far = cosine(&v[0], &v[2]);
    assert!(near > far + 0.2, "near {near} far {far}");
}

#[test]
fn empty_input_list_gives_empty_output() {
    let Some(m) = model() else { return };
    let (v, n) = m.embed(&[], &pool()).unwrap();
    assert!(v.is_empty());
    assert_eq!(n, 0);
    assert!(m.count_tokens(&[]).unwrap().is_empty());
}

#[test]
fn large_batch_spans_several_passes() {
    // More tokens than one encoder pass packs (4096), so grouping must keep order and results.
    let Some(m) = model() else { return };
    let long = "word ".repeat(300);
    let texts: Vec<&str> = (0..20)
        .map(|i| {
            if i % 2 == 0 {
                long.as_str()
            } else {
                "A man is eating food."
            }
        })
        .collect();
    let (v, total) = m.embed(&texts, &pool()).unwrap();
    assert_eq!(v.len(), 20);
    assert_eq!(total, 10 * 256 + 10 * 8);
    let (short, _) = m.embed(&["A man is eating food."], &pool()).unwrap();
    let (lng, _) = m.embed(&[long.as_str()], &pool()).unwrap();
    for (i, x) in v.iter().enumerate() {
        let want = if i % 2 == 0 { &lng[0] } else { &short[0] };
        assert!(cosine(x, want) > 0.99999, "item {i}");
    }
}
