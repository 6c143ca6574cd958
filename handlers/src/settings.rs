//! The settings groups both runtimes read, each setting defined once: its
//! environment variable (and same-named flag), default, range and help.
//! Settings are read once at start-up and checked; a missing or malformed
//! one stops the process with a message naming the variable.
//!
//! The Fargate binary flattens these groups into its subcommands, next to its
//! own server and poll-loop settings; the Lambda functions read the same
//! groups from the environment only.

use std::time::Duration;

use clap::{Args, ValueEnum};

use crate::keys::{KeyLayout, KeyPrefix, Keys};

/// Parses whole seconds within a range.
pub fn seconds(min: u64, max: u64) -> impl Fn(&str) -> Result<Duration, String> + Clone {
    move |text: &str| {
        let n: u64 = text
            .trim()
            .parse()
            .map_err(|_| format!("expected whole seconds, got {text:?}"))?;
        if (min..=max).contains(&n) {
            Ok(Duration::from_secs(n))
        } else {
            Err(format!("must be between {min} and {max} seconds"))
        }
    }
}

/// How diagnostics are written.
#[derive(Debug, Clone, Args)]
pub struct LogArgs {
    /// Log format: one JSON object per line, or human-readable text.
    #[arg(
        long,
        env = "LOG_FORMAT",
        value_name = "LOG_FORMAT",
        default_value = "json"
    )]
    pub log_format: LogFormat,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Json,
    Text,
}

/// Settings every process that talks to AWS reads.
#[derive(Debug, Clone, Args)]
pub struct CommonArgs {
    /// AWS region; when unset, the SDK's standard chain decides (profile, instance metadata).
    #[arg(long, env = "AWS_REGION", value_name = "AWS_REGION")]
    pub aws_region: Option<String>,

    #[command(flatten)]
    pub log: LogArgs,
}

/// The queue.
#[derive(Debug, Clone, Args)]
pub struct QueueArgs {
    /// URL of the SQS queue of emails.
    #[arg(long, env = "SQS_QUEUE_URL", value_name = "SQS_QUEUE_URL", value_parser = queue_url)]
    pub sqs_queue_url: String,
}

/// An SQS queue URL: `https://sqs.<region>.amazonaws.com/<account>/<name>`,
/// or the same shape on an emulator's `http://` endpoint.
fn queue_url(text: &str) -> Result<String, String> {
    let rest = text
        .strip_prefix("https://")
        .or_else(|| text.strip_prefix("http://"))
        .ok_or("must be an http(s) URL: https://sqs.<region>.amazonaws.com/<account>/<queue>")?;
    let parts: Vec<&str> = rest.split('/').collect();
    match parts.as_slice() {
        [host, account, name] if !host.is_empty() && !account.is_empty() && !name.is_empty() => {
            Ok(text.to_owned())
        }
        _ => Err("must be <endpoint>/<account>/<queue name>".into()),
    }
}

/// An S3 bucket name as S3 allows it: 3-63 lower-case letters, digits, dots
/// and hyphens, beginning and ending with a letter or digit.
fn bucket_name(text: &str) -> Result<String, String> {
    let allowed = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '.' || c == '-';
    let edge = |c: Option<char>| c.is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit());
    if (3..=63).contains(&text.len())
        && text.chars().all(allowed)
        && edge(text.chars().next())
        && edge(text.chars().last())
    {
        Ok(text.to_owned())
    } else {
        Err("not a valid S3 bucket name (3-63 lower-case letters, digits, '.' and '-')".into())
    }
}

/// What validate-and-enqueue needs: the queue, the token's parameter, and
/// the bucket where emails too large for a queue message are staged (without
/// one, they are refused).
#[derive(Debug, Clone, Args)]
#[command(mut_arg("s3_bucket_name", |a| a.required(false)))]
pub struct IngestArgs {
    #[command(flatten)]
    pub queue: QueueArgs,

    /// Name of the SSM parameter (SecureString) holding the API token.
    #[arg(long, env = "TOKEN_PARAM_NAME", value_name = "TOKEN_PARAM_NAME")]
    pub token_param_name: String,

    #[command(flatten)]
    pub token: TokenArgs,

    /// SendMessageBatch calls in flight at once; requests arriving meanwhile share the next batches (fewer calls under load, no added latency when idle).
    #[arg(long, env = "SQS_SEND_CONCURRENCY", value_name = "SQS_SEND_CONCURRENCY", default_value = "4", value_parser = clap::value_parser!(u16).range(1..=64))]
    pub sqs_send_concurrency: u16,

    #[command(flatten)]
    pub bucket: Option<BucketArgs>,

    #[command(flatten)]
    pub staging: StagingArgs,
}

/// The bucket.
#[derive(Debug, Clone, Args)]
pub struct BucketArgs {
    /// S3 bucket the emails are stored in (and where the API stages emails too large for a queue message).
    #[arg(long, env = "S3_BUCKET_NAME", value_name = "S3_BUCKET_NAME", value_parser = bucket_name)]
    pub s3_bucket_name: String,
}

/// Where emails too large for a queue message wait for the worker.
#[derive(Debug, Clone, Args)]
pub struct StagingArgs {
    /// Key prefix of staged emails (the claim check): <prefix><id>.json; give it a lifecycle rule that removes what is left there.
    #[arg(long, env = "S3_STAGING_PREFIX", value_name = "S3_STAGING_PREFIX", default_value = crate::claim::DEFAULT_STAGING_PREFIX, value_parser = KeyPrefix::parse)]
    pub s3_staging_prefix: KeyPrefix,
}

/// How many bytes of emails a process holds at once.
#[derive(Debug, Clone, Args)]
pub struct MemoryArgs {
    /// Bytes of email bodies held at once (request bodies in the API, staged emails in the worker); more wait (worker) or get 503 with Retry-After (API). At least MAX_EMAIL_BYTES.
    #[arg(long, env = "MAX_BYTES_IN_FLIGHT", value_name = "MAX_BYTES_IN_FLIGHT", default_value_t = crate::store::DEFAULT_BYTES_IN_FLIGHT, value_parser = clap::value_parser!(u64).range(1_048_576..=17_179_869_184))]
    pub max_bytes_in_flight: u64,
}

/// How long a token read from the store is trusted, and how often a token
/// that does not match may cause a re-read.
#[derive(Debug, Clone, Args)]
pub struct TokenArgs {
    /// Seconds a token is accepted after the last read of SSM that contained it (a token removed from the parameter stops working within this time).
    #[arg(long, env = "TOKEN_CACHE_TTL", value_name = "TOKEN_CACHE_TTL", default_value = "300", value_parser = seconds(1, 86_400))]
    pub token_cache_ttl: Duration,

    /// Least seconds between two reads of SSM: a token just added to the parameter is accepted after a wait of at most this, and bad tokens cannot cause more reads.
    #[arg(long, env = "TOKEN_REFRESH_INTERVAL", value_name = "TOKEN_REFRESH_INTERVAL", default_value = "1", value_parser = seconds(1, 3_600))]
    pub token_refresh_interval: Duration,
}

/// Limits of the HTTP API, whichever runtime serves it.
#[derive(Debug, Clone, Args)]
pub struct LimitsArgs {
    /// Requests to POST /email handled at once; more are refused with 503 and Retry-After.
    #[arg(long, env = "MAX_CONCURRENT_REQUESTS", value_name = "MAX_CONCURRENT_REQUESTS", default_value = "256", value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub max_concurrent_requests: u32,

    /// Seconds a request may take, body upload included, before it is answered 408.
    #[arg(long, env = "REQUEST_TIMEOUT", value_name = "REQUEST_TIMEOUT", default_value = "10", value_parser = seconds(1, 300))]
    pub request_timeout: Duration,

    /// Largest request body (email and envelope) accepted, in bytes; more gets 413. Emails too large for a queue message go through the bucket.
    #[arg(long, env = "MAX_EMAIL_BYTES", value_name = "MAX_EMAIL_BYTES", default_value = "5242880", value_parser = clap::value_parser!(u64).range(1_024..=104_857_600))]
    pub max_email_bytes: u64,

    #[command(flatten)]
    pub memory: MemoryArgs,
}

/// Where stored objects go inside the bucket.
#[derive(Debug, Clone, Args)]
pub struct KeyArgs {
    /// Key prefix of the stored objects: <prefix><unix-seconds>-<id>.json.
    #[arg(long, env = "S3_KEY_PREFIX", value_name = "S3_KEY_PREFIX", default_value = crate::keys::DEFAULT_PREFIX, value_parser = KeyPrefix::parse)]
    pub s3_key_prefix: KeyPrefix,

    /// Key layout below the prefix: time (<unix-seconds>-<id>.json, one time order, the original's) or hashed (<2 hex digits>/<unix-seconds>-<id>.json, writes spread over 256 prefixes, for sustained rates from about 2,000 emails/s).
    #[arg(long, env = "S3_KEY_LAYOUT", value_name = "S3_KEY_LAYOUT", value_enum, default_value_t = KeyLayout::Time)]
    pub s3_key_layout: KeyLayout,
}

impl KeyArgs {
    pub fn keys(&self) -> Keys {
        Keys::new(self.s3_key_prefix.clone(), self.s3_key_layout)
    }
}

/// What message-to-bucket needs.
#[derive(Debug, Clone, Args)]
pub struct StoreArgs {
    #[command(flatten)]
    pub bucket: BucketArgs,

    #[command(flatten)]
    pub keys: KeyArgs,

    #[command(flatten)]
    pub staging: StagingArgs,

    #[command(flatten)]
    pub memory: MemoryArgs,
}

impl StoreArgs {
    /// The stored and the staged emails must not share a prefix: the
    /// lifecycle rule that clears the staging prefix would delete stored
    /// emails.
    pub fn check(&self) -> Result<(), String> {
        layout(&self.keys.s3_key_prefix, &self.staging.s3_staging_prefix)
    }
}

/// Checks that stored and staged keys cannot meet (see [`StoreArgs::check`]).
pub fn layout(keys: &KeyPrefix, staging: &KeyPrefix) -> Result<(), String> {
    let (k, s) = (keys.as_str(), staging.as_str());
    let overlap = s.is_empty() || s.starts_with(k) && !k.is_empty() || k.starts_with(s);
    if overlap {
        Err(format!(
            "S3_KEY_PREFIX {k:?} and S3_STAGING_PREFIX {s:?} overlap: stored emails would fall under the staging prefix's clean-up"
        ))
    } else {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[derive(Debug, Parser)]
    struct Api {
        #[command(flatten)]
        ingest: IngestArgs,
    }

    #[derive(Debug, Parser)]
    struct Worker {
        #[command(flatten)]
        store: StoreArgs,
    }

    #[test]
    fn seconds_are_whole_and_in_range() {
        let parse = seconds(1, 20);
        assert_eq!(parse("20"), Ok(Duration::from_secs(20)));
        assert_eq!(parse(" 1 "), Ok(Duration::from_secs(1)));
        assert!(parse("0").is_err());
        assert!(parse("21").is_err());
        assert!(parse("1.5").is_err());
        assert!(parse("").is_err());
    }

    #[test]
    fn queue_urls_and_bucket_names_are_checked() {
        for good in [
            "https://sqs.us-east-2.amazonaws.com/123456789012/emails",
            "http://127.0.0.1:5000/123456789012/emails",
        ] {
            assert!(queue_url(good).is_ok(), "{good}");
        }
        for bad in [
            "emails",
            "https://sqs.amazonaws.com/emails",
            "ftp://x/1/2",
            "",
        ] {
            assert!(queue_url(bad).is_err(), "{bad}");
        }
        for good in ["emails", "queue2bucket-emails-1a2b", "a.b.c"] {
            assert!(bucket_name(good).is_ok(), "{good}");
        }
        for bad in [
            "ab",
            "Emails",
            "emails_x",
            "-emails",
            "emails.",
            &"x".repeat(64),
        ] {
            assert!(bucket_name(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_bad_setting_names_its_variable() {
        let err =
            Worker::try_parse_from(["x", "--s3-bucket-name=bucket", "--s3-key-prefix=../emails/"])
                .unwrap_err()
                .to_string();
        assert!(err.contains("S3_KEY_PREFIX"), "{err}");
        let err = Api::try_parse_from([
            "x",
            "--sqs-queue-url=https://sqs.us-east-2.amazonaws.com/1/q",
            "--token-param-name=p",
            "--token-refresh-interval=0",
        ])
        .unwrap_err()
        .to_string();
        assert!(err.contains("TOKEN_REFRESH_INTERVAL"), "{err}");
    }

    #[test]
    fn the_api_may_go_without_a_bucket_and_the_worker_may_not() {
        let api = Api::try_parse_from([
            "x",
            "--sqs-queue-url=https://sqs.us-east-2.amazonaws.com/1/q",
            "--token-param-name=p",
        ])
        .unwrap();
        assert!(api.ingest.bucket.is_none());
        assert!(Worker::try_parse_from(["x"]).is_err());
    }

    #[test]
    fn stored_and_staged_emails_never_share_a_prefix() {
        let prefix = |s: &str| KeyPrefix::parse(s).unwrap();
        assert!(layout(&prefix("emails/"), &prefix("staging/")).is_ok());
        assert!(layout(&prefix(""), &prefix("staging/")).is_ok());
        for (keys, staging) in [
            ("emails/", "emails/"),
            ("emails/", "emails/staging/"),
            ("staging/x/", "staging/"),
            ("emails/", ""),
        ] {
            assert!(
                layout(&prefix(keys), &prefix(staging)).is_err(),
                "{keys} {staging}"
            );
        }
    }
}
