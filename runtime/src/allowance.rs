//! One invocation's (or API request's) hold on its tenant's token allowance.
//!
//! The allowance is what the tenant's monthly token quota and budget leave.
//! A hold says how much of it the holder may still consume (running
//! generations at their most, finished work at what it used) until the
//! ledger has recorded it; [`Billing::token_allowance`] takes every hold
//! off, so concurrent invocations of one tenant cannot both spend the same
//! remaining tokens. Dropping the hold, after the ledger write, gives it
//! back.
//!
//! [`Billing::token_allowance`]: crate::billing::Billing::token_allowance

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use wafer_host_apis::llm::TokenAllowance;

use crate::billing::quotas::TenantState;
use crate::node::Node;

/// A hold on a tenant's token allowance; see the module docs.
pub struct TenantHold {
    node: Arc<Node>,
    tenant: String,
    state: Arc<TenantState>,
    held: AtomicU64,
}

impl std::fmt::Debug for TenantHold {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TenantHold")
            .field("tenant", &self.tenant)
            .field("held", &self.held.load(Ordering::Relaxed))
            .finish()
    }
}

impl TenantHold {
    /// A hold of nothing yet; `None` when the tenant does not exist or its
    /// quotas set no token limit (there is nothing to share then).
    pub fn new(node: &Arc<Node>, tenant: &str) -> Option<Arc<Self>> {
        node.billing.token_allowance(tenant)?;
        let state = node.billing.tenant_state(tenant)?;
        Some(Arc::new(TenantHold {
            node: node.clone(),
            tenant: tenant.to_owned(),
            state,
            held: AtomicU64::new(0),
        }))
    }

    /// Tokens the tenant may still use, net of every hold (this one's included).
    pub fn left(&self) -> Option<u64> {
        self.node.billing.token_allowance(&self.tenant)
    }

    /// Hold `tokens` from now on (replaces what was held).
    pub fn set(&self, tokens: u64) {
        let old = self.held.swap(tokens, Ordering::AcqRel);
        self.state.change_hold(old, tokens);
    }
}

impl TokenAllowance for TenantHold {
    fn left(&self) -> Option<u64> {
        TenantHold::left(self)
    }

    fn hold(&self, tokens: u64) {
        self.set(tokens);
    }
}

impl Drop for TenantHold {
    fn drop(&mut self) {
        self.state.change_hold(*self.held.get_mut(), 0);
    }
}
