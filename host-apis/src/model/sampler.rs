//! Picking the next token from logits, and the parameters that steer it.
//!
//! The order is llama.cpp's: repeat penalty over the recent context, then
//! top-k, temperature, softmax, top-p, and a draw from a seeded generator,
//! so a seed reproduces a generation exactly on the same model.

/// Sampling parameters after defaults and caps are applied.
#[derive(Debug, Clone, PartialEq)]
pub struct SamplingParams {
    /// 0 is greedy.
    pub temperature: f32,
    /// 0 means all tokens.
    pub top_k: usize,
    /// 1.0 means all tokens.
    pub top_p: f32,
    /// 1.0 is off.
    pub repeat_penalty: f32,
    /// Seed for the draw.
    pub seed: u64,
    /// Most tokens to generate.
    pub max_tokens: usize,
    /// Strings that end the generation (not returned).
    pub stop: Vec<String>,
}

impl Default for SamplingParams {
    fn default() -> Self {
        SamplingParams {
            temperature: 0.8,
            top_k: 40,
            top_p: 0.95,
            repeat_penalty: 1.0,
            seed: 0,
            max_tokens: 256,
            stop: Vec::new(),
        }
    }
}

/// Tokens of context the repeat penalty looks at (llama.cpp's default).
const PENALTY_WINDOW: usize = 64;
/// Most stop strings, and bytes in each: they are matched on every token.
pub const MAX_STOP_STRINGS: usize = 8;
/// See [`MAX_STOP_STRINGS`].
pub const MAX_STOP_BYTES: usize = 256;

impl SamplingParams {
    /// Check ranges; the message names the parameter and its range.
    pub fn validate(&self) -> Result<(), String> {
        if !(0.0..=100.0).contains(&self.temperature) {
            return Err(format!("temperature {} is outside 0..=100", self.temperature));
        }
        if !(self.top_p > 0.0 && self.top_p <= 1.0) {
            return Err(format!("top-p {} is outside (0, 1]", self.top_p));
        }
        if !(self.repeat_penalty > 0.0 && self.repeat_penalty <= 10.0) {
            return Err(format!("repeat penalty {} is outside (0, 10]", self.repeat_penalty));
        }
        if self.max_tokens == 0 {
            return Err("max tokens must be at least 1".into());
        }
        if self.stop.len() > MAX_STOP_STRINGS {
            return Err(format!("{} stop strings; at most {MAX_STOP_STRINGS}", self.stop.len()));
        }
        if let Some(s) = self.stop.iter().find(|s| s.is_empty() || s.len() > MAX_STOP_BYTES) {
            return Err(format!(
                "stop string of {} bytes; each must be 1..={MAX_STOP_BYTES}",
                s.len()
            ));
        }
        Ok(())
    }
}

/// SplitMix64: tiny, fast, and the same on every platform and version, so
/// seeded generations stay reproducible.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// A generator from a seed.
    pub fn new(seed: u64) -> Self {
        Rng(seed)
    }

    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1).
    pub fn next_f32(&mut self) -> f32 {
        (self.next_u64() >> 40) as f32 / (1u64 << 24) as f32
    }
}

/// Pick a token. `context` is the prompt and the tokens generated so far.
pub fn sample(logits: &mut [f32], params: &SamplingParams, context: &[u32], rng: &mut Rng) -> u32 {
    if params.repeat_penalty != 1.0 {
        let recent = &context[context.len().saturating_sub(PENALTY_WINDOW)..];
        let mut seen = std::collections::HashSet::with_capacity(recent.len());
        for &id in recent {
            if seen.insert(id)
                && let Some(l) = logits.get_mut(id as usize)
            {
                *l = if *l > 0.0 {
                    *l / params.repeat_penalty
                } else {
                    *l * params.repeat_penalty
                };
            }
        }
    }
    if params.temperature <= 0.0 {
        return argmax(logits);
    }
    let mut candidates: Vec<(u32, f32)> = logits.iter().enumerate().map(|(i, &l)| (i as u32, l)).collect();
    // Highest first; ties keep the lower id first so the order is total.
    let by_logit = |a: &(u32, f32), b: &(u32, f32)| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0));
    if params.top_k > 0 && params.top_k < candidates.len() {
        candidates.select_nth_unstable_by(params.top_k - 1, by_logit);
        candidates.truncate(params.top_k);
    }
    candidates.sort_unstable_by(by_logit);
    let max = candidates.first().map_or(0.0, |c| c.1);
    let mut sum = 0.0f64;
    for c in candidates.iter_mut() {
        c.1 = ((c.1 - max) / params.temperature).exp();
        sum += c.1 as f64;
    }
    if params.top_p < 1.0 {
        let mut cumulative = 0.0f64;
        let mut keep = candidates.len();
        for (i, c) in candidates.iter().enumerate() {
            cumulative += c.1 as f64 / sum;
            if cumulative >= params.top_p as f64 {
                keep = i + 1;
                break;
            }
        }
        candidates.truncate(keep);
        sum = candidates.iter().map(|c| c.1 as f64).sum();
    }
    let mut target = rng.next_f32() as f64 * sum;
    for c in &candidates {
        target -= c.1 as f64;
        if target <= 0.0 {
            return c.0;
        }
    }
    candidates.last().map_or(0, |c| c.0)
}

/// Index of the largest value (the first on ties).
pub fn argmax(logits: &[f32]) -> u32 {
    let mut best = 0;
    for (i, &l) in logits.iter().enumerate() {
        if l > logits[best] {
            best = i;
        }
    }
    best as u32
}

/// Finds stop strings in streamed text, holding back any tail that could
/// still become one, so no part of a stop string is ever sent.
#[derive(Debug, Default)]
pub struct StopMatcher {
    stops: Vec<String>,
    pending: String,
}

impl StopMatcher {
    /// Match these strings.
    pub fn new(stops: Vec<String>) -> Self {
        StopMatcher {
            stops,
            pending: String::new(),
        }
    }

    /// Feed new text; returns what is safe to emit, and whether a stop
    /// string ended the text (what follows it is dropped).
    pub fn push(&mut self, text: &str) -> (String, bool) {
        self.pending.push_str(text);
        if let Some(at) = self.stops.iter().filter_map(|s| self.pending.find(s.as_str())).min() {
            let out = self.pending[..at].to_owned();
            self.pending.clear();
            return (out, true);
        }
        // Hold back the longest suffix that is a prefix of some stop string.
        let mut hold = 0;
        for stop in &self.stops {
            for (i, _) in stop.char_indices().skip(1) {
                if self.pending.ends_with(&stop[..i]) {
                    hold = hold.max(i);
                }
            }
        }
        let cut = self.pending.len() - hold;
        let out = self.pending[..cut].to_owned();
        self.pending.drain(..cut);
        (out, false)
    }

    /// The held-back text, at the end of a generation that did not stop on
    /// a stop string.
    pub fn finish(&mut self) -> String {
        std::mem::take(&mut self.pending)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn greedy_takes_the_first_maximum() {
        let mut logits = vec![0.1, 3.0, 3.0, -1.0];
        let params = SamplingParams {
            temperature: 0.0,
            ..Default::default()
        };
        assert_eq!(sample(&mut logits, &params, &[], &mut Rng::new(1)), 1);
    }

    #[test]
    fn seeds_reproduce_and_top_k_1_is_greedy() {
        let logits: Vec<f32> = (0..100).map(|i| ((i * 37) % 11) as f32 * 0.3).collect();
        let params = SamplingParams {
            temperature: 1.0,
            ..Default::default()
        };
        let draw = |seed| {
            let mut rng = Rng::new(seed);
            (0..20)
                .map(|_| sample(&mut logits.clone(), &params, &[], &mut rng))
                .collect::<Vec<_>>()
        };
        assert_eq!(draw(7), draw(7));
        assert_ne!(draw(7), draw(8));
        let k1 = SamplingParams {
            temperature: 1.0,
            top_k: 1,
            ..Default::default()
        };
        assert_eq!(sample(&mut logits.clone(), &k1, &[], &mut Rng::new(3)), argmax(&logits));
    }

    #[test]
    fn repeat_penalty_lowers_seen_tokens() {
        let mut logits = vec![2.0, 1.9];
        let params = SamplingParams {
            temperature: 0.0,
            repeat_penalty: 1.5,
            ..Default::default()
        };
        assert_eq!(sample(&mut logits, &params, &[0], &mut Rng::new(0)), 1);
    }

    #[test]
    fn stop_strings_are_never_emitted() {
        let mut m = StopMatcher::new(vec!["END".into()]);
        assert_eq!(m.push("hello E"), ("hello ".into(), false));
        assert_eq!(m.push("N"), (String::new(), false));
        assert_eq!(m.push("Dx"), (String::new(), true));
        let mut m = StopMatcher::new(vec!["END".into()]);
        assert_eq!(m.push("EN"), (String::new(), false));
        assert_eq!(m.push("a"), ("ENa".into(), false));
        assert_eq!(m.finish(), "");
    }

    #[test]
    fn validation_names_the_parameter() {
        let bad = SamplingParams {
            top_p: 0.0,
            ..Default::default()
        };
        assert!(bad.validate().unwrap_err().contains("top-p"));
        let stops = SamplingParams {
            stop: vec![String::new()],
            ..Default::default()
        };
        assert!(stops.validate().is_err());
    }
}
