//! Prices: integers in micro-units of a currency (no floats touch money),
//! versioned so that every ledger record names the table it was priced with.

use crate::storage::LedgerRecord;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// The price table (`[pricing]` in the node's `wafer.toml`).
///
/// ```toml
/// [pricing]
/// per_invocation = 2          # micro-units per invocation
/// per_gb_second = 17          # per GiB of peak memory held for a second
/// per_device_second = 500     # per second of accelerator time
/// [pricing.models.smollm2]
/// per_million_input_tokens = 50000
/// per_million_output_tokens = 150000
/// per_million_embedding_tokens = 10000
/// ```
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct PriceTable {
    /// Per invocation.
    pub per_invocation: u64,
    /// Per GiB-second of peak linear memory × wall time.
    pub per_gb_second: u64,
    /// Per second of accelerator time.
    pub per_device_second: u64,
    /// Per-model token prices.
    pub models: BTreeMap<String, ModelPrices>,
}

/// Token prices of one model.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct ModelPrices {
    /// Per million prompt tokens.
    pub per_million_input_tokens: u64,
    /// Per million generated tokens.
    pub per_million_output_tokens: u64,
    /// Per million embedded tokens.
    pub per_million_embedding_tokens: u64,
}

/// Fractions are carried in pico-units (10⁻⁶ of a micro-unit) and the record
/// is rounded to the nearest micro-unit once, at the end.
const PICO_PER_MICRO: u128 = 1_000_000;
const GIB: u128 = 1 << 30;

impl PriceTable {
    /// The amount for one ledger record, in micro-units.
    pub fn price(&self, record: &LedgerRecord) -> u64 {
        let mut pico: u128 = 0;
        pico += u128::from(record.invocations) * u128::from(self.per_invocation) * PICO_PER_MICRO;
        // byte·ms × price per (GiB·s) → divide by GiB and by 1000 ms.
        pico += record.memory_byte_ms * u128::from(self.per_gb_second) * PICO_PER_MICRO / (GIB * 1000);
        pico += u128::from(record.device_ns) * u128::from(self.per_device_second) * PICO_PER_MICRO / 1_000_000_000;
        if let Some(model) = record.model.as_ref().and_then(|m| self.models.get(m)) {
            let per_token = |tokens: u64, per_million: u64| {
                u128::from(tokens) * u128::from(per_million) * PICO_PER_MICRO / 1_000_000
            };
            pico += per_token(record.tokens_in, model.per_million_input_tokens);
            pico += per_token(record.tokens_out, model.per_million_output_tokens);
            pico += per_token(record.embedding_tokens, model.per_million_embedding_tokens);
        }
        let micros = (pico + PICO_PER_MICRO / 2) / PICO_PER_MICRO;
        u64::try_from(micros).unwrap_or(u64::MAX)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prices_are_exact_integers() {
        let mut table = PriceTable {
            per_invocation: 3,
            per_gb_second: 1000,
            per_device_second: 0,
            models: BTreeMap::new(),
        };
        table.models.insert(
            "m".into(),
            ModelPrices {
                per_million_input_tokens: 1_000_000,
                per_million_output_tokens: 2_000_000,
                per_million_embedding_tokens: 0,
            },
        );
        let invocation = LedgerRecord {
            invocations: 1,
            // 1 GiB for 1.5 s → 1500 micro-units.
            memory_byte_ms: (1u128 << 30) * 1500,
            ..LedgerRecord::default()
        };
        assert_eq!(table.price(&invocation), 1503);
        let tokens = LedgerRecord {
            model: Some("m".into()),
            tokens_in: 10,
            tokens_out: 5,
            ..LedgerRecord::default()
        };
        assert_eq!(table.price(&tokens), 20);
        let unknown_model = LedgerRecord {
            model: Some("other".into()),
            tokens_in: 10,
            ..LedgerRecord::default()
        };
        assert_eq!(table.price(&unknown_model), 0);
        assert_eq!(PriceTable::default().price(&invocation), 0);
    }
}
