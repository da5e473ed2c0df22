//! Placeholder while the encoder lands.
#![allow(missing_docs, dead_code)]
use std::path::Path;
#[derive(Debug, thiserror::Error)]
pub enum BertError {
    #[error("encoders are not built yet")]
    NotBuilt,
}
#[derive(Debug)]
pub struct BertModel;
impl BertModel {
    pub fn load(_: &Path) -> Result<Self, BertError> { Err(BertError::NotBuilt) }
    pub fn dim(&self) -> usize { 0 }
    pub fn max_tokens(&self) -> usize { 0 }
    pub fn count_tokens(&self, _: &[&str]) -> Result<Vec<usize>, BertError> { Err(BertError::NotBuilt) }
    pub fn embed(&self, _: &[&str], _: &rayon::ThreadPool) -> Result<(Vec<Vec<f32>>, usize), BertError> { Err(BertError::NotBuilt) }
}
