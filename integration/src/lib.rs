//! Helpers for black-box tests: a real moto server on loopback, AWS SDK
//! clients pointed at it, and the real binaries (`queue2bucket`, the Lambda
//! functions) run as child processes.

pub mod fault;
pub mod lambda;
pub mod move_task;

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use aws_sdk_sqs::types::QueueAttributeName;

pub const REGION: &str = "us-east-1";

/// A valid `data` object.
pub const DATA: &str = r#"{"email_subject":"Hello","email_sender":"alice@example.com","email_timestream":"1732780800","email_content":"Hi Bob"}"#;

pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("integration/ is inside the workspace")
        .to_path_buf()
}

/// A loopback port nobody listens on right now.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// Polls `check` until it returns Some, or panics after `timeout`.
pub async fn eventually<T, F, Fut>(what: &str, timeout: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A child process killed (SIGKILL) when dropped, whose output lines are
/// collected for assertions.
pub struct Process {
    child: Child,
    lines: Arc<Mutex<Vec<String>>>,
    name: String,
}

impl Process {
    pub fn spawn(name: &str, mut command: Command) -> Self {
        command.stdout(Stdio::piped()).stderr(Stdio::piped());
        let mut child = command
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {name}: {e}"));
        let lines = Arc::new(Mutex::new(Vec::new()));
        for stream in [
            child
                .stdout
                .take()
                .map(|s| Box::new(s) as Box<dyn std::io::Read + Send>),
            child
                .stderr
                .take()
                .map(|s| Box::new(s) as Box<dyn std::io::Read + Send>),
        ]
        .into_iter()
        .flatten()
        {
            let lines = lines.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(stream).lines().map_while(Result::ok) {
                    lines.lock().unwrap().push(line);
                }
            });
        }
        Self {
            child,
            lines,
            name: name.to_owned(),
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn lines(&self) -> Vec<String> {
        self.lines.lock().unwrap().clone()
    }

    /// Output lines parsed as JSON (log lines); others skipped.
    pub fn json_lines(&self) -> Vec<serde_json::Value> {
        self.lines()
            .iter()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    }

    pub async fn wait_for_line(&self, what: &str, pred: impl Fn(&str) -> bool) -> String {
        eventually(what, Duration::from_secs(30), || {
            let found = self.lines().into_iter().find(|l| pred(l));
            async move { found }
        })
        .await
    }

    pub fn signal(&self, signal: &str) {
        let status = Command::new("kill")
            .args([format!("-{signal}"), self.pid().to_string()])
            .status()
            .expect("kill runs");
        assert!(status.success(), "kill -{signal} {}", self.name);
    }

    /// Waits for the process to exit, up to `timeout`.
    pub async fn wait_exit(&mut self, timeout: Duration) -> ExitStatus {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "{} did not exit within {timeout:?}; output:\n{}",
                self.name,
                self.lines().join("\n")
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Fails if the output shows a panic.
    pub fn assert_no_panic(&self) {
        let lines = self.lines();
        assert!(
            !lines.iter().any(|l| l.contains("panicked")),
            "{} panicked:\n{}",
            self.name,
            lines.join("\n")
        );
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        self.kill();
    }
}

/// moto in server mode on a free loopback port, stopped when dropped.
pub struct Moto {
    pub endpoint: String,
    pub port: u16,
    _process: Process,
}

fn moto_command() -> PathBuf {
    if let Some(path) = std::env::var_os("MOTO_SERVER") {
        return path.into();
    }
    let venv = workspace_root().join(".venv/bin/moto_server");
    if venv.exists() {
        venv
    } else {
        "moto_server".into()
    }
}

impl Moto {
    pub async fn start() -> Self {
        Self::start_on(free_port()).await
    }

    pub async fn start_on(port: u16) -> Self {
        let mut command = Command::new(moto_command());
        command.args(["-H", "127.0.0.1", "-p", &port.to_string()]);
        let process = Process::spawn("moto_server", command);
        let endpoint = format!("http://127.0.0.1:{port}");
        let http = reqwest::Client::new();
        let probe = format!("{endpoint}/moto-api/");
        eventually(
            "moto to answer (install it with scripts/setup.sh)",
            Duration::from_secs(30),
            || {
                let request = http.get(&probe).send();
                async move { request.await.ok().filter(|r| r.status().is_success()) }
            },
        )
        .await;
        Self {
            endpoint,
            port,
            _process: process,
        }
    }

    /// Environment for a process talking to this server.
    pub fn env(&self) -> Vec<(String, String)> {
        aws_env(&self.endpoint)
    }

    pub async fn clients(&self) -> Clients {
        Clients::new(&self.endpoint).await
    }
}

/// AWS SDK settings pointing every service at `endpoint`, with test
/// credentials and no instance-metadata probing. With `Q2B_ENDPOINT_HOST`
/// set (say `localhost`), the endpoint names that host instead of
/// 127.0.0.1, so that the binary under test resolves it itself.
pub fn aws_env(endpoint: &str) -> Vec<(String, String)> {
    let endpoint = match std::env::var("Q2B_ENDPOINT_HOST") {
        Ok(host) => endpoint.replacen("127.0.0.1", &host, 1),
        Err(_) => endpoint.to_owned(),
    };
    [
        ("AWS_ENDPOINT_URL", endpoint.as_str()),
        ("AWS_ACCESS_KEY_ID", "test"),
        ("AWS_SECRET_ACCESS_KEY", "test"),
        ("AWS_REGION", REGION),
        ("AWS_EC2_METADATA_DISABLED", "true"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect()
}

/// Real SDK clients against an AWS-compatible endpoint.
#[derive(Clone)]
pub struct Clients {
    pub sqs: aws_sdk_sqs::Client,
    pub s3: aws_sdk_s3::Client,
    pub ssm: aws_sdk_ssm::Client,
}

impl Clients {
    pub async fn new(endpoint: &str) -> Self {
        let config = aws_config::defaults(aws_config::BehaviorVersion::latest())
            .endpoint_url(endpoint)
            .region(aws_config::Region::new(REGION))
            .credentials_provider(aws_sdk_sqs::config::Credentials::new(
                "test", "test", None, None, "tests",
            ))
            .load()
            .await;
        let s3 = aws_sdk_s3::config::Builder::from(&config)
            .force_path_style(true)
            .build();
        Self {
            sqs: aws_sdk_sqs::Client::new(&config),
            s3: aws_sdk_s3::Client::from_conf(s3),
            ssm: aws_sdk_ssm::Client::new(&config),
        }
    }
}

/// The resources the system needs: a queue with a dead-letter queue, a
/// bucket and the token parameter.
pub struct Stack {
    pub clients: Clients,
    pub queue_url: String,
    pub dlq_url: String,
    pub bucket: String,
    pub token_param: String,
    pub token: String,
}

pub struct StackOptions {
    pub visibility_timeout_secs: u32,
    pub max_receive_count: u32,
}

impl Default for StackOptions {
    fn default() -> Self {
        Self {
            visibility_timeout_secs: 30,
            max_receive_count: 5,
        }
    }
}

impl Stack {
    pub async fn create(clients: Clients, options: StackOptions) -> Self {
        let suffix = uuid::Uuid::new_v4().simple().to_string()[..12].to_owned();
        let dlq_url = clients
            .sqs
            .create_queue()
            .queue_name(format!("emails-dlq-{suffix}"))
            .send()
            .await
            .expect("create DLQ")
            .queue_url
            .expect("DLQ url");
        let dlq_arn = clients
            .sqs
            .get_queue_attributes()
            .queue_url(&dlq_url)
            .attribute_names(QueueAttributeName::QueueArn)
            .send()
            .await
            .expect("DLQ attributes")
            .attributes
            .and_then(|a| a.get(&QueueAttributeName::QueueArn).cloned())
            .expect("DLQ arn");
        let redrive = serde_json::json!({
            "deadLetterTargetArn": dlq_arn,
            "maxReceiveCount": options.max_receive_count.to_string(),
        });
        let queue_url = clients
            .sqs
            .create_queue()
            .queue_name(format!("emails-{suffix}"))
            .attributes(QueueAttributeName::RedrivePolicy, redrive.to_string())
            .attributes(
                QueueAttributeName::VisibilityTimeout,
                options.visibility_timeout_secs.to_string(),
            )
            .send()
            .await
            .expect("create queue")
            .queue_url
            .expect("queue url");
        let bucket = format!("emails-{suffix}");
        clients
            .s3
            .create_bucket()
            .bucket(&bucket)
            .send()
            .await
            .expect("create bucket");
        let token_param = format!("/queue2bucket/{suffix}/token");
        let token = format!("tok-{suffix}");
        clients
            .ssm
            .put_parameter()
            .name(&token_param)
            .value(&token)
            .r#type(aws_sdk_ssm::types::ParameterType::SecureString)
            .send()
            .await
            .expect("put parameter");
        Self {
            clients,
            queue_url,
            dlq_url,
            bucket,
            token_param,
            token,
        }
    }

    pub async fn rotate_token(&mut self, token: &str) {
        self.clients
            .ssm
            .put_parameter()
            .name(&self.token_param)
            .value(token)
            .r#type(aws_sdk_ssm::types::ParameterType::SecureString)
            .overwrite(true)
            .send()
            .await
            .expect("rotate token");
        self.token = token.to_owned();
    }

    /// Messages on a queue, visible or in flight.
    pub async fn depth(&self, queue_url: &str) -> u64 {
        let attrs = self
            .clients
            .sqs
            .get_queue_attributes()
            .queue_url(queue_url)
            .attribute_names(QueueAttributeName::ApproximateNumberOfMessages)
            .attribute_names(QueueAttributeName::ApproximateNumberOfMessagesNotVisible)
            .send()
            .await
            .expect("queue attributes")
            .attributes
            .unwrap_or_default();
        [
            QueueAttributeName::ApproximateNumberOfMessages,
            QueueAttributeName::ApproximateNumberOfMessagesNotVisible,
        ]
        .iter()
        .filter_map(|k| attrs.get(k)?.parse::<u64>().ok())
        .sum()
    }

    /// Waits (up to `timeout`) until every posted email is stored and the
    /// queue is empty, then asserts that the bucket holds exactly those
    /// emails, one object each, byte for byte.
    pub async fn assert_stored_exactly_once(&self, posted: &[(String, String)], timeout: Duration) {
        eventually("every accepted email stored", timeout, || async {
            (self.keys().await.len() >= posted.len()).then_some(())
        })
        .await;
        eventually("the queue to empty", Duration::from_secs(30), || async {
            (self.depth(&self.queue_url).await == 0).then_some(())
        })
        .await;
        let objects = self.objects().await;
        assert_eq!(objects.len(), posted.len(), "exactly one object per email");
        for (id, data) in posted {
            let key = object_key(id);
            assert_eq!(
                objects.get(&key).map(Vec::as_slice),
                Some(data.as_bytes()),
                "{key}"
            );
        }
    }

    /// Every object in the bucket: key → body.
    pub async fn objects(&self) -> HashMap<String, Vec<u8>> {
        let mut out = HashMap::new();
        for key in self.keys().await {
            let body = self.object(&key).await.expect("listed object exists");
            out.insert(key, body);
        }
        out
    }

    pub async fn keys(&self) -> Vec<String> {
        let mut keys = Vec::new();
        let mut pages = self
            .clients
            .s3
            .list_objects_v2()
            .bucket(&self.bucket)
            .into_paginator()
            .send();
        while let Some(page) = pages.next().await {
            let page = page.expect("list objects");
            keys.extend(
                page.contents()
                    .iter()
                    .filter_map(|o| o.key().map(str::to_owned)),
            );
        }
        keys
    }

    pub async fn object(&self, key: &str) -> Option<Vec<u8>> {
        let output = self
            .clients
            .s3
            .get_object()
            .bucket(&self.bucket)
            .key(key)
            .send()
            .await
            .ok()?;
        Some(output.body.collect().await.ok()?.into_bytes().to_vec())
    }

    /// Environment for `queue2bucket api`.
    pub fn api_env(&self) -> Vec<(String, String)> {
        vec![
            ("SQS_QUEUE_URL".into(), self.queue_url.clone()),
            ("TOKEN_PARAM_NAME".into(), self.token_param.clone()),
        ]
    }

    /// Environment for `queue2bucket worker`.
    pub fn worker_env(&self) -> Vec<(String, String)> {
        vec![
            ("SQS_QUEUE_URL".into(), self.queue_url.clone()),
            ("S3_BUCKET_NAME".into(), self.bucket.clone()),
        ]
    }
}

/// The directory of the binaries under test, built once per test run so
/// that tests never exercise stale ones; or `Q2B_BIN_DIR`, for testing
/// binaries built otherwise (the static one of the container image:
/// scripts/static-binary.sh).
fn bin_dir() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        if let Some(dir) = std::env::var_os("Q2B_BIN_DIR") {
            return PathBuf::from(dir);
        }
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let status = Command::new(cargo)
            .current_dir(workspace_root())
            // The same selection as the test command's build step, so that
            // features, and thus artifacts, are shared with it.
            .args(["build", "--quiet", "--workspace", "--bins"])
            .status()
            .expect("cargo build runs");
        assert!(status.success(), "building the binaries failed");
        std::env::var_os("CARGO_TARGET_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| workspace_root().join("target"))
            .join("debug")
    })
}

/// A binary of the workspace: `queue2bucket`, `queue2bucket-api`,
/// `queue2bucket-worker`.
pub fn bin_path(name: &str) -> PathBuf {
    bin_dir().join(name)
}

/// A `queue2bucket` command with the given environment and nothing inherited
/// from the test's own AWS settings.
pub fn command(args: &[&str], env: &[(String, String)]) -> Command {
    command_at(&bin_path("queue2bucket"), args, env)
}

/// Like [`command`], for any binary.
pub fn command_at(binary: &Path, args: &[&str], env: &[(String, String)]) -> Command {
    let mut command = Command::new(binary);
    command.args(args).env_clear();
    for key in ["PATH", "HOME"] {
        if let Some(v) = std::env::var_os(key) {
            command.env(key, v);
        }
    }
    command.env("RUST_LOG", "info");
    command.envs(env.iter().map(|(k, v)| (k, v)));
    command
}

/// The API, started on a free port.
pub struct Api {
    pub process: Process,
    pub url: String,
    pub http: reqwest::Client,
}

impl Api {
    pub async fn start(env: &[(String, String)]) -> Self {
        let mut env = env.to_vec();
        env.push(("PORT".into(), "0".into()));
        let process = Process::spawn("queue2bucket api", command(&["api"], &env));
        let line = process
            .wait_for_line("the API to listen", |l| l.contains("\"listening\""))
            .await;
        let addr: serde_json::Value = serde_json::from_str(&line).expect("JSON log line");
        let port = addr["addr"]
            .as_str()
            .and_then(|a| a.rsplit(':').next())
            .expect("addr field")
            .to_owned();
        let api = Self {
            process,
            url: format!("http://127.0.0.1:{port}"),
            http: reqwest::Client::new(),
        };
        api.wait_ready().await;
        api
    }

    /// Waits until `GET /ready` answers 200 (the token could be read), as a
    /// load balancer would before sending traffic. Gives up quietly: tests
    /// of an unreachable token store expect it never to be ready.
    pub async fn wait_ready(&self) {
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while std::time::Instant::now() < deadline {
            let ready = self.http.get(format!("{}/ready", self.url)).send().await;
            if ready.is_ok_and(|r| r.status().is_success()) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// POSTs a raw JSON body to /email.
    pub async fn post(&self, body: impl Into<reqwest::Body>) -> (u16, serde_json::Value) {
        self.post_with(body, &[("content-type", "application/json")])
            .await
    }

    /// POSTs a JSON body to /email; the whole response, headers included.
    pub async fn post_response(&self, body: impl Into<reqwest::Body>) -> reqwest::Response {
        self.http
            .post(format!("{}/email", self.url))
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .expect("API answers")
    }

    pub async fn post_with(
        &self,
        body: impl Into<reqwest::Body>,
        headers: &[(&str, &str)],
    ) -> (u16, serde_json::Value) {
        let mut request = self.http.post(format!("{}/email", self.url)).body(body);
        for (k, v) in headers {
            request = request.header(*k, *v);
        }
        let response = request.send().await.expect("API answers");
        let status = response.status().as_u16();
        let text = response.text().await.expect("body");
        let json = serde_json::from_str(&text)
            .unwrap_or_else(|_| panic!("answer is not JSON (status {status}): {text:?}"));
        (status, json)
    }

    /// Posts `count` distinct emails (`label` and a number as the content),
    /// each of which must be accepted; answers their (id, data).
    pub async fn submit_accepted(
        &self,
        count: usize,
        label: &str,
        token: &str,
    ) -> Vec<(String, String)> {
        let mut posted = Vec::with_capacity(count);
        for i in 0..count {
            let data = DATA.replace("Hi Bob", &format!("{label} {i}"));
            let (status, id) = self.submit(&data, token).await;
            assert_eq!(status, 200, "{label} {i}");
            posted.push((id.expect("a 200 carries an id"), data));
        }
        posted
    }

    /// Posts `data` with `token` in the body; answers (status, id if queued).
    pub async fn submit(&self, data: &str, token: &str) -> (u16, Option<String>) {
        let (status, body) = self.post(envelope(data, token)).await;
        (status, body["id"].as_str().map(str::to_owned))
    }
}

pub fn envelope(data: &str, token: &str) -> String {
    format!(r#"{{"data":{data},"token":{}}}"#, serde_json::json!(token))
}

/// The worker process.
pub fn start_worker(env: &[(String, String)]) -> Process {
    Process::spawn("queue2bucket worker", command(&["worker"], env))
}

/// The key the API's email `id` is stored under with the default prefix:
/// `emails/<unix-seconds>-<id>.json`, the seconds read from the UUIDv7 (its
/// first 48 bits are Unix milliseconds). Worked out here independently of
/// the code under test.
pub fn object_key(id: &str) -> String {
    format!("emails/{}", object_file(id))
}

/// The file name part of [`object_key`].
pub fn object_file(id: &str) -> String {
    let hex: String = id.chars().filter(|c| *c != '-').take(12).collect();
    let millis = u64::from_str_radix(&hex, 16).unwrap_or_else(|_| panic!("not a UUID: {id}"));
    format!("{}-{id}.json", millis / 1000)
}

/// `a ++ b`, for building environments.
pub fn env_of(parts: &[&[(String, String)]]) -> Vec<(String, String)> {
    parts.iter().flat_map(|p| p.iter().cloned()).collect()
}
