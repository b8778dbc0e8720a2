//! The image smoke test: `/health`, then a live SSE stream, read over HTTP from a running
//! image, normally through the Lambda emulator's Function URL (see `local::lambda`). It checks
//! the framing, the ids and that events arrive one by one, not all at the end.

use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use serde_json::Value;

use crate::http;

/// What the stream check saw, for the report.
#[derive(Debug, Clone)]
pub struct Seen {
    pub health: String,
    pub ids: Vec<u64>,
    /// Time from the request to the first tick event, and to the end of the stream.
    pub first_event: Duration,
    pub total: Duration,
}

/// Waits up to `ready` for `{base}/health` to answer 200 and returns its body.
///
/// Each request may wait for the whole remaining time. Behind the Lambda emulator a request
/// waits in a queue until a runtime takes it (the adapter does once the app is up), and an
/// invoke whose client gave up stays queued, so short polls would pile up stale invokes.
pub fn health(base: &str, ready: Duration) -> Result<String> {
    let deadline = Instant::now() + ready;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let result = http::request(
            "GET",
            &format!("{base}/health"),
            &[],
            b"",
            left.max(Duration::from_secs(1)),
        );
        match result {
            Ok(resp) if resp.status == 200 => return Ok(resp.text().trim().to_string()),
            _ if Instant::now() + Duration::from_millis(200) < deadline => {
                std::thread::sleep(Duration::from_millis(200))
            }
            Ok(resp) => bail!("{base}/health answered {}: {}", resp.status, resp.text()),
            Err(e) => {
                return Err(e.context(format!(
                    "{base}/health never answered within {ready:?}: behind the Lambda \
                     emulator, no runtime took the invoke (no adapter registered: is the \
                     Lambda Web Adapter in /opt/extensions, and did the app start?)"
                )));
            }
        }
    }
}

/// Waits up to `ready` for `/health`, then reads `count` events `interval` seconds apart.
/// With `interval` of a second or more, the first event must arrive well before the end: an
/// image whose stream is buffered (whole body at once) fails.
pub fn check(base: &str, ready: Duration, count: u32, interval: f64) -> Result<Seen> {
    let health = health(base, ready)?;
    let started = Instant::now();
    let mut first_event = None;
    let timeout = Duration::from_secs_f64(interval * f64::from(count) + 20.0);
    let resp = http::request_streaming(
        "GET",
        &format!("{base}/stream?count={count}&interval={interval}"),
        &[("Accept", "text/event-stream")],
        timeout,
        |body_so_far| {
            if first_event.is_none() && body_so_far.windows(11).any(|w| w == b"event: tick") {
                first_event = Some(started.elapsed());
            }
        },
    )?;
    let total = started.elapsed();
    let content_type = resp.header("content-type").unwrap_or_default().to_string();
    if resp.status != 200 || !content_type.starts_with("text/event-stream") {
        bail!(
            "/stream answered {} with content-type {content_type:?}: {}",
            resp.status,
            resp.text()
        );
    }
    let events = parse_sse(&String::from_utf8_lossy(&resp.body))?;
    let ticks: Vec<&SseEvent> = events.iter().filter(|e| e.event == "tick").collect();
    if ticks.len() < count.min(3) as usize {
        bail!(
            "expected at least 3 tick events, got {}: {events:?}",
            ticks.len()
        );
    }
    let ids: Vec<u64> = ticks
        .iter()
        .map(|e| {
            e.id.with_context(|| format!("tick event without id: {e:?}"))
        })
        .collect::<Result<_>>()?;
    if !ids.windows(2).all(|w| w[0] < w[1]) {
        bail!("event ids are not increasing: {ids:?}");
    }
    let first_event = first_event.context("no tick event arrived")?;
    if interval >= 0.5 {
        // Incremental delivery: the first event must not wait for the stream's end.
        let spread = interval * f64::from(count.saturating_sub(1));
        if first_event.as_secs_f64() > total.as_secs_f64() - spread / 2.0 {
            bail!(
                "the stream was not delivered incrementally: the first event arrived after \
                 {:.2}s of {:.2}s in all, so the response was buffered (is AWS_LWA_INVOKE_MODE \
                 RESPONSE_STREAM and the Function URL's invoke mode RESPONSE_STREAM?)",
                first_event.as_secs_f64(),
                total.as_secs_f64()
            );
        }
    }
    Ok(Seen {
        health,
        ids,
        first_event,
        total,
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
        for line in block.lines() {
            if line.starts_with(':') {
                continue;
            }
            let (field, value) = line.split_once(':').unwrap_or((line, ""));
            let value = value.strip_prefix(' ').unwrap_or(value);
            match field {
                "id" => {
                    id = Some(
                        value
                            .parse::<u64>()
                            .with_context(|| format!("bad id {value:?}"))?,
                    )
                }
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
