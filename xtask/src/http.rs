//! A minimal HTTP/1.0 client over loopback TCP, for health checks and smoke tests.
//!
//! The local stack only ever talks plain HTTP to 127.0.0.1, so a full HTTP
//! crate (and its TLS stack) would cost compile time for nothing. HTTP/1.0
//! makes the server close the connection after the response, so the body is
//! simply everything up to EOF; a chunked body is still decoded because some
//! servers (Werkzeug, Go's net/http for streams) send one anyway.

use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

/// One HTTP response, read to the end.
#[derive(Debug, Clone)]
pub struct Response {
    pub status: u16,
    /// Header names as the server sent them; look them up with [`Response::header`].
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Response {
    /// The first header with this name, compared case-insensitively.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The body as text, with invalid UTF-8 replaced, for messages and parsing JSON.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// The parts of an `http://host:port/path?query` URL that a request needs.
#[derive(Debug, PartialEq, Eq)]
struct Url<'a> {
    host: &'a str,
    port: u16,
    /// Path plus query, always starting with `/`.
    target: &'a str,
}

fn parse_url(url: &str) -> anyhow::Result<Url<'_>> {
    let rest = url
        .strip_prefix("http://")
        .with_context(|| format!("only plain http:// URLs are supported, got {url:?}"))?;
    let (authority, target) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let (host, port) = match authority.rsplit_once(':') {
        // A bracketed IPv6 literal without a port has its last ':' inside the brackets.
        Some((h, p)) if !p.contains(']') => {
            let port = p
                .parse()
                .with_context(|| format!("bad port {p:?} in URL {url:?}"))?;
            (h, port)
        }
        _ => (authority, 80),
    };
    if host.is_empty() {
        bail!("URL {url:?} has no host");
    }
    Ok(Url { host, port, target })
}

/// Sends one HTTP/1.0 request and reads the whole response.
///
/// `timeout` bounds the whole exchange (connect, send, read to EOF), so a
/// server that accepts and then hangs cannot stall a health check.
pub fn request(
    method: &str,
    url: &str,
    headers: &[(&str, &str)],
    body: &[u8],
    timeout: Duration,
) -> anyhow::Result<Response> {
    exchange(method, url, headers, body, timeout, |_| {})
}

/// Like [`request`] with no body, calling `observe` with everything received so far (head and
/// raw body) each time more arrives, so a caller can time when a streamed event came in.
pub fn request_streaming(
    method: &str,
    url: &str,
    headers: &[(&str, &str)],
    timeout: Duration,
    observe: impl FnMut(&[u8]),
) -> anyhow::Result<Response> {
    exchange(method, url, headers, b"", timeout, observe)
}

fn exchange(
    method: &str,
    url: &str,
    headers: &[(&str, &str)],
    body: &[u8],
    timeout: Duration,
    mut observe: impl FnMut(&[u8]),
) -> anyhow::Result<Response> {
    let started = Instant::now();
    let u = parse_url(url)?;
    let host = u.host.trim_start_matches('[').trim_end_matches(']');
    let addr = (host, u.port)
        .to_socket_addrs()
        .with_context(|| format!("resolving {}:{}", u.host, u.port))?
        .next()
        .with_context(|| format!("{}:{} resolves to no address", u.host, u.port))?;
    let mut stream = TcpStream::connect_timeout(&addr, timeout)
        .with_context(|| format!("connecting to {addr} for {method} {url}"))?;

    let mut head = format!(
        "{method} {} HTTP/1.0\r\nHost: {}:{}\r\n",
        u.target, u.host, u.port
    );
    let mut has_length = false;
    for (k, v) in headers {
        if k.contains(['\r', '\n']) || v.contains(['\r', '\n']) {
            bail!("header {k:?} contains a line break");
        }
        has_length |= k.eq_ignore_ascii_case("content-length");
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    // Servers reject a POST/PUT without a length, even an empty one.
    if !has_length && (!body.is_empty() || matches!(method, "POST" | "PUT" | "PATCH")) {
        head.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    head.push_str("\r\n");

    let remaining = |what: &str| -> anyhow::Result<Duration> {
        timeout
            .checked_sub(started.elapsed())
            .filter(|d| !d.is_zero())
            .with_context(|| format!("{method} {url}: timed out after {timeout:?} while {what}"))
    };
    stream.set_write_timeout(Some(remaining("sending")?))?;
    stream
        .write_all(head.as_bytes())
        .and_then(|()| stream.write_all(body))
        .with_context(|| format!("sending {method} {url}"))?;

    let mut raw = Vec::new();
    let mut buf = [0u8; 16 * 1024];
    loop {
        stream.set_read_timeout(Some(remaining("reading the response")?))?;
        match stream.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                raw.extend_from_slice(&buf[..n]);
                observe(&raw);
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => {
                return Err(e).with_context(|| format!("reading the response to {method} {url}"));
            }
        }
    }
    parse_response(&raw).with_context(|| format!("parsing the response to {method} {url}"))
}

fn parse_response(raw: &[u8]) -> anyhow::Result<Response> {
    let end = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .context("the connection closed before the end of the response headers")?;
    let head = std::str::from_utf8(&raw[..end]).context("response headers are not UTF-8")?;
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let status = status_line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .with_context(|| format!("bad status line {status_line:?}"))?;
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect();
    let body = &raw[end + 4..];
    let chunked = headers.iter().any(|(k, v)| {
        k.eq_ignore_ascii_case("transfer-encoding") && v.to_ascii_lowercase().contains("chunked")
    });
    let body = if chunked {
        dechunk(body)?
    } else {
        body.to_vec()
    };
    Ok(Response {
        status,
        headers,
        body,
    })
}

/// Decodes a `Transfer-Encoding: chunked` body (chunk extensions and trailers ignored).
fn dechunk(mut data: &[u8]) -> anyhow::Result<Vec<u8>> {
    let mut out = Vec::new();
    loop {
        let eol = data
            .windows(2)
            .position(|w| w == b"\r\n")
            .context("chunked body ends inside a chunk-size line")?;
        let line = std::str::from_utf8(&data[..eol]).context("chunk-size line is not UTF-8")?;
        let size_hex = line.split(';').next().unwrap_or_default().trim();
        let size = usize::from_str_radix(size_hex, 16)
            .with_context(|| format!("bad chunk size {size_hex:?}"))?;
        data = &data[eol + 2..];
        if size == 0 {
            return Ok(out);
        }
        if data.len() < size {
            bail!(
                "chunked body truncated: chunk of {size} bytes, {} left",
                data.len()
            );
        }
        out.extend_from_slice(&data[..size]);
        data = data[size..].strip_prefix(b"\r\n").unwrap_or(&data[size..]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;

    #[test]
    fn parses_urls() {
        let u = parse_url("http://127.0.0.1:4566/path?q=1").unwrap();
        assert_eq!(
            u,
            Url {
                host: "127.0.0.1",
                port: 4566,
                target: "/path?q=1"
            }
        );
        let u = parse_url("http://localhost").unwrap();
        assert_eq!(
            u,
            Url {
                host: "localhost",
                port: 80,
                target: "/"
            }
        );
        let u = parse_url("http://[::1]:5000/v2/").unwrap();
        assert_eq!(
            u,
            Url {
                host: "[::1]",
                port: 5000,
                target: "/v2/"
            }
        );
        assert!(parse_url("https://example.com/").is_err());
    }

    #[test]
    fn decodes_chunked_bodies() {
        let raw = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5;x=y\r\nhello\r\n1\r\n!\r\n0\r\n\r\n";
        let r = parse_response(raw).unwrap();
        assert_eq!(r.status, 200);
        assert_eq!(r.body, b"hello!");
        assert_eq!(r.header("transfer-encoding"), Some("chunked"));
    }

    #[test]
    fn round_trip_against_a_local_server() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let server = std::thread::spawn(move || {
            let (mut s, _) = listener.accept().unwrap();
            let mut req = Vec::new();
            let mut buf = [0u8; 1024];
            while !req.ends_with(b"ping") {
                let n = s.read(&mut buf).unwrap();
                req.extend_from_slice(&buf[..n]);
            }
            s.write_all(b"HTTP/1.0 201 Created\r\nX-A: b\r\n\r\npong")
                .unwrap();
            String::from_utf8(req).unwrap()
        });
        let url = format!("http://127.0.0.1:{port}/x?y");
        let r = request(
            "PUT",
            &url,
            &[("X-T", "1")],
            b"ping",
            Duration::from_secs(5),
        )
        .unwrap();
        assert_eq!(
            (r.status, r.text().as_str(), r.header("x-a")),
            (201, "pong", Some("b"))
        );
        let req = server.join().unwrap();
        assert!(req.starts_with("PUT /x?y HTTP/1.0\r\n"), "{req}");
        assert!(
            req.contains("Content-Length: 4\r\n") && req.contains("X-T: 1\r\n"),
            "{req}"
        );
    }

    #[test]
    fn times_out_on_a_silent_server() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}/", listener.local_addr().unwrap());
        let err = request("GET", &url, &[], b"", Duration::from_millis(300)).unwrap_err();
        assert!(format!("{err:#}").contains("timed out") || format!("{err:#}").contains("reading"));
        drop(listener);
    }
}
