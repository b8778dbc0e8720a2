//! The one HTTP client: the AWS SDK's own connector (hyper with rustls), which the SDK already
//! compiles in. Health checks, smoke tests and the registry API go through [`stream`], which
//! hands a body to an observer as it arrives, so a caller can time when each event came in.

use std::time::Duration;

use anyhow::{Context, Result, anyhow};
use aws_sdk_ecr::config::SharedAsyncSleep;
use aws_sdk_ecr::error::DisplayErrorContext;
use aws_smithy_http_client::{Connector, proxy::ProxyConfig, tls};
use aws_smithy_runtime_api::client::http::{HttpConnector, HttpConnectorSettings};
use aws_smithy_types::body::SdkBody;
use aws_smithy_types::byte_stream::ByteStream;

/// Request headers, as name and value.
pub type Headers<'a> = &'a [(&'a str, &'a str)];

/// One HTTP response, read to the end.
#[derive(Debug, Clone)]
pub struct Response {
    pub status: u16,
    /// Header names in lower case.
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

/// Sends one request and reads the whole response; `timeout` bounds the whole exchange, so a
/// server that accepts and then hangs cannot stall a caller.
pub fn request(
    method: &str,
    url: &str,
    headers: Headers,
    body: &[u8],
    timeout: Duration,
) -> Result<Response> {
    stream(method, url, headers, body, timeout, |_| {})
}

/// The SDK's connector (rustls with ring), through the environment's proxy when `proxy`.
pub fn connector(
    settings: Option<&HttpConnectorSettings>,
    sleep: Option<SharedAsyncSleep>,
    proxy: bool,
) -> Connector {
    let mut builder = Connector::builder();
    builder.set_connector_settings(settings.cloned());
    builder.set_sleep_impl(sleep);
    if proxy {
        builder = builder.proxy_config(ProxyConfig::from_env());
    }
    let ring = tls::Provider::Rustls(tls::rustls_provider::CryptoMode::Ring);
    builder.tls_provider(ring).build()
}

/// Like [`request`], calling `observe` with the body received so far each time more arrives.
/// Loopback addresses never go through a proxy.
pub fn stream(
    method: &str,
    url: &str,
    headers: Headers,
    body: &[u8],
    timeout: Duration,
    mut observe: impl FnMut(&[u8]),
) -> Result<Response> {
    let mut builder = http::Request::builder().method(method).uri(url);
    for (k, v) in headers {
        builder = builder.header(*k, *v);
    }
    let request = builder.body(SdkBody::from(body.to_vec()));
    let request = request.with_context(|| format!("building {method} {url}"))?;
    let host = request.uri().host().unwrap_or_default();
    let loopback = host == "localhost" || host.starts_with("127.") || host == "[::1]";
    let connector = connector(None, None, !loopback);
    let request = aws_smithy_runtime_api::http::Request::try_from(request)
        .with_context(|| format!("building {method} {url}"))?;
    let mut runtime = tokio::runtime::Builder::new_current_thread();
    let runtime = runtime.enable_all().build()?;
    let exchange = async {
        let response = connector.call(request).await;
        let response = response.map_err(|e| anyhow!("{}", DisplayErrorContext(&e)))?;
        let status = response.status().as_u16();
        let lower = |(k, v): (&str, &str)| (k.to_ascii_lowercase(), v.to_string());
        let headers = response.headers().iter().map(lower).collect();
        let mut stream = ByteStream::new(response.into_body());
        let mut body = Vec::new();
        while let Some(chunk) = stream.next().await {
            body.extend_from_slice(&chunk.context("reading the response body")?);
            observe(&body);
        }
        anyhow::Ok(Response {
            status,
            headers,
            body,
        })
    };
    let answer = runtime.block_on(async { tokio::time::timeout(timeout, exchange).await });
    let answer = answer.unwrap_or_else(|_| Err(anyhow!("timed out after {timeout:?}")));
    answer.with_context(|| format!("{method} {url}"))
}

#[cfg(test)]
mod tests {
    use std::io::{Read, Write};
    use std::net::TcpListener;

    use super::*;

    #[test]
    fn round_trip_and_chunked_bodies_against_a_local_server() {
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
            s.write_all(
                b"HTTP/1.1 201 Created\r\nX-A: b\r\nTransfer-Encoding: chunked\r\n\r\n\
                  5\r\nhello\r\n1\r\n!\r\n0\r\n\r\n",
            )
            .unwrap();
            String::from_utf8(req).unwrap()
        });
        let url = format!("http://127.0.0.1:{port}/x?y");
        let mut seen = 0;
        let r = stream(
            "PUT",
            &url,
            &[("X-T", "1")],
            b"ping",
            Duration::from_secs(5),
            |_| seen += 1,
        )
        .unwrap();
        assert_eq!(
            (r.status, r.text().as_str(), r.header("X-A")),
            (201, "hello!", Some("b"))
        );
        assert!(seen >= 1);
        let req = server.join().unwrap();
        assert!(req.starts_with("PUT /x?y HTTP/1.1\r\n"), "{req}");
        assert!(req.to_ascii_lowercase().contains("x-t: 1\r\n"), "{req}");
    }

    #[test]
    fn times_out_on_a_silent_server() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}/", listener.local_addr().unwrap());
        let err = request("GET", &url, &[], b"", Duration::from_millis(300)).unwrap_err();
        assert!(format!("{err:#}").contains("timed out"), "{err:#}");
        drop(listener);
    }
}
