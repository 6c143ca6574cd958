//! Token checking against the tokens kept in the secret store.
//!
//! The store holds one accepted token, or several, one per line (blank lines
//! ignored), so that an operator can add a new token, move the clients over,
//! then remove the old one, with no client ever cut off.
//!
//! - A token is accepted at once, with no call to the store, if a read of the
//!   store that started less than `ttl` ago contained it. While tokens are
//!   being accepted, the store is re-read in the background shortly before
//!   `ttl` runs out, so steady traffic never waits for it.
//! - Any other token waits for a read that started after the request
//!   arrived, then is accepted or refused on what that read says. So a token
//!   just added to the store is accepted on its first use, and a token in the
//!   store is never refused. Reads happen at most once per
//!   `refresh_interval`, whoever asks: requests arriving meanwhile share the
//!   next read, and bad tokens cannot make the store be read more often.
//!   Waiting is bounded in time and in the number of requests waiting; past
//!   either bound the answer is "unavailable" (a 503, which clients retry).
//! - A token removed from the store keeps being accepted until `ttl` after
//!   the last read that contained it.
//! - When the store fails, the tokens of the last successful read keep being
//!   accepted; a token outside them cannot be checked, which is reported as
//!   unavailable, not as invalid.
//! - Only SHA-256 digests of the tokens are kept, and a presented token is
//!   compared with every one of them in constant time: the time taken says
//!   nothing about how much of a guess matched, nor about a token's length.
//! - Reads run in their own task, so a caller that gives up (a client gone,
//!   a timeout) never leaves a read half done.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use sha2::{Digest, Sha256};
use subtle::{Choice, ConstantTimeEq};
use tokio::sync::{Mutex, Semaphore};
use tokio::time::Instant;

use crate::metrics::names;
use crate::secret::{SecretError, SecretSource};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error("missing token")]
    Missing,
    #[error("invalid token")]
    Invalid,
    /// The token could not be checked: the store failed or was too slow.
    #[error("token store unavailable")]
    Unavailable(#[source] SecretError),
}

type Digest32 = [u8; 32];

/// Longest a read of the store may take before waiting callers give up; the
/// store's client has its own, shorter, timeouts.
const READ_WAIT: Duration = Duration::from_secs(5);

/// Most requests waiting for a read at once; more are answered
/// "unavailable" at once rather than tying up the server's request slots.
pub const MAX_WAITING: usize = 64;

/// Tokens are refreshed in the background once their read is this far into
/// its `ttl`.
const REFRESH_AT: f64 = 0.8;

/// A completed read. Reads are numbered in the order they start.
#[derive(Clone)]
struct Read {
    number: u64,
    result: Result<Arc<[Digest32]>, SecretError>,
}

#[derive(Default)]
struct State {
    /// Each token seen, with the start of the last read that contained it.
    seen: Vec<(Digest32, Instant)>,
    /// The tokens of the last successful read, whatever its age.
    last_known: Option<Arc<[Digest32]>>,
    /// The last read to complete.
    last_read: Option<Read>,
    /// When the last read started (completed or not).
    last_started: Option<Instant>,
    /// Reads started so far: the number the next read gets.
    started: u64,
}

struct Inner {
    source: Arc<dyn SecretSource>,
    ttl: Duration,
    refresh_interval: Duration,
    state: RwLock<State>,
    /// Callers wanting a fresh read take turns here, in arrival order.
    turn: Mutex<()>,
    waiting: Semaphore,
    /// A background refresh is asked for and not done.
    refreshing: AtomicBool,
}

pub struct TokenChecker {
    inner: Arc<Inner>,
}

impl TokenChecker {
    pub fn new(source: Arc<dyn SecretSource>, ttl: Duration, refresh_interval: Duration) -> Self {
        Self {
            inner: Arc::new(Inner {
                source,
                ttl,
                refresh_interval,
                state: RwLock::new(State::default()),
                turn: Mutex::new(()),
                waiting: Semaphore::new(MAX_WAITING),
                refreshing: AtomicBool::new(false),
            }),
        }
    }

    /// Accepts `presented` if it is one of the tokens in the store.
    pub async fn verify(&self, presented: &str) -> Result<(), TokenError> {
        if presented.is_empty() {
            return Err(TokenError::Missing);
        }
        let presented = digest(presented);
        let (accepted, arrival) = self.inner.check_fresh(&presented, Instant::now());
        match accepted {
            Fresh::Yes => return Ok(()),
            Fresh::DueForRefresh => {
                self.inner.clone().refresh_in_background();
                return Ok(());
            }
            Fresh::No => {}
        }
        let read = self.inner.read_since(arrival, Some(&presented)).await;
        let known = self.inner.snapshot_known();
        match read {
            Ok(()) if known.accepts(&presented, Instant::now(), self.inner.ttl) => Ok(()),
            Ok(()) => Err(TokenError::Invalid),
            // The store cannot say: the last tokens known still count.
            Err(_) if known.last_known_has(&presented) => Ok(()),
            Err(e) => Err(TokenError::Unavailable(e)),
        }
    }

    /// Ok once the tokens could be read; reads them if they never were.
    pub async fn ensure_known(&self) -> Result<(), TokenError> {
        let arrival = {
            let state = self.inner.lock_read();
            if state.last_known.is_some() {
                return Ok(());
            }
            state.started
        };
        self.inner
            .read_since(arrival, None)
            .await
            .map_err(TokenError::Unavailable)
    }
}

/// Whether a token is accepted without asking the store.
enum Fresh {
    Yes,
    /// Yes, and the tokens are due for a background refresh.
    DueForRefresh,
    No,
}

/// What a verification needs from the state, copied out of the lock.
struct Known {
    seen: Vec<(Digest32, Instant)>,
    last_known: Option<Arc<[Digest32]>>,
}

impl Known {
    fn accepts(&self, presented: &Digest32, now: Instant, ttl: Duration) -> bool {
        seen_within(&self.seen, presented, now, ttl)
    }

    fn last_known_has(&self, presented: &Digest32) -> bool {
        self.last_known
            .as_deref()
            .is_some_and(|known| contains(known, presented))
    }
}

impl Inner {
    fn lock_read(&self) -> std::sync::RwLockReadGuard<'_, State> {
        self.state.read().unwrap_or_else(|e| e.into_inner())
    }

    fn lock_write(&self) -> std::sync::RwLockWriteGuard<'_, State> {
        self.state.write().unwrap_or_else(|e| e.into_inner())
    }

    fn snapshot_known(&self) -> Known {
        let state = self.lock_read();
        Known {
            seen: state.seen.clone(),
            last_known: state.last_known.clone(),
        }
    }

    /// Whether a recent read contained the token, and the number of the next
    /// read to start: any read from that one on started after this call.
    fn check_fresh(&self, presented: &Digest32, now: Instant) -> (Fresh, u64) {
        let state = self.lock_read();
        let newest = state.seen.iter().map(|(_, at)| *at).max();
        let fresh = if !seen_within(&state.seen, presented, now, self.ttl) {
            Fresh::No
        } else if newest.is_some_and(|t| now.duration_since(t) >= self.ttl.mul_f64(REFRESH_AT)) {
            Fresh::DueForRefresh
        } else {
            Fresh::Yes
        };
        (fresh, state.started)
    }

    /// One refresh at a time, whatever the number of requests that see it due.
    fn refresh_in_background(self: Arc<Self>) {
        if self.refreshing.swap(true, Ordering::AcqRel) {
            return;
        }
        tokio::spawn(async move {
            let next = self.lock_read().started;
            let _ = self.read_since(next, None).await;
            self.refreshing.store(false, Ordering::Release);
        });
    }

    /// Waits until the store has been read by a read numbered `first` or
    /// later (so started after the caller arrived), starting one when it is
    /// this caller's turn and the rate limit allows. A read that completes
    /// meanwhile and accepts `presented` ends the wait early: an older read
    /// may accept a token, only a newer one may refuse it.
    async fn read_since(
        self: &Arc<Self>,
        first: u64,
        presented: Option<&Digest32>,
    ) -> Result<(), SecretError> {
        let busy = || SecretError("too many requests waiting for the token store".into());
        let _waiting = self.waiting.try_acquire().map_err(|_| busy())?;
        let wait = self.refresh_interval + READ_WAIT;
        tokio::time::timeout(wait, self.take_turn(first, presented))
            .await
            .unwrap_or_else(|_| Err(SecretError("timed out waiting for the token store".into())))
    }

    async fn take_turn(
        self: &Arc<Self>,
        first: u64,
        presented: Option<&Digest32>,
    ) -> Result<(), SecretError> {
        let _turn = self.turn.lock().await;
        if presented.is_some_and(|p| self.snapshot_known().accepts(p, Instant::now(), self.ttl)) {
            return Ok(());
        }
        if let Some(read) = self.completed_since(first) {
            return read.result.map(|_| ());
        }
        let not_before = self
            .lock_read()
            .last_started
            .map(|t| t + self.refresh_interval);
        if let Some(t) = not_before {
            tokio::time::sleep_until(t).await;
        }
        let number = {
            let mut state = self.lock_write();
            state.last_started = Some(Instant::now());
            state.started += 1;
            state.started - 1
        };
        let inner = self.clone();
        let read = tokio::spawn(async move { inner.read(number).await });
        match read.await {
            Ok(read) => read.result.map(|_| ()),
            Err(e) => Err(SecretError(format!("token read task: {e}"))),
        }
    }

    fn completed_since(&self, first: u64) -> Option<Read> {
        self.lock_read()
            .last_read
            .clone()
            .filter(|read| read.number >= first)
    }

    async fn read(&self, number: u64) -> Read {
        let started = Instant::now();
        let result = self
            .source
            .fetch()
            .await
            .map(|value| -> Arc<[Digest32]> { tokens(&value).map(digest).collect() });
        ::metrics::counter!(names::TOKEN_READS).increment(1);
        if result.is_err() {
            ::metrics::counter!(names::TOKEN_READ_FAILURES).increment(1);
        }
        let mut state = self.lock_write();
        match &result {
            Ok(digests) => {
                for d in digests.iter() {
                    match state.seen.iter_mut().find(|(seen, _)| seen == d) {
                        Some((_, at)) => *at = (*at).max(started),
                        None => state.seen.push((*d, started)),
                    }
                }
                let (ttl, now) = (self.ttl, Instant::now());
                state.seen.retain(|(_, at)| now.duration_since(*at) < ttl);
                state.last_known = Some(digests.clone());
            }
            Err(e) => tracing::warn!(error = %e, "reading the accepted tokens failed"),
        }
        let read = Read { number, result };
        if state.last_read.as_ref().is_none_or(|r| r.number <= number) {
            state.last_read = Some(read.clone());
        }
        read
    }
}

/// The accepted tokens in a stored value: one per line, blank lines
/// ignored. A value without line breaks is one token, whatever it holds.
fn tokens(value: &str) -> impl Iterator<Item = &str> {
    value
        .split('\n')
        .map(|line| line.strip_suffix('\r').unwrap_or(line))
        .filter(|line| !line.trim().is_empty())
}

fn digest(value: &str) -> Digest32 {
    Sha256::digest(value.as_bytes()).into()
}

/// Whether a read less than `ttl` ago contained `presented`; constant time
/// in the position of a match.
fn seen_within(
    seen: &[(Digest32, Instant)],
    presented: &Digest32,
    now: Instant,
    ttl: Duration,
) -> bool {
    seen.iter()
        .fold(Choice::from(0), |found, (d, at)| {
            found | (d.ct_eq(presented) & Choice::from(u8::from(now.duration_since(*at) < ttl)))
        })
        .into()
}

/// Constant time in the position of a match.
fn contains(known: &[Digest32], presented: &Digest32) -> bool {
    known
        .iter()
        .fold(Choice::from(0), |found, d| found | d.ct_eq(presented))
        .into()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::CountingSecret;

    const TTL: Duration = Duration::from_secs(300);
    const REFRESH: Duration = Duration::from_secs(1);

    fn checker(secret: &Arc<CountingSecret>) -> Arc<TokenChecker> {
        Arc::new(TokenChecker::new(secret.clone(), TTL, REFRESH))
    }

    /// Lets spawned reads run.
    async fn settle() {
        for _ in 0..10 {
            tokio::task::yield_now().await;
        }
    }

    #[tokio::test(start_paused = true)]
    async fn the_right_token_is_read_once_then_refreshed_in_the_background() {
        let secret = Arc::new(CountingSecret::new("s3cret"));
        let tokens = checker(&secret);
        for _ in 0..100 {
            tokens.verify("s3cret").await.unwrap();
        }
        assert_eq!(secret.reads(), 1);
        tokio::time::advance(TTL.mul_f64(REFRESH_AT)).await;
        tokens.verify("s3cret").await.unwrap();
        settle().await;
        assert_eq!(secret.reads(), 2, "refreshed before the TTL ran out");
        tokio::time::advance(TTL.mul_f64(0.5)).await;
        for _ in 0..100 {
            tokens.verify("s3cret").await.unwrap();
        }
        settle().await;
        assert_eq!(secret.reads(), 2, "no read while the refresh is fresh");
    }

    #[tokio::test(start_paused = true)]
    async fn wrong_and_missing_tokens_are_refused() {
        let secret = Arc::new(CountingSecret::new("s3cret"));
        let tokens = checker(&secret);
        assert_eq!(tokens.verify("").await, Err(TokenError::Missing));
        for wrong in ["s3cre", "s3cret ", "S3CRET", "s3cret\n"] {
            assert_eq!(
                tokens.verify(wrong).await,
                Err(TokenError::Invalid),
                "{wrong:?}"
            );
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_new_token_is_accepted_on_first_use_right_after_a_bad_one() {
        let secret = Arc::new(CountingSecret::new("old"));
        let tokens = checker(&secret);
        tokens.verify("old").await.unwrap();
        // A bad token makes the checker read the store just now...
        assert_eq!(tokens.verify("guess").await, Err(TokenError::Invalid));
        secret.set(Ok("new"));
        // ...yet the new value is accepted on its first use, after a wait
        // of at most the refresh interval.
        let started = Instant::now();
        tokens.verify("new").await.unwrap();
        assert!(started.elapsed() <= REFRESH, "{:?}", started.elapsed());
        assert_eq!(secret.reads(), 3);
    }

    #[tokio::test(start_paused = true)]
    async fn bad_tokens_cannot_make_more_than_one_read_per_interval() {
        let secret = Arc::new(CountingSecret::new("s3cret"));
        let tokens = checker(&secret);
        tokens.verify("s3cret").await.unwrap();
        let started = Instant::now();
        let mut waves = tokio::task::JoinSet::new();
        // Ten seconds of bad tokens, 50 a second.
        while started.elapsed() < Duration::from_secs(10) {
            for i in 0..5 {
                let tokens = tokens.clone();
                waves.spawn(async move { tokens.verify(&format!("guess-{i}")).await });
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        while let Some(answer) = waves.join_next().await {
            assert_eq!(answer.unwrap(), Err(TokenError::Invalid));
        }
        let reads = secret.reads();
        assert!(reads <= 1 + 12, "{reads} reads in 10 s");
        tokens.verify("s3cret").await.unwrap();
    }

    #[tokio::test(start_paused = true)]
    async fn requests_arriving_during_a_read_wait_for_it() {
        let secret = Arc::new(CountingSecret::new("s3cret"));
        secret.set_delay(Duration::from_millis(500));
        let tokens = checker(&secret);
        let mut tasks = tokio::task::JoinSet::new();
        for i in 0..50 {
            let tokens = tokens.clone();
            tasks.spawn(async move {
                tokio::time::sleep(Duration::from_millis(i * 5)).await;
                tokens.verify("s3cret").await
            });
        }
        while let Some(r) = tasks.join_next().await {
            r.unwrap().unwrap();
        }
        assert_eq!(secret.reads(), 1, "the cold-start read is shared");
    }

    #[tokio::test(start_paused = true)]
    async fn the_store_may_hold_several_tokens_one_per_line() {
        let secret = Arc::new(CountingSecret::new("alpha\nbeta\r\n\n  \n with space \n"));
        let tokens = checker(&secret);
        for good in ["alpha", "beta", " with space "] {
            tokens.verify(good).await.unwrap();
        }
        for bad in ["alpha\nbeta", "with space", "beta\r", "gamma"] {
            assert_eq!(
                tokens.verify(bad).await,
                Err(TokenError::Invalid),
                "{bad:?}"
            );
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_removed_token_keeps_working_until_the_ttl_after_its_last_read() {
        let secret = Arc::new(CountingSecret::new("old\nnew"));
        let tokens = checker(&secret);
        tokens.verify("old").await.unwrap();
        secret.set(Ok("new"));
        tokio::time::advance(TTL / 2).await;
        assert_eq!(tokens.verify("guess").await, Err(TokenError::Invalid));
        tokens.verify("old").await.unwrap();
        tokio::time::advance(TTL / 2).await;
        assert_eq!(tokens.verify("old").await, Err(TokenError::Invalid));
        tokens.verify("new").await.unwrap();
    }

    #[tokio::test(start_paused = true)]
    async fn when_the_store_fails_known_tokens_pass_and_others_are_unavailable() {
        let secret = Arc::new(CountingSecret::new("s3cret"));
        let tokens = checker(&secret);
        tokens.verify("s3cret").await.unwrap();
        secret.set(Err(SecretError("down".into())));
        tokio::time::advance(TTL * 2).await;
        tokens.verify("s3cret").await.unwrap();
        assert!(matches!(
            tokens.verify("rotated-in").await,
            Err(TokenError::Unavailable(_))
        ));

        let cold = Arc::new(CountingSecret::new("x"));
        cold.set(Err(SecretError("down".into())));
        let tokens = checker(&cold);
        assert!(matches!(
            tokens.verify("s3cret").await,
            Err(TokenError::Unavailable(_))
        ));
        cold.set(Ok("s3cret"));
        tokens.verify("s3cret").await.unwrap();
    }

    #[tokio::test(start_paused = true)]
    async fn waiting_for_a_hung_store_is_bounded() {
        let secret = Arc::new(CountingSecret::new("s3cret"));
        secret.set_delay(Duration::from_secs(3600));
        let tokens = checker(&secret);
        let started = Instant::now();
        assert!(matches!(
            tokens.verify("s3cret").await,
            Err(TokenError::Unavailable(_))
        ));
        assert!(started.elapsed() <= REFRESH + READ_WAIT);
    }

    #[tokio::test(start_paused = true)]
    async fn too_many_waiting_requests_are_turned_away_at_once() {
        let secret = Arc::new(CountingSecret::new("s3cret"));
        secret.set_delay(Duration::from_secs(3));
        let tokens = checker(&secret);
        let mut tasks = tokio::task::JoinSet::new();
        for _ in 0..MAX_WAITING {
            let tokens = tokens.clone();
            tasks.spawn(async move { tokens.verify("s3cret").await });
        }
        settle().await;
        let started = Instant::now();
        assert!(matches!(
            tokens.verify("s3cret").await,
            Err(TokenError::Unavailable(_))
        ));
        assert_eq!(started.elapsed(), Duration::ZERO);
        while let Some(r) = tasks.join_next().await {
            r.unwrap().unwrap();
        }
    }

    #[tokio::test(start_paused = true)]
    async fn an_empty_store_accepts_nothing() {
        let secret = Arc::new(CountingSecret::new(""));
        let tokens = checker(&secret);
        assert_eq!(tokens.verify("x").await, Err(TokenError::Invalid));
    }
}
