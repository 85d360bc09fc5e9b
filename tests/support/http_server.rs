//! A real HTTP/1.1 server on 127.0.0.1 for the egress tests: a few fixed
//! routes, every request recorded, one request per connection (it answers
//! with `Connection: close`), and a record of when connections close.
//!
//! Routes (the query's `n` and `ms` are numbers):
//! - `GET /json`: 200 with `{"items": [1, 2, 3], "name": "culvert"}`;
//! - `GET /big?n=N`: 200 with N bytes and a Content-Length;
//! - `GET /chunked?n=N`: 200 with N bytes, chunked (no length up front);
//! - `GET /slow?ms=M`: waits M ms, then answers like `/json`;
//! - `GET /hang`: reads the request and never answers, until the client
//!   closes the connection (recorded in [`TestServer::closed`]);
//! - `GET /redirect?to=URL`: 302 with `Location: URL`;
//! - `GET /status?code=C`: that status, an empty JSON object;
//! - `POST /echo`: 200 with the request's body.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// One request the server read.
#[derive(Debug, Clone)]
pub struct Seen {
    /// `GET`, `POST`, ...
    pub method: String,
    /// The path with its query.
    pub target: String,
    /// Header names in lower case, with their values.
    pub headers: HashMap<String, String>,
    /// The body.
    pub body: Vec<u8>,
}

/// The server. Dropping it stops accepting.
pub struct TestServer {
    /// Where it listens.
    pub addr: SocketAddr,
    seen: Arc<Mutex<Vec<Seen>>>,
    closed: Arc<Mutex<Vec<Instant>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl TestServer {
    /// Start one on a free port of 127.0.0.1.
    pub async fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let closed = Arc::new(Mutex::new(Vec::new()));
        let (s, c) = (seen.clone(), closed.clone());
        let task = tokio::spawn(async move {
            loop {
                let Ok((conn, _)) = listener.accept().await else {
                    return;
                };
                let (s, c) = (s.clone(), c.clone());
                tokio::spawn(async move {
                    let _ = serve(conn, s, c).await;
                });
            }
        });
        Self {
            addr,
            seen,
            closed,
            task,
        }
    }

    /// The port.
    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// `http://127.0.0.1:PORT{path}`.
    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port())
    }

    /// `http://{host}:PORT{path}`.
    pub fn url_at(&self, host: &str, path: &str) -> String {
        format!("http://{host}:{}{path}", self.port())
    }

    /// Every request read so far.
    pub fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }

    /// When each `/hang` connection was closed by the client.
    pub fn closed(&self) -> Vec<Instant> {
        self.closed.lock().unwrap().clone()
    }
}

async fn serve(
    mut conn: TcpStream,
    seen: Arc<Mutex<Vec<Seen>>>,
    closed: Arc<Mutex<Vec<Instant>>>,
) -> std::io::Result<()> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let head_end = loop {
        let n = conn.read(&mut chunk).await?;
        if n == 0 {
            return Ok(());
        }
        buf.extend_from_slice(&chunk[..n]);
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        if buf.len() > 64 * 1024 {
            return Ok(());
        }
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).to_string();
    let mut lines = head.split("\r\n");
    let mut first = lines.next().unwrap_or("").split(' ');
    let method = first.next().unwrap_or("").to_string();
    let target = first.next().unwrap_or("").to_string();
    let headers: HashMap<String, String> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    let length: usize = headers
        .get("content-length")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let mut body = buf[head_end..].to_vec();
    while body.len() < length {
        let n = conn.read(&mut chunk).await?;
        if n == 0 {
            break;
        }
        body.extend_from_slice(&chunk[..n]);
    }
    seen.lock().unwrap().push(Seen {
        method: method.clone(),
        target: target.clone(),
        headers,
        body: body.clone(),
    });
    let (path, query) = target.split_once('?').unwrap_or((&target, ""));
    let param = |name: &str| -> Option<String> {
        query
            .split('&')
            .filter_map(|kv| kv.split_once('='))
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v.to_string())
    };
    let num = |name: &str| param(name).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
    let json = br#"{"items": [1, 2, 3], "name": "culvert"}"#.to_vec();
    match (method.as_str(), path) {
        ("GET", "/json") => respond(&mut conn, 200, &[], &json).await,
        ("GET", "/big") => respond(&mut conn, 200, &[], &vec![b'x'; num("n") as usize]).await,
        ("GET", "/chunked") => {
            let n = num("n") as usize;
            conn.write_all(
                b"HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ntransfer-encoding: chunked\r\nconnection: close\r\n\r\n",
            )
            .await?;
            let mut left = n;
            while left > 0 {
                let k = left.min(1000);
                conn.write_all(format!("{k:x}\r\n").as_bytes()).await?;
                conn.write_all(&vec![b'y'; k]).await?;
                conn.write_all(b"\r\n").await?;
                left -= k;
            }
            conn.write_all(b"0\r\n\r\n").await
        }
        ("GET", "/slow") => {
            tokio::time::sleep(Duration::from_millis(num("ms"))).await;
            respond(&mut conn, 200, &[], &json).await
        }
        ("GET", "/hang") => {
            // Wait for the client to go away.
            let mut rest = [0u8; 64];
            loop {
                match conn.read(&mut rest).await {
                    Ok(0) | Err(_) => break,
                    Ok(_) => {}
                }
            }
            closed.lock().unwrap().push(Instant::now());
            Ok(())
        }
        ("GET", "/redirect") => {
            let to = param("to").unwrap_or_default();
            respond(&mut conn, 302, &[("location", &to)], b"").await
        }
        ("GET", "/status") => respond(&mut conn, num("code") as u16, &[], b"{}").await,
        ("POST", "/echo") => respond(&mut conn, 200, &[], &body).await,
        _ => respond(&mut conn, 404, &[], b"{}").await,
    }
}

async fn respond(
    conn: &mut TcpStream,
    status: u16,
    headers: &[(&str, &str)],
    body: &[u8],
) -> std::io::Result<()> {
    let mut head = format!(
        "HTTP/1.1 {status} X\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n",
        body.len()
    );
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    conn.write_all(head.as_bytes()).await?;
    conn.write_all(body).await?;
    conn.shutdown().await
}
