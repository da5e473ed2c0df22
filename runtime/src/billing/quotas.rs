//! Per-tenant quotas: request rate, concurrency, monthly budget and tokens.
//!
//! Checked when a request is admitted, from in-memory state: the spend and
//! token counters start from the ledger at boot and grow with every record.

use serde::{Deserialize, Serialize};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Instant;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// A tenant's quotas; `None` means unlimited. The node's `[quotas]` table
/// gives the defaults, a tenant's own values (`wafer tenants set`) override.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct TenantQuotas {
    /// Sustained requests per second.
    pub requests_per_second: Option<f64>,
    /// Requests allowed in a burst above the rate [default: 1 s of rate, at least 1].
    pub burst: Option<u32>,
    /// Invocations running at once.
    pub max_concurrency: Option<u32>,
    /// Spend per calendar month (UTC), micro-units. Past it: 402.
    pub monthly_budget_micros: Option<u64>,
    /// Model tokens (in + out + embedding) per calendar month.
    pub monthly_tokens: Option<u64>,
}

impl TenantQuotas {
    /// These quotas with `overrides` applied on top.
    pub fn merged(&self, overrides: &TenantQuotas) -> TenantQuotas {
        TenantQuotas {
            requests_per_second: overrides.requests_per_second.or(self.requests_per_second),
            burst: overrides.burst.or(self.burst),
            max_concurrency: overrides.max_concurrency.or(self.max_concurrency),
            monthly_budget_micros: overrides.monthly_budget_micros.or(self.monthly_budget_micros),
            monthly_tokens: overrides.monthly_tokens.or(self.monthly_tokens),
        }
    }

    /// Refuses nonsense values.
    pub fn validate(&self) -> Result<(), String> {
        if let Some(rate) = self.requests_per_second
            && !(rate.is_finite() && rate > 0.0)
        {
            return Err("requests_per_second must be a positive number".into());
        }
        if self.max_concurrency == Some(0) {
            return Err("max_concurrency must be at least 1".into());
        }
        Ok(())
    }
}

/// Why a request was refused.
#[derive(Debug, PartialEq)]
pub enum QuotaRefusal {
    /// Over the request rate; retry after this many seconds.
    Rate {
        /// Seconds to wait.
        retry_after: u32,
    },
    /// Too many invocations running.
    Concurrency(u32),
    /// The month's budget is spent.
    Budget(u64),
    /// The month's tokens are used.
    Tokens(u64),
}

struct Bucket {
    tokens: f64,
    last: Instant,
}

/// Live quota state of one tenant.
pub struct TenantState {
    quotas: Mutex<TenantQuotas>,
    bucket: Mutex<Bucket>,
    concurrency: Mutex<Option<(u32, Arc<Semaphore>)>>,
    month: Mutex<MonthCounters>,
    /// Tokens that running invocations and API requests hold against the
    /// token allowance until the ledger has what they used.
    held_tokens: AtomicU64,
}

/// This month's spend and tokens.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct MonthCounters {
    /// `YYYY-MM`.
    pub month: String,
    /// Spend so far, micro-units.
    pub spent_micros: u64,
    /// Tokens so far.
    pub tokens: u64,
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

impl TenantState {
    /// Tokens held against the allowance now.
    pub fn held_tokens(&self) -> u64 {
        self.held_tokens.load(Ordering::Acquire)
    }

    /// Replace a holder's `old` hold by `new`.
    pub fn change_hold(&self, old: u64, new: u64) {
        let _ = self.held_tokens.fetch_update(Ordering::AcqRel, Ordering::Acquire, |h| {
            Some(h.saturating_sub(old) + new)
        });
    }

    /// State with `quotas` and the month's counters so far.
    pub fn new(quotas: TenantQuotas, month: MonthCounters) -> Self {
        let burst = burst_of(&quotas);
        Self {
            quotas: Mutex::new(quotas),
            bucket: Mutex::new(Bucket {
                tokens: burst,
                last: Instant::now(),
            }),
            concurrency: Mutex::new(None),
            month: Mutex::new(month),
            held_tokens: AtomicU64::new(0),
        }
    }

    /// Replaces the quotas (the counters stay).
    pub fn set_quotas(&self, quotas: TenantQuotas) {
        *lock(&self.quotas) = quotas;
    }

    /// The quotas in force.
    pub fn quotas(&self) -> TenantQuotas {
        lock(&self.quotas).clone()
    }

    /// Admits one request: checks budget, tokens and rate, takes a
    /// concurrency slot. The slot is held by the returned permit.
    pub fn admit(&self, current_month: &str) -> Result<Option<OwnedSemaphorePermit>, QuotaRefusal> {
        let quotas = self.quotas();
        {
            let mut month = lock(&self.month);
            if month.month != current_month {
                *month = MonthCounters {
                    month: current_month.to_owned(),
                    ..MonthCounters::default()
                };
            }
            if let Some(budget) = quotas.monthly_budget_micros
                && month.spent_micros >= budget
            {
                return Err(QuotaRefusal::Budget(budget));
            }
            if let Some(limit) = quotas.monthly_tokens
                && month.tokens >= limit
            {
                return Err(QuotaRefusal::Tokens(limit));
            }
        }
        if let Some(rate) = quotas.requests_per_second {
            let burst = burst_of(&quotas);
            let mut bucket = lock(&self.bucket);
            let now = Instant::now();
            let refill = now.duration_since(bucket.last).as_secs_f64() * rate;
            bucket.tokens = (bucket.tokens + refill).min(burst);
            bucket.last = now;
            if bucket.tokens < 1.0 {
                let wait = ((1.0 - bucket.tokens) / rate).ceil().max(1.0);
                return Err(QuotaRefusal::Rate {
                    retry_after: wait as u32,
                });
            }
            bucket.tokens -= 1.0;
        }
        let Some(limit) = quotas.max_concurrency else {
            return Ok(None);
        };
        let semaphore = {
            let mut slot = lock(&self.concurrency);
            match &*slot {
                Some((current, semaphore)) if *current == limit => semaphore.clone(),
                _ => {
                    let semaphore = Arc::new(Semaphore::new(limit as usize));
                    *slot = Some((limit, semaphore.clone()));
                    semaphore
                }
            }
        };
        semaphore
            .try_acquire_owned()
            .map(Some)
            .map_err(|_| QuotaRefusal::Concurrency(limit))
    }

    /// Adds billed usage to this month's counters.
    pub fn add_usage(&self, current_month: &str, micros: u64, tokens: u64) {
        let mut month = lock(&self.month);
        if month.month != current_month {
            *month = MonthCounters {
                month: current_month.to_owned(),
                ..MonthCounters::default()
            };
        }
        month.spent_micros = month.spent_micros.saturating_add(micros);
        month.tokens = month.tokens.saturating_add(tokens);
    }

    /// This month's counters.
    pub fn month(&self) -> MonthCounters {
        lock(&self.month).clone()
    }
}

fn burst_of(quotas: &TenantQuotas) -> f64 {
    match (quotas.burst, quotas.requests_per_second) {
        (Some(burst), _) => f64::from(burst.max(1)),
        (None, Some(rate)) => rate.max(1.0),
        (None, None) => 1.0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn month() -> MonthCounters {
        MonthCounters {
            month: "2026-11".into(),
            ..MonthCounters::default()
        }
    }

    #[test]
    fn rate_limit_allows_the_burst_then_refuses() {
        let state = TenantState::new(
            TenantQuotas {
                requests_per_second: Some(0.5),
                burst: Some(2),
                ..TenantQuotas::default()
            },
            month(),
        );
        assert!(state.admit("2026-11").is_ok());
        assert!(state.admit("2026-11").is_ok());
        assert_eq!(
            state.admit("2026-11").err(),
            Some(QuotaRefusal::Rate { retry_after: 2 })
        );
    }

    #[test]
    fn budget_and_tokens_refuse_once_spent_and_reset_next_month() {
        let state = TenantState::new(
            TenantQuotas {
                monthly_budget_micros: Some(100),
                monthly_tokens: Some(10),
                ..TenantQuotas::default()
            },
            month(),
        );
        state.add_usage("2026-11", 99, 0);
        assert!(state.admit("2026-11").is_ok());
        state.add_usage("2026-11", 1, 0);
        assert_eq!(state.admit("2026-11").err(), Some(QuotaRefusal::Budget(100)));
        assert!(state.admit("2026-12").is_ok(), "a new month starts from zero");
        state.add_usage("2026-12", 0, 10);
        assert_eq!(state.admit("2026-12").err(), Some(QuotaRefusal::Tokens(10)));
    }

    #[test]
    fn concurrency_slots_are_released_with_the_permit() {
        let state = TenantState::new(
            TenantQuotas {
                max_concurrency: Some(1),
                ..TenantQuotas::default()
            },
            month(),
        );
        let held = state.admit("2026-11");
        assert!(matches!(held, Ok(Some(_))));
        assert_eq!(state.admit("2026-11").err(), Some(QuotaRefusal::Concurrency(1)));
        drop(held);
        assert!(state.admit("2026-11").is_ok());
    }
}
