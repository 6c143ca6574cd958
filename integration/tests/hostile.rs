//! Hostile input: every request of the corpus in `tests/hostile/cases.json`
//! gets its documented answer (a JSON error with the right 4xx, or 200 for
//! odd but valid input), nothing refused is queued, and the process stays
//! healthy. Requests are written on raw TCP so that nothing (a client
//! library's checks) stands between the corpus and the server. Slow clients
//! are cut off by the request and header timeouts.

use std::path::Path;
use std::time::{Duration, Instant};

use base64::Engine;
use integration::{Process, command, eventually};
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const TOKEN: &str = "hostile-test-token";

struct Dev {
    process: Process,
    addr: String,
    dir: std::path::PathBuf,
}

async fn start_dev(extra: &[&str]) -> Dev {
    let dir = std::env::temp_dir().join(format!("q2b-hostile-{}", uuid::Uuid::new_v4().simple()));
    let dir_arg = dir.display().to_string();
    let mut args = vec![
        "dev",
        "--port",
        "0",
        "--data-dir",
        &dir_arg,
        "--token",
        TOKEN,
    ];
    args.extend_from_slice(extra);
    let process = Process::spawn("queue2bucket dev", command(&args, &[]));
    let line = process
        .wait_for_line("the API address", |l| l.trim_start().starts_with("API "))
        .await;
    let url = line.split_whitespace().nth(1).unwrap();
    Dev {
        process,
        addr: url.trim_start_matches("http://").to_owned(),
        dir,
    }
}

/// Sends raw bytes, reads the whole answer (the request asks to close).
async fn raw(addr: &str, request: &[u8]) -> (u16, String) {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    // The server may answer and close before reading an oversized body.
    let _ = stream.write_all(request).await;
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(15), stream.read_to_end(&mut answer)).await;
    parse(&answer)
}

fn parse(answer: &[u8]) -> (u16, String) {
    let text = String::from_utf8_lossy(answer);
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    (status, body)
}

fn body_of(case: &Value) -> Vec<u8> {
    if let Some(b64) = case["body_b64"].as_str() {
        return base64::engine::general_purpose::STANDARD
            .decode(b64)
            .unwrap();
    }
    let text = match &case["body"] {
        Value::String(s) => s.clone(),
        Value::Object(g) => {
            let prefix = g["prefix"].as_str().unwrap_or_default();
            let suffix = g["suffix"].as_str().unwrap_or_default();
            let middle = if let Some(n) = g.get("repeat_keys").and_then(Value::as_u64) {
                (0..n)
                    .map(|i| format!("\"k{i}\":0"))
                    .collect::<Vec<_>>()
                    .join(",")
            } else {
                g["repeat"]
                    .as_str()
                    .unwrap()
                    .repeat(g["times"].as_u64().unwrap() as usize)
            };
            format!("{prefix}{middle}{suffix}")
        }
        _ => String::new(),
    };
    text.replace("{token}", TOKEN).into_bytes()
}

fn request_of(case: &Value) -> Vec<u8> {
    let method = case["method"].as_str().unwrap_or("POST");
    let path = case["path"].as_str().unwrap_or("/email");
    let body = body_of(case);
    let mut head = format!("{method} {path} HTTP/1.1\r\nhost: localhost\r\nconnection: close\r\n");
    let mut has_length = false;
    for h in case["headers"].as_array().unwrap() {
        let (k, v) = (
            h[0].as_str().unwrap(),
            h[1].as_str().unwrap().replace("{token}", TOKEN),
        );
        has_length |= k.eq_ignore_ascii_case("content-length");
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    if !has_length {
        head.push_str(&format!("content-length: {}\r\n", body.len()));
    }
    head.push_str("\r\n");
    let mut request = head.into_bytes();
    if case["raw"] != Value::Bool(true) {
        request.extend_from_slice(&body);
    }
    request
}

fn json_files(dir: &Path) -> usize {
    std::fs::read_dir(dir).map(|d| d.count()).unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread")]
async fn every_hostile_request_gets_its_documented_answer() {
    let corpus: Value = serde_json::from_str(
        &std::fs::read_to_string(
            Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/hostile/cases.json"),
        )
        .unwrap(),
    )
    .unwrap();
    let dev = start_dev(&[]).await;
    let mut accepted = 0;
    for case in corpus["cases"].as_array().unwrap() {
        let name = case["name"].as_str().unwrap();
        let expected = case["status"].as_u64().unwrap() as u16;
        let (status, body) = raw(&dev.addr, &request_of(case)).await;
        assert_eq!(status, expected, "{name}: {body:.200}");
        let answer: Value =
            serde_json::from_str(&body).unwrap_or_else(|_| panic!("{name}: not JSON: {body:.200}"));
        if expected == 200 {
            accepted += 1;
            assert_eq!(answer["status"], "queued", "{name}");
        } else {
            let error = answer["error"].as_str().unwrap_or_default();
            assert!(!error.is_empty(), "{name}: no error message");
            assert!(
                error.len() < 300,
                "{name}: the error echoes input: {error:.100}…"
            );
            assert!(!error.contains(TOKEN), "{name}: the token is echoed");
            if let Some(part) = case["error"].as_str() {
                assert!(error.contains(part), "{name}: {error:?} lacks {part:?}");
            }
        }
        // Healthy after every request.
        let (health, _) = raw(
            &dev.addr,
            b"GET / HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n",
        )
        .await;
        assert_eq!(health, 200, "unhealthy after {name}");
    }
    // Exactly the accepted ones were queued and stored.
    let emails = dev.dir.join("bucket/emails");
    eventually(
        "the accepted emails on disk",
        Duration::from_secs(30),
        || {
            let n = json_files(&emails);
            async move { (n >= accepted).then_some(()) }
        },
    )
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        json_files(&emails),
        accepted,
        "refused requests were queued"
    );
    // The claim-checked cases left no staged copy behind.
    let staged = dev.dir.join("bucket/staging");
    assert!(staged.is_dir(), "the claim-checked cases staged nothing");
    eventually("the staged copies removed", Duration::from_secs(10), || {
        let left = std::fs::read_dir(&staged).map_or(0, |d| d.count());
        async move { (left == 0).then_some(()) }
    })
    .await;
    dev.process.assert_no_panic();
    let logs = dev.process.lines().join("\n");
    // The start-up banner shows it (the token line and the sample curl);
    // nothing after does.
    assert_eq!(logs.matches(TOKEN).count(), 2, "the token is logged");
    let _ = std::fs::remove_dir_all(&dev.dir);
}

#[tokio::test(flavor = "multi_thread")]
async fn tokens_of_every_length_are_refused_and_only_the_right_one_accepted() {
    let dev = start_dev(&[]).await;
    let data =
        r#"{"email_subject":"s","email_sender":"a@b.c","email_timestream":1,"email_content":"c"}"#;
    let post = |token: String| {
        let body = format!(r#"{{"data":{data},"token":{}}}"#, serde_json::json!(token));
        format!(
            "POST /email HTTP/1.1\r\nhost: x\r\nconnection: close\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
            body.len()
        )
    };
    // Every prefix of the right token, the token with a byte changed at every
    // position, and much longer ones.
    let mut guesses: Vec<String> = (0..TOKEN.len()).map(|n| TOKEN[..n].to_owned()).collect();
    for i in 0..TOKEN.len() {
        let mut bytes = TOKEN.as_bytes().to_vec();
        bytes[i] = if bytes[i] == b'x' { b'y' } else { b'x' };
        guesses.push(String::from_utf8(bytes).unwrap());
    }
    guesses.push(format!("{TOKEN}x"));
    guesses.push(TOKEN.repeat(100));
    for guess in guesses {
        let (status, _) = raw(&dev.addr, post(guess.clone()).as_bytes()).await;
        assert_eq!(status, 401, "{guess:?}");
    }
    let (status, _) = raw(&dev.addr, post(TOKEN.to_owned()).as_bytes()).await;
    assert_eq!(status, 200);
    dev.process.assert_no_panic();
    let _ = std::fs::remove_dir_all(&dev.dir);
}

#[tokio::test(flavor = "multi_thread")]
async fn slow_clients_are_cut_off_and_others_still_served() {
    let dev = start_dev(&["--request-timeout", "2", "--header-timeout", "2"]).await;
    // A body trickled one byte a second: 408 once the request timeout passes.
    let started = Instant::now();
    let mut slow_body = TcpStream::connect(&dev.addr).await.unwrap();
    slow_body
        .write_all(b"POST /email HTTP/1.1\r\nhost: x\r\nconnection: close\r\ncontent-type: application/json\r\ncontent-length: 1000\r\n\r\n{")
        .await
        .unwrap();
    let trickle = tokio::spawn(async move {
        let mut answer = Vec::new();
        for _ in 0..30 {
            if slow_body.write_all(b" ").await.is_err() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(300)).await;
            let mut buf = [0u8; 4096];
            if let Ok(Ok(n)) =
                tokio::time::timeout(Duration::from_millis(10), slow_body.read(&mut buf)).await
            {
                if n == 0 {
                    break;
                }
                answer.extend_from_slice(&buf[..n]);
            }
        }
        answer
    });
    // Headers trickled: the connection is closed once the header timeout passes.
    let mut slow_head = TcpStream::connect(&dev.addr).await.unwrap();
    slow_head
        .write_all(b"POST /email HTTP/1.1\r\nhost: x\r\n")
        .await
        .unwrap();
    let head_cut = tokio::spawn(async move {
        let t = Instant::now();
        for _ in 0..30 {
            if slow_head.write_all(b"x-slow: 1\r\n").await.is_err() {
                break;
            }
            let mut buf = [0u8; 1024];
            match tokio::time::timeout(Duration::from_millis(300), slow_head.read(&mut buf)).await {
                Ok(Ok(0)) | Ok(Err(_)) => break,
                Ok(Ok(_)) => break,
                Err(_) => {}
            }
        }
        t.elapsed()
    });
    // Meanwhile a normal client is served at once.
    let (health, _) = raw(
        &dev.addr,
        b"GET / HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n",
    )
    .await;
    assert_eq!(health, 200);
    let answer = trickle.await.unwrap();
    let (status, body) = parse(&answer);
    assert_eq!(status, 408, "slow body: {body}");
    assert!(started.elapsed() < Duration::from_secs(8));
    let cut_after = head_cut.await.unwrap();
    assert!(
        cut_after < Duration::from_secs(8),
        "slow headers were not cut off ({cut_after:?})"
    );
    dev.process.assert_no_panic();
    let _ = std::fs::remove_dir_all(&dev.dir);
}
