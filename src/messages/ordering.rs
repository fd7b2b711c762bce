//! Per-chat ordering: everything that creates, edits or deletes a message of
//! a chat runs inside that chat's [`ChatOrderGuard`], from the transaction
//! until its events are published. So message ids (UUIDv7, forced to grow
//! within a chat) are committed in id order, AND their events reach Redis in
//! that order: what a client receives live is in the order the history lists.
//! Mark-read and hide run inside it too: the one-statement send
//! (`plain_send`) reads read positions from its snapshot, and `chat.read`
//! then keeps its place among the chat's `message.new` events.
//!
//! The guard is a Postgres session advisory lock (so several API instances
//! serialise too), taken after an in-process per-chat mutex (so one instance
//! never parks more than one pool connection per chat on the advisory lock).
//! If the guard is dropped without `release` (cancelled request, panic), its
//! connection is closed instead of returned to the pool, which makes
//! Postgres drop the lock.

use std::sync::LazyLock;

use chrono::{DateTime, Utc};
use sqlx::pool::PoolConnection;
use sqlx::{Connection, PgConnection, PgPool, Postgres, Transaction};
use tokio::sync::OwnedMutexGuard;
use uuid::Uuid;

use crate::infra::keyed_lock::KeyedLocks;

/// Advisory-lock namespace (`pg_advisory_lock(int4, int4)` keys do not
/// collide with the single-bigint keys of the scheduler).
const LOCK_NAMESPACE: i32 = 0x4d53_4743; // "MSGC"

static LOCAL_LOCKS: LazyLock<KeyedLocks<Uuid>> = LazyLock::new(Default::default);

fn lock_key(chat_id: Uuid) -> i32 {
    let v = chat_id.as_u128();
    let folded = (v as u64) ^ ((v >> 64) as u64);
    ((folded as u32) ^ ((folded >> 32) as u32)) as i32
}

/// Exclusive ordering rights on one chat, holding the connection to use.
pub struct ChatOrderGuard {
    conn: Option<PoolConnection<Postgres>>,
    key: i32,
    /// The advisory lock is held (taken by `lock` or `begin_locked`).
    locked: bool,
    _local: OwnedMutexGuard<()>,
}

impl ChatOrderGuard {
    /// Waits for the chat's turn.
    pub async fn acquire(db: &PgPool, chat_id: Uuid) -> Result<Self, sqlx::Error> {
        let local = LOCAL_LOCKS.lock(chat_id).await;
        let mut conn = crate::infra::db::acquire(db).await?;
        let key = lock_key(chat_id);
        sqlx::query("SELECT pg_advisory_lock($1, $2)")
            .bind(LOCK_NAMESPACE)
            .bind(key)
            .execute(&mut *conn)
            .await?;
        Ok(Self {
            conn: Some(conn),
            key,
            locked: true,
            _local: local,
        })
    }

    /// As [`ChatOrderGuard::acquire`], but the advisory lock is taken by
    /// [`ChatOrderGuard::begin_locked`] in the same round trip as `BEGIN`
    /// (the send, mark-read, hide), or by [`ChatOrderGuard::lock`] on its
    /// own. Until then the guard orders this instance only.
    pub async fn acquire_deferred(db: &PgPool, chat_id: Uuid) -> Result<Self, sqlx::Error> {
        let local = LOCAL_LOCKS.lock(chat_id).await;
        // The send's first connection (its account is read on it): taken
        // where a wait for the pool is counted (db_pool_waiters).
        let conn = crate::infra::db::acquire(db).await?;
        Ok(Self {
            conn: Some(conn),
            key: lock_key(chat_id),
            locked: false,
            _local: local,
        })
    }

    /// Takes the advisory lock and opens a transaction in one simple-query
    /// round trip. The lock comes first, so in READ COMMITTED every later
    /// statement of the transaction sees what the previous holder committed.
    /// It is a session lock: it outlives the transaction until `release`.
    /// A guard already locked (by `lock`) just begins.
    pub async fn begin_locked(&mut self) -> Result<Transaction<'_, Postgres>, sqlx::Error> {
        if self.locked {
            return self.conn().begin().await;
        }
        self.locked = true;
        // Both values are integers of ours: nothing to escape.
        let sql = format!(
            "SELECT pg_advisory_lock({LOCK_NAMESPACE}, {}); BEGIN",
            self.key
        );
        self.conn().begin_with(sql).await
    }

    /// Takes a deferred guard's advisory lock on its own (the one-statement
    /// send runs no transaction). A no-op when held already.
    pub async fn lock(&mut self) -> Result<(), sqlx::Error> {
        if self.locked {
            return Ok(());
        }
        // Set first: after an error the lock may be held all the same, and
        // `release` unlocks (a lock not held only makes PostgreSQL warn).
        self.locked = true;
        let key = self.key;
        sqlx::query("SELECT pg_advisory_lock($1, $2)")
            .bind(LOCK_NAMESPACE)
            .bind(key)
            .execute(self.conn())
            .await?;
        Ok(())
    }

    /// The connection holding the lock: run the transaction and the
    /// post-commit reads on it.
    pub fn conn(&mut self) -> &mut PgConnection {
        match self.conn.as_mut() {
            Some(c) => c,
            // `conn` is only taken by `release`/`drop`, which consume self.
            None => unreachable!("ChatOrderGuard used after release"),
        }
    }

    /// Unlocks and returns the connection to the pool.
    pub async fn release(mut self) {
        if let Some(mut conn) = self.conn.take() {
            if !self.locked {
                // A deferred guard that never locked (refused before).
                return;
            }
            let unlocked = sqlx::query("SELECT pg_advisory_unlock($1, $2)")
                .bind(LOCK_NAMESPACE)
                .bind(self.key)
                .execute(&mut *conn)
                .await;
            if let Err(e) = unlocked {
                tracing::warn!(error = %e, "advisory unlock failed; closing the connection");
                drop(conn.detach());
            }
        }
    }
}

impl Drop for ChatOrderGuard {
    fn drop(&mut self) {
        if let Some(conn) = self.conn.take() {
            // Never hand a connection that still holds the lock back to the
            // pool: closing it releases the lock server-side.
            drop(conn.detach());
        }
    }
}

/// The id and timestamp of the next message of a chat, given its current
/// last message (read under the chat's row lock) and the database clock:
/// a fresh UUIDv7, bumped past the previous id if a clock lagged, and a
/// `created_at` that never goes backwards either.
pub fn next_message_id(
    last_id: Option<Uuid>,
    last_at: Option<DateTime<Utc>>,
    now: DateTime<Utc>,
) -> (Uuid, DateTime<Utc>) {
    let mut id = Uuid::now_v7();
    if let Some(last) = last_id {
        if id <= last {
            id = successor(last);
        }
    }
    let at = match last_at {
        Some(t) if t > now => t,
        _ => now,
    };
    (id, at)
}

/// The smallest UUIDv7 greater than `id` (increments the random part; on
/// overflow moves to the next millisecond).
fn successor(id: Uuid) -> Uuid {
    const RAND_B: u128 = (1 << 62) - 1;
    let v = id.as_u128();
    if v & RAND_B != RAND_B {
        return Uuid::from_u128(v + 1);
    }
    let millis = (v >> 80) as u64 + 1;
    uuid::Builder::from_unix_timestamp_millis(millis, &[0; 10]).into_uuid()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_grow_even_when_the_clock_lags() {
        let future =
            uuid::Builder::from_unix_timestamp_millis(u64::MAX >> 17, &[7; 10]).into_uuid();
        let now = Utc::now();
        let (id, at) = next_message_id(Some(future), Some(now), now - chrono::Duration::seconds(5));
        assert!(id > future);
        assert_eq!(id.get_version_num(), 7);
        assert_eq!(at, now);
        let saturated = Uuid::from_u128(future.as_u128() | ((1 << 62) - 1));
        let next = successor(saturated);
        assert!(next > saturated);
        assert_eq!(next.get_version_num(), 7);
    }

    #[test]
    fn fresh_ids_are_used_when_ahead() {
        let (id, _) = next_message_id(Some(Uuid::nil()), None, Utc::now());
        assert_eq!(id.get_version_num(), 7);
    }
}
