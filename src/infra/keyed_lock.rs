//! In-process async locks by key (a chat, a user), created on demand and
//! forgotten once nobody holds or waits for them.

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::{Arc, Mutex, Weak};

use tokio::sync::OwnedMutexGuard;

/// A map of per-key async mutexes.
pub struct KeyedLocks<K> {
    map: Mutex<HashMap<K, Weak<tokio::sync::Mutex<()>>>>,
}

impl<K> Default for KeyedLocks<K> {
    fn default() -> Self {
        Self {
            map: Mutex::new(HashMap::new()),
        }
    }
}

/// Dead entries are swept once the map holds more than this many keys.
const SWEEP_ABOVE: usize = 1024;

impl<K: Hash + Eq + Copy> KeyedLocks<K> {
    /// Waits for exclusive use of `key`.
    pub async fn lock(&self, key: K) -> OwnedMutexGuard<()> {
        self.mutex(key).lock_owned().await
    }

    fn mutex(&self, key: K) -> Arc<tokio::sync::Mutex<()>> {
        // A panic while holding the map lock cannot leave it half-updated
        // (single insert/retain), so recover from poisoning.
        let mut map = self.map.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(lock) = map.get(&key).and_then(Weak::upgrade) {
            return lock;
        }
        if map.len() > SWEEP_ABOVE {
            map.retain(|_, w| w.strong_count() > 0);
        }
        let lock = Arc::new(tokio::sync::Mutex::new(()));
        map.insert(key, Arc::downgrade(&lock));
        lock
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn same_key_excludes_other_keys_do_not() {
        let locks = KeyedLocks::<u32>::default();
        let a = locks.lock(1).await;
        let b = tokio::time::timeout(std::time::Duration::from_millis(20), locks.lock(1)).await;
        assert!(b.is_err(), "second holder of key 1 must wait");
        let _c = locks.lock(2).await;
        drop(a);
        let _again = locks.lock(1).await;
    }
}
