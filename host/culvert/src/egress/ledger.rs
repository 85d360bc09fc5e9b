//! [`ConnectionLedger`]: each tenant's open egress connections on this
//! host, so that `max_http_connections` holds under concurrency.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// Open connections per tenant. A [`ConnectionPermit`] is one connection;
/// dropping it (the connection closed) gives it back.
#[derive(Debug, Default)]
pub struct ConnectionLedger {
    open: Mutex<HashMap<String, u32>>,
}

/// One open connection of a tenant.
#[derive(Debug)]
pub(crate) struct ConnectionPermit {
    ledger: Arc<ConnectionLedger>,
    tenant: String,
}

impl ConnectionLedger {
    /// Take one of `tenant`'s `max` connections, or `None` when all are
    /// in use.
    pub(crate) fn try_open(self: &Arc<Self>, tenant: &str, max: u32) -> Option<ConnectionPermit> {
        let mut open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        let n = open.entry(tenant.to_string()).or_insert(0);
        if *n >= max {
            return None;
        }
        *n += 1;
        Some(ConnectionPermit {
            ledger: self.clone(),
            tenant: tenant.to_string(),
        })
    }

    /// `tenant`'s open connections.
    pub fn open(&self, tenant: &str) -> u32 {
        let open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        open.get(tenant).copied().unwrap_or(0)
    }
}

impl Drop for ConnectionPermit {
    fn drop(&mut self) {
        let mut open = self.ledger.open.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(n) = open.get_mut(&self.tenant) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                open.remove(&self.tenant);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn permits_are_counted_per_tenant_and_given_back() {
        let ledger = Arc::new(ConnectionLedger::default());
        let a1 = ledger.try_open("a", 2).unwrap();
        let _a2 = ledger.try_open("a", 2).unwrap();
        assert!(ledger.try_open("a", 2).is_none());
        let _b = ledger.try_open("b", 2).unwrap();
        drop(a1);
        assert_eq!(ledger.open("a"), 1);
        assert!(ledger.try_open("a", 2).is_some());
    }
}
