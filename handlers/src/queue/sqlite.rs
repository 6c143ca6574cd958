//! The queue port on an embedded SQLite database, for the local mode: SQS's
//! semantics that matter here, on one file.
//!
//! - At-least-once delivery: a received message stays in the table, invisible
//!   for the visibility timeout, until it is deleted with its current receipt.
//! - Receive counts, and a dead-letter table: a message received more than
//!   `max_receives` times moves there on its next receive, as SQS's redrive
//!   policy does.
//! - Durable: write-ahead log with `synchronous=NORMAL`, so a sent message
//!   survives a crash or kill of the process (a power loss may drop the last
//!   transactions; SQLite's docs describe the trade-off).
//! - Long polling: a receive that finds nothing waits for a send, or for a
//!   message to become visible again, up to its wait time.
//!
//! Calls run on Tokio's blocking pool; one connection, serialised by a mutex,
//! which is what SQLite allows for writers anyway. Sends arrive in batches of
//! up to [`SqliteQueue::MAX_BATCH`] (one transaction each).

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use rusqlite::{Connection, OptionalExtension, params};
use tokio::sync::Notify;

use super::{DeadLetter, DeadLetters, OutgoingMessage, Queue, QueueError, ReceivedMessage};
use crate::id::{EmailId, now_millis};

/// Settings of a local queue, the counterparts of an SQS queue's attributes.
#[derive(Debug, Clone, Copy)]
pub struct SqliteQueueConfig {
    pub visibility_timeout: Duration,
    /// Receives after which a message goes to the dead-letter table.
    pub max_receives: u32,
}

/// The local mode's defaults (`queue2bucket dev` without options): SQS's own
/// default visibility timeout, and five receives before dead-lettering.
impl Default for SqliteQueueConfig {
    fn default() -> Self {
        Self {
            visibility_timeout: Duration::from_secs(30),
            max_receives: 5,
        }
    }
}

pub struct SqliteQueue {
    path: PathBuf,
    conn: Arc<Mutex<Connection>>,
    config: SqliteQueueConfig,
    sent: Arc<Notify>,
}

const SCHEMA: &str = "
PRAGMA journal_mode = WAL;
PRAGMA synchronous = NORMAL;
PRAGMA busy_timeout = 5000;
CREATE TABLE IF NOT EXISTS messages (
    seq           INTEGER PRIMARY KEY AUTOINCREMENT,
    message_id    TEXT NOT NULL UNIQUE,
    body          TEXT NOT NULL,
    email_id      TEXT,
    sent_at_ms    INTEGER NOT NULL,
    claim         INTEGER,
    receive_count INTEGER NOT NULL DEFAULT 0,
    visible_at_ms INTEGER NOT NULL DEFAULT 0,
    receipt       TEXT UNIQUE
);
CREATE INDEX IF NOT EXISTS messages_by_visibility ON messages (visible_at_ms, seq);
CREATE TABLE IF NOT EXISTS dead_letters (
    message_id    TEXT PRIMARY KEY,
    body          TEXT NOT NULL,
    email_id      TEXT,
    sent_at_ms    INTEGER NOT NULL,
    claim         INTEGER,
    receive_count INTEGER NOT NULL,
    dead_at_ms    INTEGER NOT NULL
);
";

fn db_error(e: rusqlite::Error) -> QueueError {
    QueueError(format!("sqlite: {e}"))
}

impl SqliteQueue {
    /// Messages per send transaction: larger than SQS's 10, since a local
    /// commit costs the same whatever its size.
    pub const MAX_BATCH: usize = 256;

    pub fn open(path: &Path, config: SqliteQueueConfig) -> Result<Self, QueueError> {
        let conn = Connection::open(path).map_err(db_error)?;
        conn.execute_batch(SCHEMA).map_err(db_error)?;
        // Data directories made before claim checks lack the column.
        for table in ["messages", "dead_letters"] {
            let has_claim = conn
                .prepare(&format!("SELECT claim FROM {table} LIMIT 0"))
                .is_ok();
            if !has_claim {
                conn.execute_batch(&format!("ALTER TABLE {table} ADD COLUMN claim INTEGER"))
                    .map_err(db_error)?;
            }
        }
        Ok(Self {
            path: path.to_owned(),
            conn: Arc::new(Mutex::new(conn)),
            config,
            sent: Arc::new(Notify::new()),
        })
    }

    /// Runs `f` on the connection, on the blocking pool.
    async fn with_conn<T, F>(&self, f: F) -> Result<T, QueueError>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection) -> rusqlite::Result<T> + Send + 'static,
    {
        let conn = self.conn.clone();
        tokio::task::spawn_blocking(move || {
            let mut conn = conn.lock().unwrap_or_else(|e| e.into_inner());
            f(&mut conn).map_err(db_error)
        })
        .await
        .map_err(|e| QueueError(format!("sqlite task: {e}")))?
    }

    /// Messages waiting or in flight (not dead-lettered).
    pub async fn depth(&self) -> Result<u64, QueueError> {
        self.with_conn(|c| c.query_row("SELECT COUNT(*) FROM messages", [], |r| r.get::<_, i64>(0)))
            .await
            .map(|n| n as u64)
    }

    /// Messages waiting (visible), in flight (received, not yet deleted),
    /// and the age of the oldest, in milliseconds.
    pub async fn status(&self) -> Result<(u64, u64, Option<u64>), QueueError> {
        let now = now_millis() as i64;
        self.with_conn(move |c| {
            c.query_row(
                "SELECT COALESCE(SUM(visible_at_ms <= ?1), 0), COALESCE(SUM(visible_at_ms > ?1), 0),
                        MIN(sent_at_ms)
                 FROM messages",
                params![now],
                |r| Ok((r.get::<_, i64>(0)?, r.get::<_, i64>(1)?, r.get::<_, Option<i64>>(2)?)),
            )
        })
        .await
        .map(|(waiting, in_flight, oldest)| {
            (
                waiting as u64,
                in_flight as u64,
                oldest.map(|t| (now - t).max(0) as u64),
            )
        })
    }

    /// Messages moved to the dead-letter table.
    pub async fn dead_letter_count(&self) -> Result<u64, QueueError> {
        self.with_conn(|c| {
            c.query_row("SELECT COUNT(*) FROM dead_letters", [], |r| {
                r.get::<_, i64>(0)
            })
        })
        .await
        .map(|n| n as u64)
    }

    /// Takes up to `max` visible messages, dead-lettering those received too
    /// often. Returns the messages and, if none, when the next one becomes
    /// visible.
    fn take(
        conn: &mut Connection,
        max: usize,
        config: SqliteQueueConfig,
    ) -> rusqlite::Result<(Vec<ReceivedMessage>, Option<u64>)> {
        let now = now_millis() as i64;
        let tx = conn.transaction()?;
        let mut out = Vec::new();
        {
            let mut select = tx.prepare_cached(
                "SELECT seq, message_id, body, email_id, sent_at_ms, receive_count, claim
                 FROM messages WHERE visible_at_ms <= ?1 ORDER BY seq LIMIT ?2",
            )?;
            type Row = (i64, String, String, Option<String>, i64, u32, Option<i64>);
            let rows: Vec<Row> = select
                .query_map(params![now, max as i64], |r| {
                    Ok((
                        r.get(0)?,
                        r.get(1)?,
                        r.get(2)?,
                        r.get(3)?,
                        r.get(4)?,
                        r.get(5)?,
                        r.get(6)?,
                    ))
                })?
                .collect::<Result<_, _>>()?;
            let mut claim = tx.prepare_cached(
                "UPDATE messages SET receive_count = ?2, visible_at_ms = ?3, receipt = ?4
                 WHERE seq = ?1",
            )?;
            let mut bury = tx.prepare_cached(
                "INSERT OR REPLACE INTO dead_letters
                 (message_id, body, email_id, sent_at_ms, claim, receive_count, dead_at_ms)
                 SELECT message_id, body, email_id, sent_at_ms, claim, receive_count, ?2
                 FROM messages WHERE seq = ?1",
            )?;
            let mut remove = tx.prepare_cached("DELETE FROM messages WHERE seq = ?1")?;
            let visible_at = now + config.visibility_timeout.as_millis() as i64;
            for (seq, message_id, body, email_id, sent_at_ms, count, claim_size) in rows {
                if count >= config.max_receives {
                    bury.execute(params![seq, now])?;
                    remove.execute(params![seq])?;
                    continue;
                }
                let receipt = uuid::Uuid::new_v4().to_string();
                claim.execute(params![seq, count + 1, visible_at, receipt])?;
                out.push(ReceivedMessage {
                    message_id,
                    receipt,
                    body,
                    email_id,
                    sent_at_ms: Some(sent_at_ms as u64),
                    receive_count: count + 1,
                    claim: claim_size.map(|n| n as u64),
                });
            }
        }
        let next_visible = if out.is_empty() {
            tx.query_row("SELECT MIN(visible_at_ms) FROM messages", [], |r| {
                r.get::<_, Option<i64>>(0)
            })
            .optional()?
            .flatten()
            .map(|t| t.max(0) as u64)
        } else {
            None
        };
        tx.commit()?;
        Ok((out, next_visible))
    }
}

#[async_trait]
impl Queue for SqliteQueue {
    fn max_batch(&self) -> usize {
        Self::MAX_BATCH
    }

    /// As an SQS queue made today.
    fn max_message_bytes(&self) -> usize {
        super::SQS_MAX_BYTES
    }

    /// A local commit takes any number of messages.
    fn max_batch_bytes(&self) -> usize {
        usize::MAX
    }

    async fn send_batch(&self, messages: &[OutgoingMessage]) -> Vec<Result<(), QueueError>> {
        let rows: Vec<(String, String, String, i64, Option<i64>)> = messages
            .iter()
            .map(|m| {
                (
                    uuid::Uuid::new_v4().to_string(),
                    m.body.clone(),
                    m.id.to_string(),
                    m.id.unix_millis() as i64,
                    m.claim.map(|n| n as i64),
                )
            })
            .collect();
        let n = rows.len();
        let result = self
            .with_conn(move |conn| {
                let tx = conn.transaction()?;
                {
                    let mut insert = tx.prepare_cached(
                        "INSERT INTO messages (message_id, body, email_id, sent_at_ms, claim)
                         VALUES (?1, ?2, ?3, ?4, ?5)",
                    )?;
                    for (message_id, body, email_id, sent_at, claim) in &rows {
                        insert.execute(params![message_id, body, email_id, sent_at, claim])?;
                    }
                }
                tx.commit()
            })
            .await;
        if result.is_ok() {
            self.sent.notify_waiters();
        }
        vec![result; n]
    }

    async fn receive(
        &self,
        max: usize,
        wait: Duration,
    ) -> Result<Vec<ReceivedMessage>, QueueError> {
        let deadline = tokio::time::Instant::now() + wait;
        let config = self.config;
        loop {
            // Registered before looking, so a send in between is not missed.
            let sent = self.sent.notified();
            let (messages, next_visible) = self
                .with_conn(move |conn| Self::take(conn, max, config))
                .await?;
            if !messages.is_empty() {
                return Ok(messages);
            }
            let now = tokio::time::Instant::now();
            if now >= deadline {
                return Ok(messages);
            }
            let mut until = deadline;
            if let Some(at) = next_visible {
                let in_ms = at.saturating_sub(now_millis());
                until = until.min(now + Duration::from_millis(in_ms.max(1)));
            }
            let _ = tokio::time::timeout_at(until, sent).await;
        }
    }

    async fn delete_batch(&self, receipts: &[&str]) -> Vec<Result<(), QueueError>> {
        let receipts: Vec<String> = receipts.iter().map(|r| r.to_string()).collect();
        let n = receipts.len();
        let outcome = self
            .with_conn(move |conn| {
                let tx = conn.transaction()?;
                let mut results = Vec::with_capacity(receipts.len());
                {
                    let mut delete =
                        tx.prepare_cached("DELETE FROM messages WHERE receipt = ?1")?;
                    for r in &receipts {
                        results.push(delete.execute(params![r])? == 1);
                    }
                }
                tx.commit()?;
                Ok(results)
            })
            .await;
        match outcome {
            Ok(results) => results
                .into_iter()
                .map(|deleted| {
                    deleted
                        .then_some(())
                        .ok_or_else(|| QueueError("receipt is no longer current".into()))
                })
                .collect(),
            Err(e) => vec![Err(e); n],
        }
    }

    async fn retry_later(&self, receipt: &str, delay: Duration) -> Result<(), QueueError> {
        let receipt = receipt.to_owned();
        let at = now_millis() as i64 + delay.as_millis() as i64;
        let changed = self
            .with_conn(move |conn| {
                conn.execute(
                    "UPDATE messages SET visible_at_ms = ?2 WHERE receipt = ?1",
                    params![receipt, at],
                )
            })
            .await?;
        if changed == 1 {
            Ok(())
        } else {
            Err(QueueError("receipt is no longer current".into()))
        }
    }

    async fn visibility_timeout(&self) -> Result<Duration, QueueError> {
        self.depth().await.map(|_| self.config.visibility_timeout)
    }
}

#[async_trait]
impl DeadLetters for SqliteQueue {
    fn describe(&self) -> String {
        format!("the dead-letter table of {}", self.path.display())
    }

    async fn list(&self) -> Result<Vec<DeadLetter>, QueueError> {
        let rows: Vec<(String, Option<String>, i64, u32)> = self
            .with_conn(|c| {
                let mut select = c.prepare(
                    "SELECT message_id, email_id, sent_at_ms, receive_count
                     FROM dead_letters ORDER BY dead_at_ms, message_id",
                )?;
                select
                    .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))?
                    .collect()
            })
            .await?;
        Ok(rows
            .into_iter()
            .map(
                |(message_id, email_id, sent_at_ms, receive_count)| DeadLetter {
                    id: email_id
                        .as_deref()
                        .and_then(EmailId::parse)
                        .unwrap_or_else(|| EmailId::derived(&message_id, sent_at_ms as u64)),
                    message_id,
                    sent_at_ms: Some(sent_at_ms as u64),
                    receive_count,
                },
            )
            .collect())
    }

    async fn redrive(&self) -> Result<u64, QueueError> {
        // One transaction: a message is in exactly one of the two tables.
        let moved = self
            .with_conn(|c| {
                let tx = c.transaction()?;
                let moved = tx.execute(
                    "INSERT INTO messages (message_id, body, email_id, sent_at_ms, claim)
                     SELECT message_id, body, email_id, sent_at_ms, claim FROM dead_letters",
                    [],
                )?;
                tx.execute("DELETE FROM dead_letters", [])?;
                tx.commit()?;
                Ok(moved as u64)
            })
            .await?;
        if moved > 0 {
            self.sent.notify_waiters();
        }
        Ok(moved)
    }
}
