//! Tenants, API keys, metering, prices, the ledger and quotas.
//!
//! The host counts everything billed. Each invocation's usage becomes ledger
//! records with deterministic event ids (`invocation_id:seq`), priced with
//! the price table in force when it ran, and written durably (group commit)
//! before the response completes.

pub mod ledger;
pub mod pricing;
pub mod quotas;

use crate::auth::{KeyEntry, Keys, Scope};
use crate::storage::{
    BillingStore, KeyRecord, LedgerRecord, SqliteStore, StorageError, TenantRecord, UsageFilter, UsageGrouping,
    UsageRow, utc_day,
};
use crate::units::now_ms;
use arc_swap::ArcSwap;
use dashmap::DashMap;
use ledger::{Ledger, LedgerError};
use pricing::PriceTable;
use quotas::{MonthCounters, QuotaRefusal, TenantQuotas, TenantState};
use rand::RngCore;
use serde::Serialize;
use sha2::{Digest, Sha256};
use std::path::Path;
use std::sync::Arc;
use std::time::UNIX_EPOCH;
use tokio::sync::OwnedSemaphorePermit;

/// The tenant that owns what the node operator deploys.
pub const DEFAULT_TENANT: &str = "default";

/// Errors of the billing layer.
#[derive(Debug, thiserror::Error)]
pub enum BillingError {
    /// Database trouble.
    #[error(transparent)]
    Storage(#[from] StorageError),
    /// Ledger writer trouble.
    #[error(transparent)]
    Ledger(#[from] LedgerError),
    /// Bad input (name, quotas, prices).
    #[error("{0}")]
    Invalid(String),
    /// No such tenant or key.
    #[error("{0}")]
    NotFound(String),
    /// The ledger thread could not start.
    #[error("cannot start the ledger writer: {0}")]
    Start(#[from] std::io::Error),
}

/// What one model call used inside an invocation.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct ModelUsage {
    /// Model name.
    pub model: String,
    /// Prompt tokens fed.
    pub tokens_in: u64,
    /// Tokens sampled.
    pub tokens_out: u64,
    /// Tokens embedded.
    pub embedding_tokens: u64,
    /// Accelerator time, ns.
    pub device_ns: u64,
}

/// What one invocation used, as measured by the host.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct InvocationUsage {
    /// Wall-clock time, ns.
    pub wall_ns: u64,
    /// Time spent running (polling the guest), ns.
    pub cpu_ns: u64,
    /// Peak linear memory, bytes.
    pub peak_memory_bytes: u64,
    /// Accelerator time of tensor operations, ns (CPU tensor work is in `cpu_ns`).
    pub device_ns: u64,
    /// Bytes moved between host and device by tensor operations.
    pub device_bytes: u64,
    /// Per-model usage.
    pub models: Vec<ModelUsage>,
}

/// What the caller is told was billed.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Billed {
    /// Amount, micro-units.
    pub amount_micros: u64,
    /// Prompt tokens across models.
    pub tokens_in: u64,
    /// Generated tokens across models.
    pub tokens_out: u64,
    /// The price table version used.
    pub price_version: u32,
}

/// A newly made API key: the secret is shown once, never stored.
#[derive(Debug, Serialize)]
pub struct NewKey {
    /// The full key to send as `Authorization: Bearer <key>`.
    pub key: String,
    /// The public id (for `wafer keys revoke`).
    pub id: String,
    /// Owner.
    pub tenant: String,
    /// Scope.
    pub scope: String,
}

/// The billing layer of a node.
pub struct Billing {
    store: Arc<SqliteStore>,
    ledger: Ledger,
    prices: ArcSwap<(u32, PriceTable)>,
    default_quotas: TenantQuotas,
    tenants: DashMap<String, Arc<TenantState>>,
    keys: Keys,
}

/// `YYYY-MM` of a time.
fn month_of(time_ms: u64) -> String {
    utc_day(time_ms)[..7].to_owned()
}

fn month_start_ms(month: &str) -> u64 {
    humantime::parse_rfc3339(&format!("{month}-01T00:00:00Z"))
        .ok()
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .map(|d| d.as_millis() as u64)
        .unwrap_or_default()
}

impl Billing {
    /// Opens billing on the registry database at `db`, with the configured
    /// price table (stored as a new version if it differs from the newest).
    pub fn open(
        db: &Path,
        prices: PriceTable,
        default_quotas: TenantQuotas,
        keys: Keys,
        commit_interval: std::time::Duration,
    ) -> Result<Self, BillingError> {
        default_quotas.validate().map_err(BillingError::Invalid)?;
        let store = Arc::new(SqliteStore::open(db)?);
        // The ledger writer has its own connection, so registry reads never
        // wait behind a group commit.
        let ledger = Ledger::start(Arc::new(SqliteStore::open_for_appends(db)?), commit_interval)?;
        spawn_checkpointer(SqliteStore::open(db)?, &ledger)?;
        let table_json = serde_json::to_string(&prices).map_err(|e| BillingError::Invalid(e.to_string()))?;
        let version = match store.latest_price_table()? {
            Some((version, json)) if json == table_json => version,
            _ => store.add_price_table(&table_json)?,
        };
        let billing = Self {
            store,
            ledger,
            prices: ArcSwap::from_pointee((version, prices)),
            default_quotas,
            tenants: DashMap::new(),
            keys,
        };
        billing.create_tenant(DEFAULT_TENANT, TenantQuotas::default()).ok();
        billing.load()?;
        Ok(billing)
    }

    fn load(&self) -> Result<(), BillingError> {
        let month = month_of(now_ms());
        let spent = self.store.usage(
            &UsageFilter {
                since_ms: Some(month_start_ms(&month)),
                ..UsageFilter::default()
            },
            UsageGrouping::Tenant,
        )?;
        for tenant in self.store.tenants()? {
            let overrides: TenantQuotas = serde_json::from_str(&tenant.quotas_json).unwrap_or_default();
            let counters = spent
                .iter()
                .find(|row| row.tenant == tenant.name)
                .map(|row| MonthCounters {
                    month: month.clone(),
                    spent_micros: row.amount_micros,
                    tokens: row.tokens_in + row.tokens_out + row.embedding_tokens,
                })
                .unwrap_or_else(|| MonthCounters {
                    month: month.clone(),
                    ..MonthCounters::default()
                });
            self.tenants.insert(
                tenant.name.clone(),
                Arc::new(TenantState::new(self.default_quotas.merged(&overrides), counters)),
            );
        }
        for key in self.store.keys()? {
            if key.revoked_ms.is_none()
                && let Some(scope) = Scope::parse(&key.scope)
            {
                self.keys.insert(
                    key.id.clone(),
                    KeyEntry {
                        tenant: key.tenant,
                        scope,
                        secret_hash: key.secret_hash,
                    },
                );
            }
        }
        Ok(())
    }

    /// Creates a tenant.
    pub fn create_tenant(&self, name: &str, quotas: TenantQuotas) -> Result<(), BillingError> {
        crate::manifest::validate_name(name).map_err(|e| BillingError::Invalid(e.replace("function", "tenant")))?;
        quotas.validate().map_err(BillingError::Invalid)?;
        let json = serde_json::to_string(&quotas).map_err(|e| BillingError::Invalid(e.to_string()))?;
        if !self.store.create_tenant(name, &json)? {
            return Err(BillingError::Invalid(format!("tenant `{name}` already exists")));
        }
        let month = month_of(now_ms());
        self.tenants.insert(
            name.to_owned(),
            Arc::new(TenantState::new(
                self.default_quotas.merged(&quotas),
                MonthCounters {
                    month,
                    ..MonthCounters::default()
                },
            )),
        );
        Ok(())
    }

    /// Replaces a tenant's quotas.
    pub fn set_quotas(&self, name: &str, quotas: TenantQuotas) -> Result<(), BillingError> {
        quotas.validate().map_err(BillingError::Invalid)?;
        let json = serde_json::to_string(&quotas).map_err(|e| BillingError::Invalid(e.to_string()))?;
        if !self.store.set_tenant_quotas(name, &json)? {
            return Err(BillingError::NotFound(format!("no tenant named `{name}`")));
        }
        if let Some(state) = self.tenants.get(name) {
            state.set_quotas(self.default_quotas.merged(&quotas));
        }
        Ok(())
    }

    /// Every tenant with its quotas in force and this month's counters.
    pub fn tenants(&self) -> Result<Vec<TenantView>, BillingError> {
        Ok(self
            .store
            .tenants()?
            .into_iter()
            .map(|record: TenantRecord| {
                let state = self.tenants.get(&record.name).map(|s| s.clone());
                TenantView {
                    quotas: state.as_ref().map(|s| s.quotas()).unwrap_or_default(),
                    spent_this_month_micros: state.as_ref().map(|s| s.month().spent_micros).unwrap_or_default(),
                    tokens_this_month: state.as_ref().map(|s| s.month().tokens).unwrap_or_default(),
                    name: record.name,
                    created_ms: record.created_ms,
                }
            })
            .collect())
    }

    /// Whether a tenant exists.
    pub fn has_tenant(&self, name: &str) -> bool {
        self.tenants.contains_key(name)
    }

    /// Makes an API key for a tenant.
    pub fn create_key(&self, tenant: &str, scope: Scope) -> Result<NewKey, BillingError> {
        if !self.has_tenant(tenant) {
            return Err(BillingError::NotFound(format!("no tenant named `{tenant}`")));
        }
        let mut id = [0u8; 6];
        let mut secret = [0u8; 32];
        rand::rng().fill_bytes(&mut id);
        rand::rng().fill_bytes(&mut secret);
        let id = hex::encode(id);
        let secret = hex::encode(secret);
        let secret_hash = hex::encode(Sha256::digest(secret.as_bytes()));
        let record = KeyRecord {
            id: id.clone(),
            tenant: tenant.to_owned(),
            scope: scope.name().to_owned(),
            secret_hash: secret_hash.clone(),
            created_ms: now_ms(),
            revoked_ms: None,
        };
        self.store.add_key(&record)?;
        self.keys.insert(
            id.clone(),
            KeyEntry {
                tenant: tenant.to_owned(),
                scope,
                secret_hash,
            },
        );
        Ok(NewKey {
            key: format!("wk_{id}_{secret}"),
            id,
            tenant: tenant.to_owned(),
            scope: scope.name().to_owned(),
        })
    }

    /// Revokes a key; `tenant` restricts it to that tenant's keys.
    pub fn revoke_key(&self, id: &str, tenant: Option<&str>) -> Result<(), BillingError> {
        if !self.store.revoke_key(id, tenant)? {
            return Err(BillingError::NotFound(format!("no live key `{id}`")));
        }
        self.keys.remove(id);
        Ok(())
    }

    /// Keys (without secrets), optionally of one tenant.
    pub fn keys(&self, tenant: Option<&str>) -> Result<Vec<KeyRecord>, BillingError> {
        Ok(self
            .store
            .keys()?
            .into_iter()
            .filter(|k| tenant.is_none_or(|t| k.tenant == t))
            .map(|mut k| {
                k.secret_hash.clear();
                k
            })
            .collect())
    }

    /// The price table in force and its version.
    pub fn prices(&self) -> Arc<(u32, PriceTable)> {
        self.prices.load_full()
    }

    /// Stores a new price table version; invocations from now on use it.
    pub fn set_prices(&self, table: PriceTable) -> Result<u32, BillingError> {
        let json = serde_json::to_string(&table).map_err(|e| BillingError::Invalid(e.to_string()))?;
        let version = self.store.add_price_table(&json)?;
        self.prices.store(Arc::new((version, table)));
        Ok(version)
    }

    /// Admits a request for `tenant`, or says which quota refuses it.
    pub fn admit(&self, tenant: &str) -> Result<Option<OwnedSemaphorePermit>, QuotaRefusal> {
        match self.tenants.get(tenant) {
            Some(state) => state.admit(&month_of(now_ms())),
            // A tenant without state (deleted) has no quotas to enforce.
            None => Ok(None),
        }
    }

    /// Model tokens the tenant may still use this month: the least of what
    /// its token quota and its budget (at the dearest token price of any
    /// model) allow. `None` when neither limits it. A generation stops when
    /// it reaches this, as if at its max tokens. What running invocations
    /// and requests hold (`crate::allowance`) is taken off, so concurrent
    /// ones cannot spend the same tokens twice.
    pub fn token_allowance(&self, tenant: &str) -> Option<u64> {
        let state = self.tenants.get(tenant)?;
        let quotas = state.quotas();
        let month = state.month();
        let current = month_of(now_ms());
        let (spent, tokens) = if month.month == current {
            (month.spent_micros, month.tokens)
        } else {
            (0, 0)
        };
        let by_tokens = quotas.monthly_tokens.map(|limit| limit.saturating_sub(tokens));
        let prices = self.prices();
        let dearest = prices
            .1
            .models
            .values()
            .flat_map(|p| {
                [
                    p.per_million_input_tokens,
                    p.per_million_output_tokens,
                    p.per_million_embedding_tokens,
                ]
            })
            .max()
            .unwrap_or(0);
        let by_budget = match (quotas.monthly_budget_micros, dearest) {
            (Some(budget), price) if price > 0 => Some(
                (u128::from(budget.saturating_sub(spent)) * 1_000_000 / u128::from(price)).min(u128::from(u64::MAX))
                    as u64,
            ),
            _ => None,
        };
        let left = match (by_tokens, by_budget) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        // What running invocations and requests may still use is not theirs
        // to spend twice.
        left.map(|l| l.saturating_sub(state.held_tokens()))
    }

    /// The tenant's state (quotas, counters, holds), if it exists.
    pub fn tenant_state(&self, tenant: &str) -> Option<Arc<TenantState>> {
        self.tenants.get(tenant).map(|s| s.clone())
    }

    /// Prices an invocation's usage and writes it durably. Returns once the
    /// records are committed.
    pub async fn record(
        &self,
        tenant: &str,
        function: Option<&str>,
        invocation_id: &str,
        usage: &InvocationUsage,
    ) -> Result<Billed, BillingError> {
        let time_ms = now_ms();
        let prices = self.prices();
        let (price_version, table) = (&prices.0, &prices.1);
        let base = LedgerRecord {
            invocation_id: invocation_id.to_owned(),
            tenant: tenant.to_owned(),
            function: function.map(str::to_owned),
            time_ms,
            price_version: *price_version,
            ..LedgerRecord::default()
        };
        let mut invocation = LedgerRecord {
            event_id: format!("{invocation_id}:0"),
            seq: 0,
            invocations: 1,
            wall_ns: usage.wall_ns,
            cpu_ns: usage.cpu_ns,
            peak_memory_bytes: usage.peak_memory_bytes,
            memory_byte_ms: u128::from(usage.peak_memory_bytes) * u128::from(usage.wall_ns) / 1_000_000,
            device_ns: usage.device_ns,
            device_bytes: usage.device_bytes,
            ..base.clone()
        };
        invocation.amount_micros = table.price(&invocation);
        let mut records = vec![invocation];
        for (i, model) in usage.models.iter().enumerate() {
            let seq = u32::try_from(i + 1).unwrap_or(u32::MAX);
            let mut record = LedgerRecord {
                event_id: format!("{invocation_id}:{seq}"),
                seq,
                model: Some(model.model.clone()),
                tokens_in: model.tokens_in,
                tokens_out: model.tokens_out,
                embedding_tokens: model.embedding_tokens,
                device_ns: model.device_ns,
                ..base.clone()
            };
            record.amount_micros = table.price(&record);
            records.push(record);
        }
        let billed = Billed {
            amount_micros: records.iter().map(|r| r.amount_micros).sum(),
            tokens_in: records.iter().map(|r| r.tokens_in).sum(),
            tokens_out: records.iter().map(|r| r.tokens_out).sum(),
            price_version: *price_version,
        };
        let tokens = billed.tokens_in + billed.tokens_out + records.iter().map(|r| r.embedding_tokens).sum::<u64>();
        self.ledger.append(records).await?;
        if let Some(state) = self.tenants.get(tenant) {
            state.add_usage(&month_of(time_ms), billed.amount_micros, tokens);
        }
        Ok(billed)
    }

    /// Summed usage.
    pub fn usage(&self, filter: &UsageFilter, grouping: UsageGrouping) -> Result<Vec<UsageRow>, BillingError> {
        Ok(self.store.usage(filter, grouping)?)
    }

    /// Raw ledger records.
    pub fn ledger(&self, filter: &UsageFilter) -> Result<Vec<LedgerRecord>, BillingError> {
        Ok(self.store.ledger(filter)?)
    }
}

/// How often the ledger's write-ahead log is checkpointed into the database.
const CHECKPOINT_INTERVAL: std::time::Duration = std::time::Duration::from_secs(5);

/// Checkpoints the ledger's write-ahead log off the commit path, for as long
/// as the ledger lives.
fn spawn_checkpointer(store: SqliteStore, ledger: &Ledger) -> std::io::Result<()> {
    let alive = ledger.liveness();
    std::thread::Builder::new()
        .name("wafer-checkpoint".into())
        .spawn(move || {
            while alive.strong_count() > 0 {
                std::thread::sleep(CHECKPOINT_INTERVAL);
                if let Err(error) = store.checkpoint() {
                    tracing::warn!(%error, "ledger checkpoint failed");
                }
            }
        })?;
    Ok(())
}

/// A tenant as the admin API shows it.
#[derive(Debug, Serialize)]
pub struct TenantView {
    /// Name.
    pub name: String,
    /// Created, ms since the epoch.
    pub created_ms: u64,
    /// Quotas in force (node defaults merged with the tenant's own).
    pub quotas: TenantQuotas,
    /// Spend this month, micro-units.
    pub spent_this_month_micros: u64,
    /// Tokens this month.
    pub tokens_this_month: u64,
}
