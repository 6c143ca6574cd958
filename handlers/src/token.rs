//! Token checking with a cached expected value.
//!
//! - The expected token is read from the secret store at most once per `ttl`
//!   while presented tokens match it.
//! - A token that does not match triggers one re-read (the token may have
//!   been rotated), but re-reads happen at most once per `refresh_interval`,
//!   failed ones included, so bad tokens cannot multiply calls to the store.
//! - Concurrent requests share one read (single flight).
//! - When the store fails, the last known value keeps serving: a rotation
//!   is then noticed once the store is back.
//! - Only a SHA-256 digest of the expected token is kept, and digests are
//!   compared in constant time: the time taken says nothing about how much of
//!   a guess matched, nor about the token's length.

use std::sync::{Arc, RwLock};
use std::time::Duration;

use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use tokio::sync::Mutex;
use tokio::time::Instant;

use crate::secret::{SecretError, SecretSource};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error("missing token")]
    Missing,
    #[error("invalid token")]
    Invalid,
    /// The expected value could not be read and none is known.
    #[error("token store unavailable")]
    Unavailable(#[source] SecretError),
}

type Digest32 = [u8; 32];

/// Least time between two reads while no value has ever been read.
const COLD_RETRY: Duration = Duration::from_secs(1);

#[derive(Clone, Copy)]
struct Cached {
    digest: Option<Digest32>,
    /// When `digest` was read.
    read_at: Instant,
}

#[derive(Clone, Copy)]
struct State {
    cached: Option<Cached>,
    /// Last read attempt, successful or not.
    attempted_at: Option<Instant>,
}

pub struct TokenChecker {
    source: Arc<dyn SecretSource>,
    ttl: Duration,
    refresh_interval: Duration,
    state: RwLock<State>,
    reading: Mutex<()>,
}

impl TokenChecker {
    pub fn new(source: Arc<dyn SecretSource>, ttl: Duration, refresh_interval: Duration) -> Self {
        Self {
            source,
            ttl,
            refresh_interval,
            state: RwLock::new(State {
                cached: None,
                attempted_at: None,
            }),
            reading: Mutex::new(()),
        }
    }

    /// Accepts `presented` if it equals the expected token.
    pub async fn verify(&self, presented: &str) -> Result<(), TokenError> {
        if presented.is_empty() {
            return Err(TokenError::Missing);
        }
        let presented = digest(presented);
        let state = self.snapshot();
        let now = Instant::now();
        match state.cached {
            Some(cached) => {
                let fresh = now.duration_since(cached.read_at) < self.ttl;
                if fresh && matches(&cached, &presented) {
                    return Ok(());
                }
                if !self.may_read(&state, now) {
                    // Stale or mismatched, but the store was asked recently.
                    return if matches(&cached, &presented) {
                        Ok(())
                    } else {
                        Err(TokenError::Invalid)
                    };
                }
            }
            None if !self.may_read(&state, now) => {
                // The last read failed and nothing is known: fail fast.
                return Err(TokenError::Unavailable(SecretError(
                    "recent read failed".into(),
                )));
            }
            None => {}
        }
        let cached = self.read(state.attempted_at).await?;
        if matches(&cached, &presented) {
            Ok(())
        } else {
            Err(TokenError::Invalid)
        }
    }

    /// Ok once the expected token is known; reads it if it is not (within
    /// the same rate limit as verification).
    pub async fn ensure_known(&self) -> Result<(), TokenError> {
        let state = self.snapshot();
        if state.cached.is_some() {
            return Ok(());
        }
        if !self.may_read(&state, Instant::now()) {
            return Err(TokenError::Unavailable(SecretError(
                "recent read failed".into(),
            )));
        }
        self.read(state.attempted_at).await.map(|_| ())
    }

    fn snapshot(&self) -> State {
        *self.state.read().unwrap_or_else(|e| e.into_inner())
    }

    fn may_read(&self, state: &State, now: Instant) -> bool {
        // With nothing known every request fails anyway: retry sooner, still
        // at most once a second.
        let interval = match state.cached {
            Some(_) => self.refresh_interval,
            None => self.refresh_interval.min(COLD_RETRY),
        };
        state
            .attempted_at
            .is_none_or(|t| now.duration_since(t) >= interval)
    }

    /// Reads the store once, unless another caller did so since `seen` (then
    /// its result is used). Falls back to the last known value on failure.
    async fn read(&self, seen: Option<Instant>) -> Result<Cached, TokenError> {
        let _single_flight = self.reading.lock().await;
        let state = self.snapshot();
        if state.attempted_at != seen {
            return state.cached.ok_or(TokenError::Unavailable(SecretError(
                "concurrent read failed".into(),
            )));
        }
        // Recorded before the call: a caller that gives up mid-read (a client
        // gone, a timeout) must not let the next one read again at once.
        let attempted_at = Instant::now();
        self.state
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .attempted_at = Some(attempted_at);
        let result = self.source.fetch().await;
        let now = Instant::now();
        let mut state = self.state.write().unwrap_or_else(|e| e.into_inner());
        match result {
            Ok(value) => {
                let cached = Cached {
                    // An empty stored value would accept nothing.
                    digest: (!value.is_empty()).then(|| digest(&value)),
                    read_at: now,
                };
                state.cached = Some(cached);
                Ok(cached)
            }
            Err(e) => {
                tracing::warn!(error = %e, "reading the expected token failed");
                state.cached.ok_or(TokenError::Unavailable(e))
            }
        }
    }
}

fn digest(value: &str) -> Digest32 {
    Sha256::digest(value.as_bytes()).into()
}

fn matches(cached: &Cached, presented: &Digest32) -> bool {
    cached
        .digest
        .is_some_and(|d| bool::from(d.ct_eq(presented)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::CountingSecret;

    const TTL: Duration = Duration::from_secs(300);
    const REFRESH: Duration = Duration::from_secs(5);

    fn checker(secret: &Arc<CountingSecret>) -> TokenChecker {
        TokenChecker::new(secret.clone(), TTL, REFRESH)
    }

    #[tokio::test(start_paused = true)]
    async fn the_right_token_is_read_once_and_cached() {
        let secret = Arc::new(CountingSecret::new("s3cret"));
        let tokens = checker(&secret);
        for _ in 0..100 {
            tokens.verify("s3cret").await.unwrap();
        }
        assert_eq!(secret.reads(), 1);
        tokio::time::advance(TTL).await;
        tokens.verify("s3cret").await.unwrap();
        assert_eq!(secret.reads(), 2, "re-read after the TTL");
    }

    #[tokio::test(start_paused = true)]
    async fn wrong_and_missing_tokens_are_refused() {
        let secret = Arc::new(CountingSecret::new("s3cret"));
        let tokens = checker(&secret);
        assert_eq!(tokens.verify("").await, Err(TokenError::Missing));
        assert_eq!(tokens.verify("s3cre").await, Err(TokenError::Invalid));
        assert_eq!(tokens.verify("s3cret ").await, Err(TokenError::Invalid));
        assert_eq!(tokens.verify("S3CRET").await, Err(TokenError::Invalid));
    }

    #[tokio::test(start_paused = true)]
    async fn bad_tokens_cannot_amplify_reads() {
        let secret = Arc::new(CountingSecret::new("s3cret"));
        let tokens = checker(&secret);
        tokens.verify("s3cret").await.unwrap();
        for _ in 0..1000 {
            assert_eq!(tokens.verify("guess").await, Err(TokenError::Invalid));
        }
        assert_eq!(secret.reads(), 1, "the store was read just now");
        tokio::time::advance(REFRESH).await;
        for _ in 0..1000 {
            let _ = tokens.verify("guess").await;
        }
        assert_eq!(secret.reads(), 2, "one re-read per refresh interval");
    }

    #[tokio::test(start_paused = true)]
    async fn a_rotated_token_is_accepted_without_restart() {
        let secret = Arc::new(CountingSecret::new("old"));
        let tokens = checker(&secret);
        tokens.verify("old").await.unwrap();
        secret.set(Ok("new"));
        tokio::time::advance(REFRESH).await;
        tokens.verify("new").await.unwrap();
        assert_eq!(tokens.verify("old").await, Err(TokenError::Invalid));
    }

    #[tokio::test(start_paused = true)]
    async fn a_store_outage_keeps_the_last_value_and_fails_fast_without_one() {
        let secret = Arc::new(CountingSecret::new("s3cret"));
        let tokens = checker(&secret);
        tokens.verify("s3cret").await.unwrap();
        secret.set(Err(SecretError("down".into())));
        tokio::time::advance(TTL).await;
        tokens.verify("s3cret").await.unwrap();

        let cold = Arc::new(CountingSecret::new("x"));
        cold.set(Err(SecretError("down".into())));
        let tokens = checker(&cold);
        for _ in 0..50 {
            assert!(matches!(
                tokens.verify("s3cret").await,
                Err(TokenError::Unavailable(_))
            ));
        }
        assert_eq!(cold.reads(), 1, "failed reads are rate limited too");
        cold.set(Ok("s3cret"));
        tokio::time::advance(REFRESH).await;
        tokens.verify("s3cret").await.unwrap();
    }

    #[tokio::test(start_paused = true)]
    async fn concurrent_first_requests_share_one_read() {
        let secret = Arc::new(CountingSecret::new("s3cret"));
        let tokens = Arc::new(checker(&secret));
        let mut tasks = tokio::task::JoinSet::new();
        for _ in 0..50 {
            let tokens = tokens.clone();
            tasks.spawn(async move { tokens.verify("s3cret").await });
        }
        while let Some(r) = tasks.join_next().await {
            r.unwrap().unwrap();
        }
        assert_eq!(secret.reads(), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn an_empty_stored_token_accepts_nothing() {
        let secret = Arc::new(CountingSecret::new(""));
        let tokens = checker(&secret);
        assert_eq!(tokens.verify("x").await, Err(TokenError::Invalid));
    }
}
