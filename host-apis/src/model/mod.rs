//! The model engine behind `wafer:ai/llm` and `wafer:ai/embeddings`.
//!
//! Layers, bottom up: [`gguf`] files and [`quant`] weight blocks with their
//! matrix kernels; [`tokenizer`]s and [`chat_template`]s; the models
//! ([`llama`] decoders, [`bert`] encoders); the [`kv_cache`], [`sampler`]
//! and the continuous-batching [`scheduler`] of each decoder replica; the
//! [`embedder`] worker of each encoder; and [`Models`], the node's named
//! models as `[models.NAME]` in its `wafer.toml` configures them.
//!
//! ```no_run
//! use std::collections::BTreeMap;
//! use std::time::{Duration, Instant};
//! use wafer_host_apis::model::{ModelConfig, Models, SamplingParams};
//!
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! let mut configs = BTreeMap::new();
//! configs.insert("smollm2".to_string(), ModelConfig::at("models/SmolLM2-135M-Instruct.Q4_1.gguf"));
//! let models = Models::load(&configs, None)?;
//! let llm = models.llm("smollm2")?;
//! let prompt = llm.encode_prompt("The capital of France is")?;
//! let params = SamplingParams { temperature: 0.0, max_tokens: 8, ..Default::default() };
//! let deadline = Instant::now() + Duration::from_secs(30);
//! let mut events = llm.generate("tenant-a", prompt, params, deadline)?;
//! let done = wafer_host_apis::model::scheduler::collect(&mut events).await.map_err(|e| e.0)?;
//! println!("{} ({} tokens)", done.text, done.usage.completion);
//! # Ok(()) }
//! ```

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Deserialize;

pub mod bert;
pub mod chat_template;
pub mod embedder;
pub mod gguf;
pub mod hf;
pub mod kernels;
pub mod kv_cache;
pub mod llama;
pub mod quant;
pub mod sampler;
pub mod scheduler;
pub mod tokenizer;

pub use chat_template::{ChatMessage, ChatTemplate};
pub use embedder::Embedder;
pub use sampler::SamplingParams;
pub use scheduler::{EngineError, FinishReason, GenEvent, GenProgress, Scheduler, SchedulerConfig, TokenUsage};

/// A model that could not be loaded or used.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    /// Reading a GGUF file failed.
    #[error(transparent)]
    Gguf(#[from] gguf::GgufError),
    /// A weight block format problem.
    #[error(transparent)]
    Quant(#[from] quant::QuantError),
    /// The tokenizer could not be built or used.
    #[error(transparent)]
    Tokenizer(#[from] tokenizer::TokenizerError),
    /// The chat template failed.
    #[error(transparent)]
    Template(#[from] chat_template::TemplateError),
    /// Loading an encoder failed.
    #[error(transparent)]
    Bert(#[from] bert::BertError),
    /// Something the engine does not support (architecture, device, ...).
    #[error("unsupported: {0}")]
    Unsupported(String),
    /// Inconsistent hyper-parameters or inputs.
    #[error("invalid model: {0}")]
    Invalid(String),
    /// No model of that name is loaded.
    #[error("no model named `{0}` is loaded on this node")]
    Unknown(String),
    /// The model is of the other kind (an encoder asked to generate...).
    #[error("model `{name}` is {actual} model, not {wanted}")]
    WrongKind {
        /// The model.
        name: String,
        /// What it is.
        actual: &'static str,
        /// What the caller needs.
        wanted: &'static str,
    },
    /// A configuration value is wrong; names the model and key.
    #[error("[models.{model}] {message}")]
    Config {
        /// The model's name.
        model: String,
        /// What is wrong.
        message: String,
    },
    /// Starting a worker thread failed.
    #[error("starting the model's worker: {0}")]
    Thread(#[from] std::io::Error),
}

/// File formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ModelFormat {
    /// A GGUF file (decoders).
    Gguf,
    /// A folder with `config.json`, `*.safetensors`, `tokenizer.json`:
    /// a decoder when `config.json`'s `model_type` is llama, mistral or
    /// qwen2, else a BERT encoder (sentence-transformers layout).
    Safetensors,
}

/// `[models.NAME]` in a node's `wafer.toml`.
#[derive(Debug, Clone, Deserialize, serde::Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ModelConfig {
    /// The GGUF file or safetensors folder. Relative paths are resolved
    /// against the node's models folder.
    pub path: PathBuf,
    /// Inferred from `path` when left out (`.gguf` → gguf, a folder →
    /// safetensors).
    pub format: Option<ModelFormat>,
    /// `cpu` (the default). CUDA inference of models is not available yet.
    #[serde(default = "default_device")]
    pub device: String,
    /// Schedulers (each with its own cache) sharing the weights.
    #[serde(default = "default_replicas")]
    pub replicas: usize,
    /// Sequences decoding together per replica. Default 16.
    pub max_batch: Option<usize>,
    /// Longest sequence (prompt + completion). Default 4096, capped by the
    /// model's context length.
    pub max_context: Option<usize>,
    /// Cap on a request's `max-tokens`. Default 1024.
    pub max_tokens: Option<u32>,
    /// Key/value cache per replica, in MiB. Default 256.
    pub kv_cache_mib: Option<usize>,
    /// Requests waiting per replica before new ones are refused. Default 256.
    pub queue_depth: Option<usize>,
    /// Longest wait in the queue, in seconds. Default 30.
    pub queue_timeout_secs: Option<u64>,
    /// Tokens fed per step (decode tokens plus prompt chunks). Default 128.
    pub step_tokens: Option<usize>,
}

fn default_device() -> String {
    "cpu".into()
}

fn default_replicas() -> usize {
    1
}

/// Default cap on `max-tokens` per request.
pub const DEFAULT_MAX_TOKENS_CAP: u32 = 1024;
/// Default longest sequence: SmolLM2 and Qwen2.5 train on 8k-32k, but a
/// sequence's cache is reserved up front, so the default is modest.
pub const DEFAULT_MAX_CONTEXT: usize = 4096;

impl ModelConfig {
    /// A config for `path` with every default.
    pub fn at(path: impl Into<PathBuf>) -> Self {
        ModelConfig {
            path: path.into(),
            format: None,
            device: default_device(),
            replicas: 1,
            max_batch: None,
            max_context: None,
            max_tokens: None,
            kv_cache_mib: None,
            queue_depth: None,
            queue_timeout_secs: None,
            step_tokens: None,
        }
    }

    fn format(&self) -> ModelFormat {
        self.format.unwrap_or(if self.path.is_dir() {
            ModelFormat::Safetensors
        } else {
            ModelFormat::Gguf
        })
    }

    fn scheduler(&self) -> SchedulerConfig {
        let d = SchedulerConfig::default();
        SchedulerConfig {
            max_batch: self.max_batch.unwrap_or(d.max_batch).max(1),
            step_tokens: self.step_tokens.unwrap_or(d.step_tokens).max(1),
            queue_depth: self.queue_depth.unwrap_or(d.queue_depth).max(1),
            kv_cache_bytes: self.kv_cache_mib.map_or(d.kv_cache_bytes, |m| m << 20),
            queue_timeout: self.queue_timeout_secs.map_or(d.queue_timeout, Duration::from_secs),
        }
    }
}

/// A loaded decoder: weights, tokenizer, template and its replicas.
pub struct LlmModel {
    name: String,
    model: Arc<llama::Llama>,
    tokenizer: Arc<tokenizer::Tokenizer>,
    template: ChatTemplate,
    replicas: Vec<Scheduler>,
    max_tokens_cap: u32,
}

impl std::fmt::Debug for LlmModel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LlmModel")
            .field("name", &self.name)
            .field("replicas", &self.replicas.len())
            .finish()
    }
}

impl LlmModel {
    /// The tokenizer.
    pub fn tokenizer(&self) -> &tokenizer::Tokenizer {
        &self.tokenizer
    }

    /// The decoder.
    pub fn model(&self) -> &llama::Llama {
        &self.model
    }

    /// The schedulers.
    pub fn replicas(&self) -> &[Scheduler] {
        &self.replicas
    }

    /// Longest sequence (prompt + completion) served.
    pub fn max_sequence(&self) -> usize {
        self.replicas.iter().map(Scheduler::max_sequence).min().unwrap_or(0)
    }

    /// Cap on `max_tokens`.
    pub fn max_tokens_cap(&self) -> u32 {
        self.max_tokens_cap
    }

    /// Token ids of a raw prompt (BOS added when the model asks for it).
    pub fn encode_prompt(&self, prompt: &str) -> Result<Vec<u32>, ModelError> {
        Ok(self.tokenizer.encode(prompt, true)?)
    }

    /// Token ids of a conversation, formatted with the model's template.
    pub fn encode_chat(&self, messages: &[ChatMessage]) -> Result<Vec<u32>, ModelError> {
        let text = self.template.render(messages)?;
        Ok(self.tokenizer.encode(&text, true)?)
    }

    /// Start a generation on the least-loaded replica. Dropping the
    /// receiver cancels it.
    pub fn generate(
        &self,
        tenant: &str,
        prompt: Vec<u32>,
        params: SamplingParams,
        deadline: Instant,
    ) -> Result<tokio::sync::mpsc::UnboundedReceiver<GenEvent>, EngineError> {
        self.generate_metered(tenant, prompt, params, deadline)
            .map(|(rx, _)| rx)
    }

    /// [`LlmModel::generate`], plus the meter the scheduler keeps for it:
    /// what bills the generation reads that, not the events, so a
    /// generation cancelled mid-prompt still pays for what was fed.
    pub fn generate_metered(
        &self,
        tenant: &str,
        prompt: Vec<u32>,
        params: SamplingParams,
        deadline: Instant,
    ) -> Result<(tokio::sync::mpsc::UnboundedReceiver<GenEvent>, Arc<GenProgress>), EngineError> {
        params.validate().map_err(EngineError::InvalidParams)?;
        let (events, rx) = tokio::sync::mpsc::unbounded_channel();
        let replica = self
            .replicas
            .iter()
            .min_by_key(|r| r.load())
            .ok_or_else(|| EngineError::Internal("the model has no replicas".into()))?;
        let progress = Arc::new(GenProgress::default());
        replica.submit(scheduler::GenRequest {
            tenant: tenant.into(),
            prompt,
            params,
            deadline,
            events,
            progress: progress.clone(),
        })?;
        Ok((rx, progress))
    }
}

/// A named model of either kind.
#[derive(Debug, Clone)]
pub enum LoadedModel {
    /// A decoder (`wafer:ai/llm`).
    Llm(Arc<LlmModel>),
    /// An encoder (`wafer:ai/embeddings`).
    Embeddings(Embedder),
}

impl LoadedModel {
    /// `llm` or `embeddings`.
    pub fn kind(&self) -> &'static str {
        match self {
            LoadedModel::Llm(_) => "llm",
            LoadedModel::Embeddings(_) => "embeddings",
        }
    }
}

/// A model's description for listings.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ModelInfo {
    /// The name functions use.
    pub name: String,
    /// `llm` or `embeddings`.
    pub kind: &'static str,
    /// Where it runs.
    pub device: String,
    /// The file or folder.
    pub path: PathBuf,
    /// Schedulers.
    pub replicas: usize,
    /// Longest sequence (llm) or tokens per text (embeddings).
    pub max_tokens_per_sequence: usize,
    /// Vector width (embeddings).
    pub dim: Option<usize>,
    /// Bytes the model holds on its device: weights plus, for decoders,
    /// every replica's key/value cache.
    pub memory_bytes: u64,
    /// Tokens sampled since start (llm).
    pub generated_tokens: u64,
    /// Prompt tokens fed since start (llm).
    pub prompt_tokens: u64,
    /// Forward steps since start (llm).
    pub steps: u64,
    /// Mean sequences per step (llm).
    pub mean_batch: f64,
    /// Seconds spent in forward steps since start, sampling included (llm).
    pub step_seconds: f64,
    /// Sequences running now (llm).
    pub running: usize,
    /// Requests waiting now (llm).
    pub waiting: usize,
}

/// The node's models, by name.
#[derive(Clone, Default)]
pub struct Models {
    models: Arc<BTreeMap<String, (ModelConfig, LoadedModel)>>,
}

impl std::fmt::Debug for Models {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.models.keys()).finish()
    }
}

impl Models {
    /// No models.
    pub fn empty() -> Self {
        Models::default()
    }

    /// Load every configured model. `threads` sizes the compute pool the
    /// models share (default: every core).
    pub fn load(configs: &BTreeMap<String, ModelConfig>, threads: Option<usize>) -> Result<Self, ModelError> {
        if configs.is_empty() {
            return Ok(Models::empty());
        }
        let threads = threads.unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
        let pool = Arc::new(
            rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .thread_name(|i| format!("wafer-model-{i}"))
                .build()
                .map_err(|e| ModelError::Thread(std::io::Error::other(e)))?,
        );
        let mut models = BTreeMap::new();
        for (name, config) in configs {
            let loaded = load_one(name, config, &pool)?;
            models.insert(name.clone(), (config.clone(), loaded));
        }
        Ok(Models {
            models: Arc::new(models),
        })
    }

    /// Names of the loaded models.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.models.keys().map(String::as_str)
    }

    /// A model of either kind.
    pub fn get(&self, name: &str) -> Result<&LoadedModel, ModelError> {
        self.models
            .get(name)
            .map(|(_, m)| m)
            .ok_or_else(|| ModelError::Unknown(name.into()))
    }

    /// A decoder.
    pub fn llm(&self, name: &str) -> Result<&Arc<LlmModel>, ModelError> {
        match self.get(name)? {
            LoadedModel::Llm(m) => Ok(m),
            LoadedModel::Embeddings(_) => Err(ModelError::WrongKind {
                name: name.into(),
                actual: "an embeddings",
                wanted: "a text-generation model",
            }),
        }
    }

    /// An encoder.
    pub fn embedder(&self, name: &str) -> Result<&Embedder, ModelError> {
        match self.get(name)? {
            LoadedModel::Embeddings(e) => Ok(e),
            LoadedModel::Llm(_) => Err(ModelError::WrongKind {
                name: name.into(),
                actual: "a text-generation",
                wanted: "an embeddings model",
            }),
        }
    }

    /// Descriptions for listings.
    pub fn list(&self) -> Vec<ModelInfo> {
        use std::sync::atomic::Ordering::Relaxed;
        self.models
            .iter()
            .map(|(name, (config, model))| {
                let mut info = ModelInfo {
                    name: name.clone(),
                    kind: model.kind(),
                    device: config.device.clone(),
                    path: config.path.clone(),
                    replicas: config.replicas.max(1),
                    max_tokens_per_sequence: 0,
                    dim: None,
                    memory_bytes: 0,
                    generated_tokens: 0,
                    prompt_tokens: 0,
                    steps: 0,
                    mean_batch: 0.0,
                    step_seconds: 0.0,
                    running: 0,
                    waiting: 0,
                };
                match model {
                    LoadedModel::Llm(m) => {
                        info.max_tokens_per_sequence = m.max_sequence();
                        let kv = config.scheduler().kv_cache_bytes as u64 * info.replicas as u64;
                        info.memory_bytes = m.model().weight_bytes() as u64 + kv;
                        let mut batch_sum = 0;
                        for r in m.replicas() {
                            let s = r.stats();
                            info.generated_tokens += s.generated_tokens.load(Relaxed);
                            info.prompt_tokens += s.prompt_tokens.load(Relaxed);
                            info.steps += s.steps.load(Relaxed);
                            info.running += s.running.load(Relaxed);
                            info.waiting += s.waiting.load(Relaxed);
                            batch_sum += s.batch_sum.load(Relaxed);
                            info.step_seconds += s.step_ns.load(Relaxed) as f64 / 1e9;
                        }
                        info.mean_batch = if info.steps > 0 {
                            batch_sum as f64 / info.steps as f64
                        } else {
                            0.0
                        };
                    }
                    LoadedModel::Embeddings(e) => {
                        info.max_tokens_per_sequence = e.max_tokens();
                        info.dim = Some(e.dim());
                        // The encoder copies its weights out of the file at load.
                        info.memory_bytes =
                            std::fs::metadata(config.path.join("model.safetensors")).map_or(0, |m| m.len());
                    }
                }
                info
            })
            .collect()
    }
}

fn load_one(name: &str, config: &ModelConfig, pool: &Arc<rayon::ThreadPool>) -> Result<LoadedModel, ModelError> {
    let cfg_err = |message: String| ModelError::Config {
        model: name.into(),
        message,
    };
    if config.device != "cpu" {
        return Err(cfg_err(format!(
            "device = \"{}\": model inference runs on the CPU in this version; use device = \"cpu\"",
            config.device
        )));
    }
    if !config.path.exists() {
        return Err(cfg_err(format!(
            "path {} does not exist (pull the demo models with `wafer models pull`)",
            config.path.display()
        )));
    }
    let started = Instant::now();
    let loaded = match config.format() {
        ModelFormat::Gguf => {
            let file = gguf::Gguf::open(&config.path)?;
            let max_context = config.max_context.unwrap_or(DEFAULT_MAX_CONTEXT);
            let model = llama::Llama::from_gguf(&file, max_context)?;
            let tokenizer = load_tokenizer(&file, &config.path)?;
            let template = file.opt_str("tokenizer.chat_template").map(str::to_owned);
            start_llm(name, config, pool, model, tokenizer, template)?
        }
        ModelFormat::Safetensors if hf::is_decoder(&config.path) => {
            let folder = hf::HfFolder::open(&config.path)?;
            let max_context = config.max_context.unwrap_or(DEFAULT_MAX_CONTEXT);
            let model = llama::Llama::from_weights(folder.config()?, &folder, max_context)?;
            let tokenizer = folder.tokenizer()?;
            start_llm(name, config, pool, model, tokenizer, folder.chat_template())?
        }
        ModelFormat::Safetensors => {
            hf::check_supported(&config.path)?;
            let model = Arc::new(bert::BertModel::load(&config.path)?);
            LoadedModel::Embeddings(Embedder::start(
                name,
                model,
                pool.clone(),
                config.scheduler().queue_depth,
            )?)
        }
    };
    tracing::info!(
        model = name,
        kind = loaded.kind(),
        elapsed_ms = started.elapsed().as_millis() as u64,
        "model loaded"
    );
    Ok(loaded)
}

/// Schedulers for a loaded decoder. `template` is the model's chat template
/// (ChatML when it has none).
fn start_llm(
    name: &str,
    config: &ModelConfig,
    pool: &Arc<rayon::ThreadPool>,
    model: llama::Llama,
    tokenizer: tokenizer::Tokenizer,
    template: Option<String>,
) -> Result<LoadedModel, ModelError> {
    let (model, tokenizer) = (Arc::new(model), Arc::new(tokenizer));
    let special = tokenizer.special();
    let source = template.as_deref().unwrap_or(chat_template::CHATML);
    let template = ChatTemplate::new(source, &special.bos_text, &special.eos_text)?;
    let replicas = (0..config.replicas.max(1))
        .map(|i| {
            Scheduler::start(
                &format!("{name}-{i}"),
                model.clone(),
                tokenizer.clone(),
                pool.clone(),
                config.scheduler(),
            )
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(LoadedModel::Llm(Arc::new(LlmModel {
        name: name.into(),
        model,
        tokenizer,
        template,
        replicas,
        max_tokens_cap: config.max_tokens.unwrap_or(DEFAULT_MAX_TOKENS_CAP).max(1),
    })))
}

/// A `tokenizer.json` next to the GGUF file wins over the GGUF metadata.
fn load_tokenizer(file: &gguf::Gguf, path: &Path) -> Result<tokenizer::Tokenizer, ModelError> {
    let from_meta = tokenizer::Tokenizer::from_gguf(file);
    let beside = path.with_file_name("tokenizer.json");
    match from_meta {
        Ok(t) => Ok(t),
        Err(e) if beside.exists() => {
            tracing::info!(error = %e, "using tokenizer.json beside the model");
            let special = tokenizer::SpecialTokens::default();
            Ok(tokenizer::Tokenizer::from_file(&beside, special)?)
        }
        Err(e) => Err(e.into()),
    }
}
