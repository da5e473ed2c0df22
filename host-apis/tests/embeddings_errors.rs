//! Load errors, alternative weight formats, and config handling, using scratch copies of the model folder.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

mod model_common;
use model_common as common;

use std::collections::HashMap;
use std::path::Path;

use common::{copy_configs, cosine, model, model_dir, pool, scratch_dir};
use safetensors::tensor::TensorView;
use safetensors::{Dtype, SafeTensors};
use wafer_host_apis::model::bert::{BertError, BertModel};

fn have_model() -> bool {
    model().is_some()
}

#[test]
fn missing_dir_is_reported_with_its_path() {
    let err = BertModel::load(Path::new("/nonexistent/wafer-bert")).unwrap_err();
    assert!(
        matches!(&err, BertError::MissingFile { path } if path.ends_with("wafer-bert")),
        "{err:?}"
    );
    assert!(err.to_string().contains("/nonexistent/wafer-bert"), "{err}");
}

#[test]
fn missing_weights_file_is_named() {
    if !have_model() {
        return;
    }
    let dir = scratch_dir("no-weights");
    copy_configs(&model_dir(), &dir);
    let err = BertModel::load(&dir).unwrap_err();
    assert!(
        matches!(&err, BertError::MissingFile { path } if path.ends_with("model.safetensors")),
        "{err:?}"
    );
    assert!(err.to_string().contains("model.safetensors"), "{err}");
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn missing_tokenizer_is_named() {
    if !have_model() {
        return;
    }
    let dir = scratch_dir("no-tokenizer");
    copy_configs(&model_dir(), &dir);
    std::fs::remove_file(dir.join("tokenizer.json")).unwrap();
    let err = BertModel::load(&dir).unwrap_err();
    assert!(err.to_string().contains("tokenizer.json"), "{err}");
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn missing_modules_json_is_named() {
    if !have_model() {
        return;
    }
    let dir = scratch_dir("no-modules");
    copy_configs(&model_dir(), &dir);
    std::fs::remove_file(dir.join("modules.json")).unwrap();
    let err = BertModel::load(&dir).unwrap_err();
    assert!(
        matches!(&err, BertError::MissingFile { path } if path.ends_with("modules.json")),
        "{err:?}"
    );
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn wrong_architecture_is_named() {
    if !have_model() {
        return;
    }
    let dir = scratch_dir("wrong-arch");
    copy_configs(&model_dir(), &dir);
    let cfg = std::fs::read_to_string(dir.join("config.json")).unwrap();
    let cfg = cfg
        .replace("\"BertModel\"", "\"LlamaForCausalLM\"")
        .replace("\"model_type\": \"bert\"", "\"model_type\": \"llama\"");
    std::fs::write(dir.join("config.json"), cfg).unwrap();
    let err = BertModel::load(&dir).unwrap_err();
    assert!(matches!(err, BertError::UnsupportedArchitecture { .. }), "{err:?}");
    assert!(err.to_string().contains("llama"), "{err}");
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn unsupported_module_is_named() {
    if !have_model() {
        return;
    }
    let dir = scratch_dir("dense-module");
    copy_configs(&model_dir(), &dir);
    let modules = r#"[{"idx":0,"name":"0","path":"","type":"sentence_transformers.models.Transformer"},
        {"idx":1,"name":"1","path":"1_Pooling","type":"sentence_transformers.models.Pooling"},
        {"idx":2,"name":"2","path":"2_Dense","type":"sentence_transformers.models.Dense"}]"#;
    std::fs::write(dir.join("modules.json"), modules).unwrap();
    let err = BertModel::load(&dir).unwrap_err();
    assert!(err.to_string().contains("sentence_transformers.models.Dense"), "{err}");
    std::fs::remove_dir_all(dir).unwrap();
}

/// Writes a copy of the model's weights with every tensor renamed by `rename` (None drops it)
/// and f32 tensors stored as `dtype`.
fn write_weights(dir: &Path, dtype: Dtype, rename: impl Fn(&str) -> Option<String>) {
    let bytes = std::fs::read(model_dir().join("model.safetensors")).unwrap();
    let st = SafeTensors::deserialize(&bytes).unwrap();
    let mut owned: Vec<(String, Dtype, Vec<usize>, Vec<u8>)> = Vec::new();
    for (name, view) in st.tensors() {
        let Some(new_name) = rename(&name) else {
            continue;
        };
        let data = if view.dtype() == Dtype::F32 && dtype == Dtype::F16 {
            view.data()
                .chunks_exact(4)
                .flat_map(|c| half::f16::from_f32(f32::from_le_bytes(c.try_into().unwrap())).to_le_bytes())
                .collect()
        } else {
            view.data().to_vec()
        };
        let dt = if view.dtype() == Dtype::F32 {
            dtype
        } else {
            view.dtype()
        };
        owned.push((new_name, dt, view.shape().to_vec(), data));
    }
    let views: HashMap<String, TensorView<'_>> = owned
        .iter()
        .map(|(n, dt, shape, data)| (n.clone(), TensorView::new(*dt, shape.clone(), data).unwrap()))
        .collect();
    safetensors::serialize_to_file(views, None, &dir.join("model.safetensors")).unwrap();
}

#[test]
fn f16_weights_with_bert_prefix_load_and_agree() {
    let Some(reference) = model() else { return };
    let dir = scratch_dir("f16-prefixed");
    copy_configs(&model_dir(), &dir);
    write_weights(&dir, Dtype::F16, |n| Some(format!("bert.{n}")));
    let m = BertModel::load(&dir).unwrap();
    let texts = [
        "A man is eating food.",
        "Rust's ownership model guarantees memory safety.",
        "",
    ];
    let (a, _) = m.embed(&texts, &pool()).unwrap();
    let (b, _) = reference.embed(&texts, &pool()).unwrap();
    for (x, y) in a.iter().zip(&b) {
        let c = cosine(x, y);
        assert!(c > 0.999, "f16 vs f32 cosine {c}");
    }
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn missing_tensor_is_named() {
    if !have_model() {
        return;
    }
    let dir = scratch_dir("missing-tensor");
    copy_configs(&model_dir(), &dir);
    write_weights(&dir, Dtype::F32, |n| {
        (n != "encoder.layer.3.output.dense.weight").then(|| n.to_owned())
    });
    let err = BertModel::load(&dir).unwrap_err();
    assert!(
        matches!(&err, BertError::MissingTensor { name } if name == "encoder.layer.3.output.dense.weight"),
        "{err:?}"
    );
    assert!(err.to_string().contains("encoder.layer.3.output.dense.weight"), "{err}");
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn max_seq_length_is_capped_by_position_embeddings() {
    if !have_model() {
        return;
    }
    let dir = scratch_dir("long-max");
    copy_configs(&model_dir(), &dir);
    std::fs::write(
        dir.join("sentence_bert_config.json"),
        r#"{"max_seq_length": 4000, "do_lower_case": false}"#,
    )
    .unwrap();
    // Hard-link the weights rather than copying 90 MB (same filesystem: the temp dir may not be; fall back to copy).
    let src = model_dir().join("model.safetensors");
    if std::fs::hard_link(&src, dir.join("model.safetensors")).is_err() {
        std::fs::copy(&src, dir.join("model.safetensors")).unwrap();
    }
    let m = BertModel::load(&dir).unwrap();
    assert_eq!(m.max_tokens(), 512);
    let long = "token ".repeat(2000);
    assert_eq!(m.count_tokens(&[long.as_str()]).unwrap(), vec![512]);
    let (v, n) = m.embed(&[long.as_str()], &pool()).unwrap();
    assert_eq!((v.len(), n), (1, 512));
    std::fs::remove_dir_all(dir).unwrap();
}
