//! A Server-Sent Events client for the queue stream, as a browser's EventSource reads it: events
//! split on blank lines, `event`, `id`, `data` and `retry` fields, comments skipped.

use std::time::Duration;

use serde_json::Value;

/// One message, with when it arrived (ms since the epoch, this machine's clock, which is also
/// the clock of the Redis the notices are timed by).
#[derive(Debug, Clone, Default)]
pub struct Message {
    pub event: String,
    pub id: Option<String>,
    pub data: String,
    pub retry_ms: Option<u64>,
    pub received_ms: i64,
}

impl Message {
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.data).unwrap_or(Value::Null)
    }
}

pub struct Stream {
    response: reqwest::Response,
    buffer: String,
    ended: bool,
}

/// A client without a total timeout: a stream stays open as long as the test reads it.
pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(5))
        .build()
        .expect("http client")
}

impl Stream {
    /// Opens `GET {gateway}/api/queue/{queue_id}/events`; an answer other than 200 is returned
    /// as its status and JSON body.
    pub async fn open(
        http: &reqwest::Client,
        gateway: &str,
        queue_id: &str,
        last_event_id: Option<&str>,
    ) -> Result<Self, (u16, Value)> {
        let mut request = http
            .get(format!("{gateway}/api/queue/{queue_id}/events"))
            .header("accept", "text/event-stream");
        if let Some(id) = last_event_id {
            request = request.header("last-event-id", id);
        }
        let response = request.send().await.expect("stream request");
        let status = response.status().as_u16();
        if status != 200 {
            return Err((status, response.json().await.unwrap_or(Value::Null)));
        }
        let content_type = response
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string();
        assert!(
            content_type.starts_with("text/event-stream"),
            "{content_type}"
        );
        Ok(Self {
            response,
            buffer: String::new(),
            ended: false,
        })
    }

    /// The next message within `limit`; `None` when the server ended the stream. Panics when
    /// nothing came in time.
    pub async fn next(&mut self, limit: Duration) -> Option<Message> {
        tokio::time::timeout(limit, self.read())
            .await
            .unwrap_or_else(|_| panic!("no stream message within {limit:?}"))
    }

    /// The next message whose event is `status` and whose state is `state`, skipping others.
    pub async fn until_state(&mut self, state: &str, limit: Duration) -> Message {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            let message = self
                .next(left)
                .await
                .unwrap_or_else(|| panic!("the stream ended before {state}"));
            if message.event == "status" && message.json()["state"] == state {
                return message;
            }
        }
    }

    async fn read(&mut self) -> Option<Message> {
        loop {
            if let Some(end) = self.buffer.find("\n\n") {
                let block: String = self.buffer.drain(..end + 2).collect();
                if let Some(message) = parse(&block) {
                    return Some(message);
                }
                continue;
            }
            if self.ended {
                return None;
            }
            match self.response.chunk().await {
                Ok(Some(bytes)) => self.buffer.push_str(&String::from_utf8_lossy(&bytes)),
                Ok(None) | Err(_) => self.ended = true,
            }
        }
    }
}

/// One block of lines; `None` for a block of comments only (a heartbeat).
fn parse(block: &str) -> Option<Message> {
    let mut message = Message {
        received_ms: chrono::Utc::now().timestamp_millis(),
        ..Message::default()
    };
    let mut any = false;
    for line in block.lines() {
        if line.is_empty() || line.starts_with(':') {
            continue;
        }
        let (field, value) = line.split_once(':').unwrap_or((line, ""));
        let value = value.strip_prefix(' ').unwrap_or(value);
        any = true;
        match field {
            "event" => message.event = value.to_string(),
            "id" => message.id = Some(value.to_string()),
            "data" => {
                if !message.data.is_empty() {
                    message.data.push('\n');
                }
                message.data.push_str(value);
            }
            "retry" => message.retry_ms = value.parse().ok(),
            _ => {}
        }
    }
    any.then_some(message)
}
