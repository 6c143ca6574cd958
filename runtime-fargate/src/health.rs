//! `queue2bucket health`: a container health check for images without a
//! shell or curl. Exits 0 when `GET /` on the local port answers 200.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

pub async fn check(port: u16) -> Result<(), String> {
    let attempt = async {
        let mut stream = TcpStream::connect(("127.0.0.1", port))
            .await
            .map_err(|e| format!("connect to 127.0.0.1:{port}: {e}"))?;
        stream
            .write_all(b"GET / HTTP/1.0\r\nHost: localhost\r\n\r\n")
            .await
            .map_err(|e| format!("send: {e}"))?;
        let mut head = [0u8; 12];
        stream
            .read_exact(&mut head)
            .await
            .map_err(|e| format!("read: {e}"))?;
        match &head {
            b"HTTP/1.0 200" | b"HTTP/1.1 200" => Ok(()),
            other => Err(format!(
                "unexpected answer: {}",
                String::from_utf8_lossy(other)
            )),
        }
    };
    tokio::time::timeout(Duration::from_secs(3), attempt)
        .await
        .map_err(|_| "timed out".to_owned())?
}
