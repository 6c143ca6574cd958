//! `queue2bucket dev` as a newcomer runs it: one process, embedded queue,
//! files on disk. Killed with SIGKILL mid-backlog, restarted, and every
//! accepted email must be on disk exactly once, byte for byte.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use integration::{DATA, Process, command, envelope, eventually};

const TOKEN: &str = "local-test-token";

struct Dev {
    process: Process,
    url: String,
}

async fn start_dev(data_dir: &Path) -> Dev {
    let dir = data_dir.to_str().unwrap();
    let process = Process::spawn(
        "queue2bucket dev",
        command(
            &[
                "dev",
                "--port",
                "0",
                "--data-dir",
                dir,
                "--token",
                TOKEN,
                "--poll-interval",
                "1",
            ],
            &[],
        ),
    );
    let line = process
        .wait_for_line("the API address", |l| l.trim_start().starts_with("API "))
        .await;
    let url = line.split_whitespace().nth(1).expect("URL").to_owned();
    Dev { process, url }
}

fn files(root: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let Ok(entries) = std::fs::read_dir(root) else {
        return out;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            out.extend(files(&path));
        } else {
            out.push(path);
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread")]
async fn the_banner_says_how_to_use_it_and_the_curl_works() {
    let dir = std::env::temp_dir().join(format!("q2b-dev-{}", uuid::Uuid::new_v4().simple()));
    let dev = start_dev(&dir).await;
    let banner = dev
        .process
        .wait_for_line("the curl line", |l| l.contains("curl -s"))
        .await;
    assert!(banner.contains(&dev.url));
    let lines = dev.process.lines().join("\n");
    assert!(lines.contains(TOKEN), "the token is printed");
    assert!(
        lines.contains("queue.sqlite3"),
        "the queue's path is printed"
    );
    let (status, body) = post(&dev.url, DATA).await;
    assert_eq!(status, 200, "{body}");
    let id = body["id"].as_str().unwrap();
    let path = dir.join("bucket").join(integration::object_key(id));
    eventually("the file", Duration::from_secs(10), || {
        let found = std::fs::read(&path).ok();
        async move { found }
    })
    .await;
    assert_eq!(std::fs::read(&path).unwrap(), DATA.as_bytes());
    dev.process
        .wait_for_line("the stored line", |l| {
            l.starts_with("stored ") && l.contains(id)
        })
        .await;

    // An email over a queue message's 1 MiB: through the claim check,
    // stored byte for byte, the staged copy removed.
    let large = DATA.replace("Hi Bob", &"e".repeat(2 * 1024 * 1024));
    let (status, body) = post(&dev.url, &large).await;
    assert_eq!(status, 200, "{body}");
    let id = body["id"].as_str().unwrap();
    let path = dir.join("bucket").join(integration::object_key(id));
    eventually("the large file", Duration::from_secs(10), || {
        let found = std::fs::read(&path).ok();
        async move { found }
    })
    .await;
    assert!(
        std::fs::read(&path).unwrap() == large.as_bytes(),
        "byte for byte"
    );
    assert!(dir.join("bucket/staging").is_dir(), "nothing was staged");
    eventually("the staged copy removed", Duration::from_secs(10), || {
        let left = files(&dir.join("bucket/staging")).len();
        async move { (left == 0).then_some(()) }
    })
    .await;

    // The local mode's metrics: a summary line instead of EMF documents.
    dev.process
        .wait_for_line("the summary line", |l| {
            l == "accepted 2, stored 2 since the start; 0 waiting, 0 in the dead-letter table"
        })
        .await;
    assert!(
        !dev.process.lines().iter().any(|l| l.contains("\"_aws\"")),
        "no EMF document in the local mode"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

async fn post(url: &str, data: &str) -> (u16, serde_json::Value) {
    let response = reqwest::Client::new()
        .post(format!("{url}/email"))
        .header("content-type", "application/json")
        .body(envelope(data, TOKEN))
        .send()
        .await
        .expect("answer");
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or_default())
}

#[tokio::test(flavor = "multi_thread")]
async fn sigkill_mid_backlog_loses_and_duplicates_nothing() {
    let dir = std::env::temp_dir().join(format!("q2b-kill-{}", uuid::Uuid::new_v4().simple()));
    let accepted: Arc<Mutex<HashMap<String, String>>> = Arc::default();
    let attempts = Arc::new(std::sync::atomic::AtomicUsize::new(0));

    // 20,000 accepted emails over four runs, each ended by a SIGKILL of the
    // whole process while clients are posting and the worker is behind.
    const ROUNDS: usize = 4;
    const PER_ROUND: usize = 5_000;
    for round in 0..ROUNDS {
        let mut dev = start_dev(&dir).await;
        // Clients post until the process dies under them.
        let mut clients = tokio::task::JoinSet::new();
        for client in 0..16 {
            let (url, accepted, attempts) = (dev.url.clone(), accepted.clone(), attempts.clone());
            clients.spawn(async move {
                for i in 0.. {
                    let data =
                        DATA.replace("Hi Bob", &format!("round {round} client {client} #{i}"));
                    attempts.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    let Ok(response) = reqwest::Client::new()
                        .post(format!("{url}/email"))
                        .header("content-type", "application/json")
                        .body(envelope(&data, TOKEN))
                        .send()
                        .await
                    else {
                        return;
                    };
                    if response.status() == 200 {
                        let body: serde_json::Value = response.json().await.unwrap();
                        let id = body["id"].as_str().unwrap().to_owned();
                        accepted.lock().unwrap().insert(id, data);
                    }
                }
            });
        }
        let target = (round + 1) * PER_ROUND;
        eventually("emails to be accepted", Duration::from_secs(300), || {
            let n = accepted.lock().unwrap().len();
            async move { (n >= target).then_some(()) }
        })
        .await;
        dev.process.signal("KILL");
        dev.process.wait_exit(Duration::from_secs(10)).await;
        while clients.join_next().await.is_some() {}
        dev.process.assert_no_panic();
    }
    let accepted = accepted.lock().unwrap().clone();

    let dev = start_dev(&dir).await;
    assert!(accepted.len() >= ROUNDS * PER_ROUND);
    let bucket = dir.join("bucket/emails");
    eventually(
        "every accepted email on disk",
        Duration::from_secs(300),
        || {
            let all = accepted
                .keys()
                .all(|id| bucket.join(integration::object_file(id)).exists());
            async move { all.then_some(()) }
        },
    )
    .await;
    for (id, data) in &accepted {
        let stored = std::fs::read(bucket.join(integration::object_file(id))).unwrap();
        assert_eq!(stored, data.as_bytes(), "{id}");
    }
    let stored = files(&dir.join("bucket"));
    let attempts = attempts.load(std::sync::atomic::Ordering::Relaxed);
    assert!(
        stored
            .iter()
            .all(|p| p.extension().is_some_and(|e| e == "json")),
        "only email files, no leftovers: {stored:?}"
    );
    // Accepted ones once each; a request cut off by the kill may have been
    // queued without its answer, and then it is stored at most once too.
    assert!(stored.len() >= accepted.len() && stored.len() <= attempts);
    dev.process.assert_no_panic();
    drop(dev);
    let _ = std::fs::remove_dir_all(&dir);
}
