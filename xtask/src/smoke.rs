//! The image smoke test: `/health`, then the function's check (`[functions.NAME.smoke]`) read
//! through the Lambda emulator's Function URL: a live SSE stream (framing, increasing ids,
//! events one by one rather than all at the end) or a JSON answer (status, type, fields).

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use serde_json::Value;

use crate::http;
use crate::settings::{Expect, Smoke};

/// What the check saw, for the report.
#[derive(Debug, Clone, Default)]
pub struct Seen {
    pub health: String,
    /// An SSE check's tick ids.
    pub ids: Vec<u64>,
    /// Time from the request to the first tick event, and to the end of the answer.
    pub first_event: Duration,
    pub total: Duration,
    /// A JSON check's answer, compact.
    pub body: String,
}

/// Waits up to `ready` for `/health`, then reads the check.
pub fn check(base: &str, ready: Duration, check: &Smoke) -> Result<Seen> {
    let health = health(base, ready)?;
    let mut seen = match &check.expect {
        Expect::Sse => stream(base, &check.path)?,
        Expect::Json(fields) => json(base, &check.path, fields)?,
    };
    seen.health = health;
    Ok(seen)
}

/// `count` and `interval` from the path's query (the SSE contract's defaults: 100 and 1 s).
fn stream_params(path: &str) -> (u32, f64) {
    let query = path.split_once('?').map_or("", |(_, q)| q);
    let get = |key: &str| {
        query
            .split('&')
            .find_map(|kv| kv.strip_prefix(key)?.strip_prefix('='))
            .and_then(|v| v.parse::<f64>().ok())
    };
    let (count, interval) = (
        get("count").unwrap_or(100.0),
        get("interval").unwrap_or(1.0),
    );
    (count as u32, interval)
}

/// A 200 answer of `content_type`, else an error with what came instead.
fn expect(path: &str, resp: http::Response, content_type: &str) -> Result<http::Response> {
    let got = resp.header("content-type").unwrap_or_default();
    let (status, text) = (resp.status, resp.text());
    if status != 200 || !got.starts_with(content_type) {
        bail!("{path} answered {status} with content-type {got:?}: {text}");
    }
    Ok(resp)
}

fn json(base: &str, path: &str, fields: &BTreeMap<String, String>) -> Result<Seen> {
    let started = Instant::now();
    let url = format!("{base}{path}");
    let resp = http::request("GET", &url, &[], b"", Duration::from_secs(30))?;
    let total = started.elapsed();
    let resp = expect(path, resp, "application/json")?;
    let value: Value = serde_json::from_slice(&resp.body)
        .with_context(|| format!("{path} answered no JSON: {}", resp.text()))?;
    for (key, want) in fields {
        let got = match &value[key.as_str()] {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        };
        if &got != want {
            bail!("{path}: `{key}` is {got:?}, not {want:?}: {}", resp.text());
        }
    }
    Ok(Seen {
        total,
        body: value.to_string(),
        ..Seen::default()
    })
}

/// Waits up to `ready` for `{base}/health` to answer 200 and returns its body.
///
/// Each request may wait for the whole remaining time. Behind the Lambda emulator a request
/// waits in a queue until a runtime takes it (the adapter does once the app is up), and an
/// invoke whose client gave up stays queued, so short polls would pile up stale invokes.
pub fn health(base: &str, ready: Duration) -> Result<String> {
    const HINT: &str = "behind the Lambda emulator, no runtime took the invoke (no adapter \
                        registered: is the Lambda Web Adapter in /opt/extensions, and did the app \
                        start?)";
    let deadline = Instant::now() + ready;
    let url = format!("{base}/health");
    let late = || format!("{url} never answered within {ready:?}: {HINT}");
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match http::request("GET", &url, &[], b"", left.max(Duration::from_secs(1))) {
            Ok(resp) if resp.status == 200 => return Ok(resp.text().trim().to_string()),
            _ if Instant::now() + Duration::from_millis(200) < deadline => {
                std::thread::sleep(Duration::from_millis(200))
            }
            Ok(resp) => bail!("{url} answered {}: {}", resp.status, resp.text()),
            Err(e) => return Err(e).with_context(late),
        }
    }
}

/// Reads `count` events `interval` seconds apart (from the path). With `interval` of half a
/// second or more, the first event must arrive well before the end: an image whose stream is
/// buffered (whole body at once) fails.
fn stream(base: &str, path: &str) -> Result<Seen> {
    let (count, interval) = stream_params(path);
    let started = Instant::now();
    let mut first_event = None;
    let timeout = Duration::from_secs_f64(interval * f64::from(count) + 20.0);
    let observe = |body: &[u8]| {
        if first_event.is_none() && body.windows(11).any(|w| w == b"event: tick") {
            first_event = Some(started.elapsed());
        }
    };
    let (url, accept) = (format!("{base}{path}"), [("Accept", "text/event-stream")]);
    let resp = http::stream("GET", &url, &accept, b"", timeout, observe)?;
    let total = started.elapsed();
    let resp = expect(path, resp, "text/event-stream")?;
    let events = parse_sse(&String::from_utf8_lossy(&resp.body))?;
    let ticks: Vec<&SseEvent> = events.iter().filter(|e| e.event == "tick").collect();
    let got = ticks.len();
    if got < count.min(3) as usize {
        bail!("expected at least 3 tick events, got {got}: {events:?}");
    }
    let id = |e: &&SseEvent| {
        e.id.with_context(|| format!("tick event without id: {e:?}"))
    };
    let ids: Vec<u64> = ticks.iter().map(id).collect::<Result<_>>()?;
    if !ids.windows(2).all(|w| w[0] < w[1]) {
        bail!("event ids are not increasing: {ids:?}");
    }
    let first_event = first_event.context("no tick event arrived")?;
    if interval >= 0.5 {
        // Incremental delivery: the first event must not wait for the stream's end.
        let spread = interval * f64::from(count.saturating_sub(1));
        let (first, all) = (first_event.as_secs_f64(), total.as_secs_f64());
        if first > all - spread / 2.0 {
            bail!(
                "the stream was not delivered incrementally: the first event arrived after \
                 {first:.2}s of {all:.2}s in all, so the response was buffered (is \
                 AWS_LWA_INVOKE_MODE RESPONSE_STREAM and the Function URL's invoke mode \
                 RESPONSE_STREAM?)"
            );
        }
    }
    Ok(Seen {
        ids,
        first_event,
        total,
        ..Seen::default()
    })
}

#[derive(Debug, Clone, PartialEq)]
pub struct SseEvent {
    pub id: Option<u64>,
    pub event: String,
    pub data: Value,
}

/// Parses a Server-Sent Events body into its events; each must carry JSON data.
pub fn parse_sse(body: &str) -> Result<Vec<SseEvent>> {
    let mut events = Vec::new();
    for block in body.replace("\r\n", "\n").split("\n\n") {
        let (mut id, mut event, mut data) = (None, "message".to_string(), String::new());
        for line in block.lines().filter(|l| !l.starts_with(':')) {
            let (field, value) = line.split_once(':').unwrap_or((line, ""));
            let value = value.strip_prefix(' ').unwrap_or(value);
            match field {
                "id" => id = Some(value.parse().with_context(|| format!("bad id {value:?}"))?),
                "event" => event = value.to_string(),
                "data" => data.push_str(value),
                _ => {}
            }
        }
        if data.is_empty() {
            continue;
        }
        let data: Value = serde_json::from_str(&data)
            .with_context(|| format!("event data is not JSON: {data}"))?;
        events.push(SseEvent { id, event, data });
    }
    Ok(events)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stream_parameters_come_from_the_path() {
        assert_eq!(stream_params("/stream?count=3&interval=1"), (3, 1.0));
        assert_eq!(stream_params("/stream?interval=0.5"), (100, 0.5));
        assert_eq!(stream_params("/stream"), (100, 1.0));
    }

    #[test]
    fn sse_bodies_parse() {
        let body = ": heartbeat\n\nretry: 1000\n\nid: 4\nevent: tick\ndata: {\"seq\": 4}\n\nid: 5\nevent: tick\ndata: {\"seq\": 5}\n\n";
        let events = parse_sse(body).unwrap();
        assert_eq!(
            events.iter().map(|e| e.id).collect::<Vec<_>>(),
            [Some(4), Some(5)]
        );
        assert_eq!(events[1].data["seq"], 5);
        assert!(parse_sse("id: 1\ndata: not json\n\n").is_err());
        assert_eq!(parse_sse("event: end\ndata: {}\n\n").unwrap()[0].id, None);
    }
}
