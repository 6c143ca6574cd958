//! Metrics, emitted as CloudWatch Embedded Metric Format (EMF): one JSON
//! document per flush on stdout, beside the log lines, which CloudWatch Logs
//! turns into metrics with no agent and no API calls.
//!
//! The code counts through the `metrics` facade (`counter!`, `histogram!`);
//! [`install`] sets this module's recorder behind it. Counters are summed
//! between flushes; distributions are kept as counts per bucket (buckets
//! 25 % wide, so a percentile read from them is within 12 % of the truth)
//! and written as EMF's `Values`/`Counts`, so that no sample is dropped
//! however many arrive and memory stays a few kilobytes. One dimension,
//! `Service` (`api` or `worker`, the same on Fargate and Lambda), keeps the
//! number of metrics, and the bill, small.
//!
//! The Fargate runtime flushes every 10 s and at shutdown, the Lambda
//! functions after each invocation. `METRICS_FORMAT=off` turns them off
//! altogether; the local mode counts without writing, for its one-line
//! summary.

use std::collections::BTreeMap;
use std::io::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock, RwLock};

use clap::{Args, ValueEnum};
use metrics::{Counter, Gauge, Histogram, Key, KeyName, Metadata, Recorder, SharedString, Unit};
use serde_json::{Map, Value, json};

/// The names the code emits, by service: the dashboard, the alarms and the
/// consistency check (through the manifest) use these.
pub mod names {
    pub const EMAILS_ACCEPTED: &str = "EmailsAccepted";
    pub const REJECTED_INVALID: &str = "RejectedInvalid";
    pub const REJECTED_UNAUTHORIZED: &str = "RejectedUnauthorized";
    pub const REJECTED_TIMEOUT: &str = "RejectedTimeout";
    pub const REJECTED_TOO_LARGE: &str = "RejectedTooLarge";
    pub const REJECTED_MEDIA_TYPE: &str = "RejectedMediaType";
    pub const UNAVAILABLE_QUEUE: &str = "UnavailableQueue";
    pub const UNAVAILABLE_TOKEN_STORE: &str = "UnavailableTokenStore";
    pub const UNAVAILABLE_OVERLOADED: &str = "UnavailableOverloaded";
    pub const UNAVAILABLE_DEADLINE: &str = "UnavailableDeadline";
    pub const UNAVAILABLE_BUCKET: &str = "UnavailableBucket";
    pub const SQS_SEND_CALLS: &str = "SqsSendCalls";
    pub const SQS_BATCH_SIZE: &str = "SqsBatchSize";
    pub const API_LATENCY: &str = "ApiLatency";
    pub const TOKEN_READS: &str = "TokenReads";
    pub const TOKEN_READ_FAILURES: &str = "TokenReadFailures";

    pub const MESSAGES_RECEIVED: &str = "MessagesReceived";
    pub const EMAILS_STORED: &str = "EmailsStored";
    pub const EMAILS_ALREADY_STORED: &str = "EmailsAlreadyStored";
    pub const STORE_FAILURES: &str = "StoreFailures";
    pub const STORE_FAILURES_THROTTLED: &str = "StoreFailuresThrottled";
    pub const STORE_FAILURES_DENIED: &str = "StoreFailuresDenied";
    pub const MESSAGES_UNSTORABLE: &str = "MessagesUnstorable";
    pub const MESSAGES_HANDED_BACK: &str = "MessagesHandedBack";
    pub const END_TO_END_LATENCY: &str = "EndToEndLatency";
    pub const WORKER_BATCH_TIME: &str = "WorkerBatchTime";
}

use names::*;

/// Whether a document carries the counters that stayed at zero.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Zeros {
    Written,
    Left,
}

/// How a metric is kept: a sum, or a distribution of samples.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Counter,
    Distribution,
}

use Kind::{Counter as C, Distribution as D};

/// Every metric of the API: name, unit, kind.
pub const API: &[(&str, Unit, Kind)] = &[
    (EMAILS_ACCEPTED, Unit::Count, C),
    (REJECTED_INVALID, Unit::Count, C),
    (REJECTED_UNAUTHORIZED, Unit::Count, C),
    (REJECTED_TIMEOUT, Unit::Count, C),
    (REJECTED_TOO_LARGE, Unit::Count, C),
    (REJECTED_MEDIA_TYPE, Unit::Count, C),
    (UNAVAILABLE_QUEUE, Unit::Count, C),
    (UNAVAILABLE_TOKEN_STORE, Unit::Count, C),
    (UNAVAILABLE_OVERLOADED, Unit::Count, C),
    (UNAVAILABLE_DEADLINE, Unit::Count, C),
    (UNAVAILABLE_BUCKET, Unit::Count, C),
    (SQS_SEND_CALLS, Unit::Count, C),
    (SQS_BATCH_SIZE, Unit::Count, D),
    (API_LATENCY, Unit::Milliseconds, D),
    (TOKEN_READS, Unit::Count, C),
    (TOKEN_READ_FAILURES, Unit::Count, C),
];

/// Every metric of the worker: name, unit, kind.
pub const WORKER: &[(&str, Unit, Kind)] = &[
    (MESSAGES_RECEIVED, Unit::Count, C),
    (EMAILS_STORED, Unit::Count, C),
    (EMAILS_ALREADY_STORED, Unit::Count, C),
    (STORE_FAILURES, Unit::Count, C),
    (STORE_FAILURES_THROTTLED, Unit::Count, C),
    (STORE_FAILURES_DENIED, Unit::Count, C),
    (MESSAGES_UNSTORABLE, Unit::Count, C),
    (MESSAGES_HANDED_BACK, Unit::Count, C),
    (END_TO_END_LATENCY, Unit::Milliseconds, D),
    (WORKER_BATCH_TIME, Unit::Milliseconds, D),
];

/// The CloudWatch namespace unless `METRICS_NAMESPACE` says otherwise.
pub const DEFAULT_NAMESPACE: &str = "Queue2Bucket";

/// The dimension every metric carries.
pub const DIMENSION: &str = "Service";

/// Which side of the pipeline a process is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Service {
    Api,
    Worker,
}

impl Service {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Api => "api",
            Self::Worker => "worker",
        }
    }

    fn catalog(self) -> &'static [(&'static str, Unit, Kind)] {
        match self {
            Self::Api => API,
            Self::Worker => WORKER,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum MetricsFormat {
    /// CloudWatch Embedded Metric Format documents on stdout.
    Emf,
    /// No metrics.
    Off,
}

/// How metrics are written.
#[derive(Debug, Clone, Args)]
pub struct MetricsArgs {
    /// Metrics output: CloudWatch Embedded Metric Format on stdout, or none.
    #[arg(
        long,
        env = "METRICS_FORMAT",
        value_name = "METRICS_FORMAT",
        default_value = "emf"
    )]
    pub metrics_format: MetricsFormat,

    /// CloudWatch namespace of the metrics.
    #[arg(long, env = "METRICS_NAMESPACE", value_name = "METRICS_NAMESPACE", default_value = DEFAULT_NAMESPACE)]
    pub metrics_namespace: String,
}

/// Counts per bucket of a distribution, one atomic per bucket so that
/// recording on the request path takes no lock.
struct Buckets {
    /// Bucket `i` counts samples near `BUCKET_RATIO^(i + LOWEST)`.
    counts: Box<[AtomicU64]>,
    /// Samples of zero or less (and non-finite ones).
    zero: AtomicU64,
}

/// The buckets kept: 1.25^-62 ≈ 1e-6 up to 1.25^124 ≈ 1e12, whatever the
/// unit; samples beyond count in the nearest end bucket.
const LOWEST: i32 = -62;
const HIGHEST: i32 = 124;

impl Default for Buckets {
    fn default() -> Self {
        Self {
            counts: (LOWEST..=HIGHEST).map(|_| AtomicU64::new(0)).collect(),
            zero: AtomicU64::new(0),
        }
    }
}

/// Ratio between neighbouring buckets.
const BUCKET_RATIO: f64 = 1.25;

impl Buckets {
    fn index(value: f64) -> i32 {
        if value <= 0.0 || !value.is_finite() {
            return i32::MIN;
        }
        (value.ln() / BUCKET_RATIO.ln()).round() as i32
    }

    fn value_of(index: i32) -> f64 {
        if index == i32::MIN {
            0.0
        } else {
            // Three significant digits are plenty for a bucket 25 % wide.
            let v = BUCKET_RATIO.powi(index);
            let scale = 10f64.powi(2 - v.log10().floor() as i32);
            (v * scale).round() / scale
        }
    }

    /// The counts since the last take, by bucket index; resets them.
    fn take(&self) -> BTreeMap<i32, u64> {
        let mut taken = BTreeMap::new();
        let zero = self.zero.swap(0, Ordering::Relaxed);
        if zero > 0 {
            taken.insert(i32::MIN, zero);
        }
        for (index, count) in (LOWEST..).zip(self.counts.iter()) {
            let n = count.swap(0, Ordering::Relaxed);
            if n > 0 {
                taken.insert(index, n);
            }
        }
        taken
    }
}

impl metrics::HistogramFn for Buckets {
    fn record(&self, value: f64) {
        let slot = match Self::index(value) {
            i32::MIN => &self.zero,
            i => &self.counts[(i.clamp(LOWEST, HIGHEST) - LOWEST) as usize],
        };
        slot.fetch_add(1, Ordering::Relaxed);
    }
}

/// A counter summed since the last flush, and since the start.
#[derive(Default)]
struct Count {
    since_flush: AtomicU64,
    total: AtomicU64,
}

impl metrics::CounterFn for Count {
    fn increment(&self, value: u64) {
        self.since_flush.fetch_add(value, Ordering::Relaxed);
        self.total.fetch_add(value, Ordering::Relaxed);
    }

    fn absolute(&self, value: u64) {
        self.total.store(value, Ordering::Relaxed);
    }
}

/// The recorder: the metrics of one service, flushed as EMF.
pub struct Emf {
    service: Service,
    namespace: String,
    format: MetricsFormat,
    counters: RwLock<BTreeMap<String, Arc<Count>>>,
    histograms: RwLock<BTreeMap<String, Arc<Buckets>>>,
}

fn get_or_insert<T: Default>(map: &RwLock<BTreeMap<String, Arc<T>>>, name: &str) -> Arc<T> {
    if let Some(found) = map.read().unwrap_or_else(|e| e.into_inner()).get(name) {
        return found.clone();
    }
    map.write()
        .unwrap_or_else(|e| e.into_inner())
        .entry(name.to_owned())
        .or_default()
        .clone()
}

impl Recorder for Emf {
    fn describe_counter(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn describe_gauge(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn describe_histogram(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}

    fn register_counter(&self, key: &Key, _: &Metadata<'_>) -> Counter {
        Counter::from_arc(get_or_insert(&self.counters, key.name()))
    }

    fn register_gauge(&self, _: &Key, _: &Metadata<'_>) -> Gauge {
        Gauge::noop()
    }

    fn register_histogram(&self, key: &Key, _: &Metadata<'_>) -> Histogram {
        Histogram::from_arc(get_or_insert(&self.histograms, key.name()))
    }
}

impl Emf {
    pub fn new(service: Service, args: &MetricsArgs) -> Self {
        Self {
            service,
            namespace: args.metrics_namespace.clone(),
            format: args.metrics_format,
            counters: RwLock::default(),
            histograms: RwLock::default(),
        }
    }

    /// The EMF document of what was counted since the last flush, and
    /// resets it. Every counter of the service is in it, zero or not, so
    /// that graphs and alarms see zeros rather than missing data; a
    /// distribution only once it has samples.
    pub fn document(&self, timestamp_ms: u64) -> Value {
        self.document_of(timestamp_ms, Zeros::Written)
    }

    /// The document of one Lambda invocation: only what it counted. Written
    /// per invocation, the zeros of every other counter would be most of it
    /// (and of the log bill); the alarms read a missing point as zero
    /// (`FILL`, `notBreaching`).
    pub fn invocation_document(&self, timestamp_ms: u64) -> Value {
        self.document_of(timestamp_ms, Zeros::Left)
    }

    fn document_of(&self, timestamp_ms: u64, zeros: Zeros) -> Value {
        let mut root = Map::new();
        let mut definitions = Vec::new();
        root.insert(DIMENSION.into(), json!(self.service.as_str()));
        let counters = self.counters.read().unwrap_or_else(|e| e.into_inner());
        let histograms = self.histograms.read().unwrap_or_else(|e| e.into_inner());
        for (name, unit, kind) in self.service.catalog() {
            let value = match kind {
                Kind::Counter => {
                    let n = counters
                        .get(*name)
                        .map_or(0, |c| c.since_flush.swap(0, Ordering::Relaxed));
                    if n == 0 && zeros == Zeros::Left {
                        continue;
                    }
                    json!(n)
                }
                Kind::Distribution => {
                    let Some(buckets) = histograms.get(*name) else {
                        continue;
                    };
                    let taken = buckets.take();
                    if taken.is_empty() {
                        continue;
                    }
                    distribution(&taken)
                }
            };
            definitions.push(json!({ "Name": name, "Unit": unit_name(*unit) }));
            root.insert((*name).into(), value);
        }
        root.insert(
            "_aws".into(),
            json!({
                "Timestamp": timestamp_ms,
                "CloudWatchMetrics": [{
                    "Namespace": self.namespace,
                    "Dimensions": [[DIMENSION]],
                    "Metrics": definitions,
                }],
            }),
        );
        Value::Object(root)
    }

    /// Writes the document (unless output is off) as one line.
    pub fn flush(&self) {
        self.write(self.document(crate::id::now_millis()));
    }

    fn write(&self, document: Value) {
        if self.format == MetricsFormat::Emf {
            let mut out = std::io::stdout().lock();
            // Metrics must never stop the pipeline: a closed stdout loses them.
            let _ = writeln!(out, "{document}");
        }
    }

    /// A counter's total since the process started (0 if never counted).
    pub fn total(&self, name: &str) -> u64 {
        self.counters
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(name)
            .map_or(0, |c| c.total.load(Ordering::Relaxed))
    }
}

/// Most values EMF takes in one distribution.
const MAX_VALUES: usize = 100;

/// EMF's form for many samples: the distinct values and how often each came.
/// Past [`MAX_VALUES`] buckets (samples over more than nine decades),
/// neighbours are merged.
fn distribution(buckets: &BTreeMap<i32, u64>) -> Value {
    let mut pairs: Vec<(f64, u64)> = buckets
        .iter()
        .map(|(&i, &c)| (Buckets::value_of(i), c))
        .collect();
    while pairs.len() > MAX_VALUES {
        pairs = pairs
            .chunks(2)
            .map(|c| (c[c.len() - 1].0, c.iter().map(|(_, n)| n).sum()))
            .collect();
    }
    let (values, counts): (Vec<f64>, Vec<u64>) = pairs.into_iter().unzip();
    let count: u64 = counts.iter().sum();
    let sum: f64 = values.iter().zip(&counts).map(|(v, c)| v * *c as f64).sum();
    json!({
        "Values": values,
        "Counts": counts,
        "Min": values.first().copied().unwrap_or(0.0),
        "Max": values.last().copied().unwrap_or(0.0),
        "Count": count,
        "Sum": sum,
    })
}

fn unit_name(unit: Unit) -> &'static str {
    match unit {
        Unit::Milliseconds => "Milliseconds",
        Unit::Count => "Count",
        _ => "None",
    }
}

static INSTALLED: OnceLock<&'static Emf> = OnceLock::new();

/// Sets the recorder for this process, unless metrics are off (then the
/// facade's calls cost next to nothing). Once: later calls (tests that start
/// several apps in one process) keep the first.
pub fn install(service: Service, args: &MetricsArgs) -> Option<&'static Emf> {
    (args.metrics_format != MetricsFormat::Off).then(|| counting(service, args))
}

/// Sets a recorder that counts, whatever the output (the local mode reads
/// its totals for its summary line).
pub fn counting(service: Service, args: &MetricsArgs) -> &'static Emf {
    INSTALLED.get_or_init(|| {
        let emf: &'static Emf = Box::leak(Box::new(Emf::new(service, args)));
        let _ = metrics::set_global_recorder(emf);
        emf
    })
}

/// The recorder, if one is installed.
pub fn installed() -> Option<&'static Emf> {
    INSTALLED.get().copied()
}

/// Flushes the installed recorder, if any.
pub fn flush() {
    if let Some(emf) = installed() {
        emf.flush();
    }
}

/// Writes what a Lambda invocation counted, if a recorder is installed and
/// anything was counted.
pub fn flush_invocation() {
    if let Some(emf) = installed() {
        let document = emf.invocation_document(crate::id::now_millis());
        let counted = document["_aws"]["CloudWatchMetrics"][0]["Metrics"]
            .as_array()
            .is_some_and(|m| !m.is_empty());
        if counted {
            emf.write(document);
        }
    }
}

/// Milliseconds since `started`, for a distribution.
pub fn millis(elapsed: std::time::Duration) -> f64 {
    elapsed.as_secs_f64() * 1000.0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn emf(service: Service) -> Emf {
        Emf::new(
            service,
            &MetricsArgs {
                metrics_format: MetricsFormat::Off,
                metrics_namespace: "Test".into(),
            },
        )
    }

    #[test]
    fn a_document_is_valid_emf_and_counts_since_the_last_flush() {
        let emf = emf(Service::Api);
        let accepted = emf.register_counter(&Key::from_static_name(EMAILS_ACCEPTED), &metadata());
        accepted.increment(3);
        let latency = emf.register_histogram(&Key::from_static_name(API_LATENCY), &metadata());
        for v in [1.0, 1.0, 1.1, 250.0] {
            latency.record(v);
        }
        let doc = emf.document(1_700_000_000_000);
        let directive = &doc["_aws"]["CloudWatchMetrics"][0];
        assert_eq!(doc["_aws"]["Timestamp"], 1_700_000_000_000u64);
        assert_eq!(directive["Namespace"], "Test");
        assert_eq!(directive["Dimensions"], json!([["Service"]]));
        assert_eq!(doc["Service"], "api");
        assert_eq!(doc[EMAILS_ACCEPTED], 3);
        assert_eq!(doc[REJECTED_INVALID], 0, "zeros are written");
        let defined: Vec<&str> = directive["Metrics"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["Name"].as_str().unwrap())
            .collect();
        for name in defined.iter() {
            assert!(doc.get(*name).is_some(), "{name} defined but absent");
        }
        assert!(defined.len() <= 100);
        let d = &doc[API_LATENCY];
        assert_eq!(d["Count"], 4);
        assert_eq!(
            d["Counts"]
                .as_array()
                .unwrap()
                .iter()
                .map(|c| c.as_u64().unwrap())
                .sum::<u64>(),
            4
        );
        let values: Vec<f64> = d["Values"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_f64().unwrap())
            .collect();
        assert_eq!(values.len(), 2, "1.0 and 1.1 share a bucket: {values:?}");
        assert!((values[1] / 250.0 - 1.0).abs() < 0.125, "{values:?}");

        let again = emf.document(1_700_000_010_000);
        assert_eq!(again[EMAILS_ACCEPTED], 0, "counted since the last flush");
        assert!(
            again.get(API_LATENCY).is_none(),
            "no samples, no distribution"
        );
        assert_eq!(emf.total(EMAILS_ACCEPTED), 3);
    }

    #[test]
    fn any_number_of_samples_fits_in_one_document() {
        let emf = emf(Service::Worker);
        let batch = emf.register_histogram(&Key::from_static_name(WORKER_BATCH_TIME), &metadata());
        for i in 0..100_000 {
            batch.record(0.01 + i as f64 * 0.7);
        }
        let d = &emf.document(0)[WORKER_BATCH_TIME];
        assert_eq!(d["Count"], 100_000);
        assert!(d["Values"].as_array().unwrap().len() <= 100);
    }

    fn metadata() -> Metadata<'static> {
        Metadata::new(module_path!(), metrics::Level::INFO, None)
    }

    #[test]
    fn an_invocation_writes_only_what_it_counted() {
        let emf = emf(Service::Worker);
        let stored = emf.register_counter(&Key::from_static_name(EMAILS_STORED), &metadata());
        stored.increment(2);
        let doc = emf.invocation_document(1_700_000_000_000);
        let defined: Vec<&str> = doc["_aws"]["CloudWatchMetrics"][0]["Metrics"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["Name"].as_str().unwrap())
            .collect();
        assert_eq!(defined, [EMAILS_STORED]);
        assert_eq!(doc[EMAILS_STORED], 2);
        assert!(doc.get(STORE_FAILURES).is_none(), "no zeros per invocation");
        // Counted since the last document only.
        let next = emf.invocation_document(1_700_000_000_001);
        assert_eq!(next["_aws"]["CloudWatchMetrics"][0]["Metrics"], json!([]));
    }

    /// A name the code counts under but no catalog lists would never be
    /// written (documents follow the catalogs), nor reach the manifest the
    /// dashboard and alarms are checked against.
    #[test]
    fn every_name_is_in_a_catalog() {
        let source = include_str!("metrics.rs");
        let names = &source[source.find("pub mod names {").unwrap()..];
        let names = &names[..names.find("\n}").unwrap()];
        let declared: Vec<&str> = names
            .lines()
            .filter_map(|l| l.trim().strip_prefix("pub const "))
            .filter_map(|l| l.split('"').nth(1))
            .collect();
        assert!(declared.len() >= 20, "{declared:?}");
        for name in declared {
            let listed = API
                .iter()
                .chain(WORKER)
                .filter(|(n, _, _)| *n == name)
                .count();
            assert_eq!(listed, 1, "{name} is in {listed} catalogs");
        }
    }
}
