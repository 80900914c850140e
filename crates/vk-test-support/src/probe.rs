//! One-shot HTTP/1.1 GETs, over a unix socket or TCP: how the rig tells
//! that a daemon it shares answers (the engine's `/v1.41/version`, the
//! registry's `/v2/`), and how a test reads a kubelet's plain-HTTP side port
//! ([`http_get`]: metrics, health, `/runningpods/`). Deliberately tiny: no
//! client library, no TLS.

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Duration;

use anyhow::{Context, Result, bail};

/// How long one probe may take (connect, write, read).
const TIMEOUT: Duration = Duration::from_secs(5);

/// Status code and body of an answer (the body de-chunked).
#[derive(Debug, Clone)]
pub(crate) struct Answer {
    pub(crate) status: u16,
    pub(crate) head: String,
    pub(crate) body: String,
}

impl Answer {
    /// The value of header `name` (case-insensitive), if present.
    pub(crate) fn header(&self, name: &str) -> Option<&str> {
        self.head.lines().skip(1).find_map(|line| {
            let (key, value) = line.split_once(':')?;
            key.trim()
                .eq_ignore_ascii_case(name)
                .then_some(value.trim())
        })
    }
}

/// `GET path` over the unix socket `socket`.
pub(crate) fn get_unix(socket: &Path, path: &str) -> Result<Answer> {
    let mut stream = UnixStream::connect(socket)
        .with_context(|| format!("connecting to {}", socket.display()))?;
    stream.set_read_timeout(Some(TIMEOUT))?;
    stream.set_write_timeout(Some(TIMEOUT))?;
    exchange(&mut stream, "localhost", path, &[])
}

/// `GET path` over TCP to `addr` (`host:port`) with extra header lines
/// (`Name: value`).
pub(crate) fn get_tcp(addr: &str, path: &str, headers: &[String]) -> Result<Answer> {
    use std::net::ToSocketAddrs;
    let target = addr
        .to_socket_addrs()
        .with_context(|| format!("resolving {addr}"))?
        .next()
        .with_context(|| format!("{addr} resolves to nothing"))?;
    let mut stream = std::net::TcpStream::connect_timeout(&target, TIMEOUT)
        .with_context(|| format!("connecting to {addr}"))?;
    stream.set_read_timeout(Some(TIMEOUT))?;
    stream.set_write_timeout(Some(TIMEOUT))?;
    exchange(&mut stream, addr, path, headers)
}

/// The body of the `200 OK` answer to `GET url`, for a plain `http://` URL
/// (`http://127.0.0.1:<port>/metrics`); any other answer is an error naming
/// its status.
pub async fn http_get(url: &str) -> Result<String> {
    let rest = url
        .strip_prefix("http://")
        .with_context(|| format!("not an http:// URL: {url}"))?;
    let (addr, path) = match rest.split_once('/') {
        Some((addr, path)) => (addr.to_string(), format!("/{path}")),
        None => (rest.to_string(), "/".to_string()),
    };
    let answer = tokio::task::spawn_blocking(move || get_tcp(&addr, &path, &[]))
        .await
        .context("the HTTP request's task")??;
    if answer.status != 200 {
        bail!("GET {url}: status {}: {}", answer.status, answer.body);
    }
    Ok(answer.body)
}

fn exchange(
    stream: &mut (impl Read + Write),
    host: &str,
    path: &str,
    headers: &[String],
) -> Result<Answer> {
    let mut request = format!("GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n");
    for header in headers {
        request.push_str(header);
        request.push_str("\r\n");
    }
    request.push_str("\r\n");
    stream
        .write_all(request.as_bytes())
        .context("sending the request")?;
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).context("reading the answer")?;
    parse(&String::from_utf8_lossy(&raw))
}

fn parse(text: &str) -> Result<Answer> {
    let Some((head, body)) = text.split_once("\r\n\r\n") else {
        bail!(
            "not an HTTP answer: {:?}",
            text.chars().take(200).collect::<String>()
        );
    };
    let status = head
        .lines()
        .next()
        .and_then(|line| line.split_whitespace().nth(1))
        .and_then(|code| code.parse().ok())
        .with_context(|| format!("no status line in {head:?}"))?;
    let mut answer = Answer {
        status,
        head: head.to_string(),
        body: String::new(),
    };
    answer.body = match answer.header("transfer-encoding") {
        Some(te) if te.eq_ignore_ascii_case("chunked") => dechunk(body),
        _ => body.to_string(),
    };
    Ok(answer)
}

fn dechunk(mut rest: &str) -> String {
    let mut out = String::new();
    while let Some((size, tail)) = rest.split_once("\r\n") {
        let size = size.split(';').next().unwrap_or("").trim();
        let n = usize::from_str_radix(size, 16).unwrap_or(0);
        if n == 0 || tail.len() < n {
            break;
        }
        out.push_str(&tail[..n]);
        rest = tail[n..].strip_prefix("\r\n").unwrap_or(&tail[n..]);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_a_plain_answer_and_its_headers() {
        let answer = parse(
            "HTTP/1.1 401 Unauthorized\r\nDocker-Distribution-Api-Version: registry/2.0\r\n\r\n{}",
        )
        .unwrap_or_else(|e| panic!("{e:#}"));
        assert_eq!(answer.status, 401);
        assert_eq!(
            answer.header("docker-distribution-api-version"),
            Some("registry/2.0")
        );
        assert_eq!(answer.header("content-type"), None);
        assert_eq!(answer.body, "{}");
    }

    #[test]
    fn dechunks_a_chunked_body() {
        let answer = parse(
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n",
        )
        .unwrap_or_else(|e| panic!("{e:#}"));
        assert_eq!(answer.status, 200);
        assert_eq!(answer.body, "hello world");
    }

    /// Serves `answers` on a loopback port, one connection each; returns the port.
    fn serve(answers: Vec<&'static str>) -> Result<u16> {
        let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
        let port = listener.local_addr()?.port();
        std::thread::spawn(move || {
            for answer in answers {
                let Ok((mut conn, _)) = listener.accept() else {
                    return;
                };
                let mut request = [0u8; 1024];
                let _ = conn.read(&mut request);
                let _ = conn.write_all(answer.as_bytes());
            }
        });
        Ok(port)
    }

    #[tokio::test]
    async fn http_get_gives_the_body_of_a_200_and_an_error_otherwise() -> Result<()> {
        let port = serve(vec![
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n",
            "HTTP/1.1 503 Service Unavailable\r\n\r\ndown",
        ])?;
        let url = format!("http://127.0.0.1:{port}/healthz");
        assert_eq!(http_get(&url).await?, "ok");
        let err = http_get(&url).await.err().map(|e| format!("{e:#}"));
        assert!(err.as_deref().is_some_and(|e| e.contains("503")), "{err:?}");
        assert!(http_get("https://127.0.0.1/").await.is_err());
        Ok(())
    }

    #[test]
    fn garbage_is_an_error() {
        assert!(parse("SSH-2.0-OpenSSH").is_err());
    }
}
