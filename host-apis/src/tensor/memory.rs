//! Memory accounting: every byte a tensor or model holds is charged to a
//! [`Budget`], a list of meters (invocation, tenant, device) reserved
//! together or not at all, before it is allocated. The [`Reservation`]
//! gives the bytes back when the buffer is dropped.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use super::error::{Result, TensorError};

/// What a meter limits, which decides the error when it is full.
#[derive(Debug, Clone)]
pub enum MeterKind {
    /// A configured quota: exceeding it is [`TensorError::OverQuota`].
    Quota(&'static str),
    /// A device's physical memory: [`TensorError::OutOfMemory`].
    Device(String),
}

/// A byte counter with a limit.
#[derive(Debug)]
pub struct MemoryMeter {
    kind: MeterKind,
    limit: u64,
    used: AtomicU64,
}

impl MemoryMeter {
    /// A meter of `limit` bytes.
    pub fn new(kind: MeterKind, limit: u64) -> Arc<Self> {
        Arc::new(MemoryMeter {
            kind,
            limit,
            used: AtomicU64::new(0),
        })
    }

    /// Bytes in use.
    pub fn used(&self) -> u64 {
        self.used.load(Ordering::Acquire)
    }

    /// The limit in bytes.
    pub fn limit(&self) -> u64 {
        self.limit
    }
    fn try_add(&self, bytes: u64) -> Result<()> {
        let mut used = self.used.load(Ordering::Acquire);
        loop {
            let next = used.checked_add(bytes).filter(|&n| n <= self.limit);
            let Some(next) = next else {
                return Err(match &self.kind {
                    MeterKind::Quota(what) => TensorError::OverQuota {
                        what,
                        limit: self.limit,
                        used,
                        requested: bytes,
                    },
                    MeterKind::Device(device) => TensorError::OutOfMemory {
                        device: device.clone(),
                        requested: bytes,
                        available: self.limit.saturating_sub(used),
                    },
                });
            };
            match self
                .used
                .compare_exchange_weak(used, next, Ordering::AcqRel, Ordering::Acquire)
            {
                Ok(_) => return Ok(()),
                Err(now) => used = now,
            }
        }
    }

    fn sub(&self, bytes: u64) {
        let _ = self
            .used
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |u| Some(u.saturating_sub(bytes)));
    }
}

/// The meters one allocation is charged to, all or none.
#[derive(Debug, Clone)]
pub struct Budget(Arc<[Arc<MemoryMeter>]>);

impl Budget {
    /// Charges every meter in `meters`.
    pub fn new(meters: Vec<Arc<MemoryMeter>>) -> Self {
        Budget(meters.into())
    }

    /// No limit at all (tests, tools).
    pub fn unlimited() -> Self {
        Budget::new(vec![MemoryMeter::new(MeterKind::Quota("unlimited"), u64::MAX)])
    }

    /// Bytes in use on the first meter (the most specific one).
    pub fn used(&self) -> u64 {
        self.0.first().map_or(0, |m| m.used())
    }

    /// Reserves `bytes` on every meter, or on none of them.
    pub fn reserve(&self, bytes: u64) -> Result<Reservation> {
        for (i, m) in self.0.iter().enumerate() {
            if let Err(e) = m.try_add(bytes) {
                for done in self.0.iter().take(i) {
                    done.sub(bytes);
                }
                return Err(e);
            }
        }
        Ok(Reservation {
            budget: Some(self.clone()),
            bytes,
        })
    }
}

/// Bytes held on a budget's meters, given back on drop.
#[derive(Debug)]
pub struct Reservation {
    budget: Option<Budget>,
    bytes: u64,
}

impl Reservation {
    /// A reservation that charges nothing.
    pub fn none() -> Self {
        Reservation { budget: None, bytes: 0 }
    }

    /// The bytes held.
    pub fn bytes(&self) -> u64 {
        self.bytes
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        if let Some(b) = &self.budget {
            for m in b.0.iter() {
                m.sub(self.bytes);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_budget_reserves_all_or_nothing() {
        let device = MemoryMeter::new(MeterKind::Device("cpu:0".into()), 100);
        let tenant = MemoryMeter::new(MeterKind::Quota("tenant"), 80);
        let a = MemoryMeter::new(MeterKind::Quota("invocation"), 50);
        let b = MemoryMeter::new(MeterKind::Quota("invocation"), 50);
        let ba = Budget::new(vec![a.clone(), tenant.clone(), device.clone()]);
        let bb = Budget::new(vec![b.clone(), tenant.clone(), device.clone()]);
        let r1 = ba.reserve(50);
        assert!(r1.is_ok());
        assert!(matches!(
            ba.reserve(1),
            Err(TensorError::OverQuota { what: "invocation", .. })
        ));
        assert!(matches!(
            bb.reserve(31),
            Err(TensorError::OverQuota { what: "tenant", .. })
        ));
        assert_eq!((b.used(), tenant.used(), device.used()), (0, 50, 50));
        drop(r1);
        assert_eq!((a.used(), tenant.used(), device.used()), (0, 0, 0));
        let _other = Budget::new(vec![device.clone()]).reserve(90);
        assert!(matches!(
            bb.reserve(20),
            Err(TensorError::OutOfMemory { available: 10, .. })
        ));
        assert_eq!((b.used(), tenant.used()), (0, 0));
    }
}
