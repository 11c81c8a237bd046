//! Small helpers: `Retry-After` parsing, JSON numbers, ids, message hygiene.

use rand::Rng;
use reqwest::header::HeaderMap;
use serde_json::Value;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Unix seconds now.
pub(crate) fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// `chatcmpl-` followed by 24 random alphanumerics, for responses that lack an id.
pub(crate) fn random_id() -> String {
    const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
    let mut rng = rand::rng();
    let tail: String = (0..24)
        .map(|_| char::from(ALPHABET[rng.random_range(0..ALPHABET.len())]))
        .collect();
    format!("chatcmpl-{tail}")
}

/// An `f32` as a JSON number with its shortest decimal form (`0.7`, not
/// `0.699999988079071`).
pub(crate) fn f32_json(x: f32) -> Value {
    format!("{x}")
        .parse::<f64>()
        .ok()
        .and_then(serde_json::Number::from_f64)
        .map_or(Value::Null, Value::Number)
}

/// The wait an upstream asks for: `retry-after-ms` (milliseconds, as OpenAI sends), else
/// `Retry-After` as seconds (integer or decimal) or an HTTP date.
pub(crate) fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let get = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::trim)
    };
    if let Some(ms) = get("retry-after-ms").and_then(|v| v.parse::<f64>().ok())
        && ms.is_finite()
        && ms >= 0.0
    {
        return Some(Duration::from_secs_f64(ms / 1000.0));
    }
    let v = get("retry-after")?;
    if let Ok(secs) = v.parse::<f64>() {
        return (secs.is_finite() && secs >= 0.0).then(|| Duration::from_secs_f64(secs));
    }
    let at = parse_http_date(v)?;
    Some(
        at.duration_since(SystemTime::now())
            .unwrap_or(Duration::ZERO),
    )
}

/// Parse an IMF-fixdate (`Sun, 06 Nov 1994 08:49:37 GMT`), the form HTTP servers send.
pub(crate) fn parse_http_date(s: &str) -> Option<SystemTime> {
    let mut it = s.split_whitespace();
    let _weekday = it.next()?;
    let day: u32 = it.next()?.parse().ok()?;
    let month = match it.next()? {
        "Jan" => 1,
        "Feb" => 2,
        "Mar" => 3,
        "Apr" => 4,
        "May" => 5,
        "Jun" => 6,
        "Jul" => 7,
        "Aug" => 8,
        "Sep" => 9,
        "Oct" => 10,
        "Nov" => 11,
        "Dec" => 12,
        _ => return None,
    };
    let year: i64 = it.next()?.parse().ok()?;
    let mut hms = it.next()?.split(':');
    let h: u64 = hms.next()?.parse().ok()?;
    let m: u64 = hms.next()?.parse().ok()?;
    let sec: u64 = hms.next()?.parse().ok()?;
    if it.next()? != "GMT" || !(1..=31).contains(&day) || h > 23 || m > 59 || sec > 60 {
        return None;
    }
    // Days since 1970-01-01 (Howard Hinnant's days_from_civil).
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (i64::from(month) + 9) % 12;
    let doy = (153 * mp + 2) / 5 + i64::from(day) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    let days = u64::try_from(days).ok()?;
    Some(UNIX_EPOCH + Duration::from_secs(days * 86_400 + h * 3600 + m * 60 + sec))
}

/// Replace every occurrence of `secret` in `s` with `***`.
pub(crate) fn scrub(s: &str, secret: Option<&str>) -> String {
    match secret {
        Some(k) if k.len() >= 4 && s.contains(k) => s.replace(k, "***"),
        _ => s.to_string(),
    }
}

/// A non-streaming response body as JSON: malformed JSON is a protocol fault, and an error
/// object the upstream sent with a 200 (recognised by the API's `fault_of`) is its fault.
pub(crate) fn json_body(
    body: &[u8],
    fault_of: fn(&Value) -> Option<crate::stream::Fault>,
) -> Result<Value, crate::stream::Fault> {
    let v: Value = serde_json::from_slice(body).map_err(|e| {
        crate::stream::Fault::Protocol(format!(
            "response is not valid JSON ({e}): {}",
            truncate(&String::from_utf8_lossy(body), 200)
        ))
    })?;
    match fault_of(&v) {
        Some(f) => Err(f),
        None => Ok(v),
    }
}

/// At most `max` characters of `s`, with `…` when cut.
pub(crate) fn truncate(s: &str, max: usize) -> String {
    match s.char_indices().nth(max) {
        Some((i, _)) => format!("{}…", &s[..i]),
        None => s.to_string(),
    }
}

/// The message of an error body: OpenAI `{"error":{"message"}}` (or `{"error":"…"}`),
/// Anthropic `{"type":"error","error":{"type","message"}}`, or a bare `{"message"}`
/// (vLLM, others). Returns the message and the error `type` when there is one.
pub(crate) fn error_body_message(v: &Value) -> Option<(String, Option<String>)> {
    let ty = |o: &Value| o.get("type").and_then(Value::as_str).map(str::to_string);
    match v.get("error") {
        Some(Value::String(s)) => return Some((s.clone(), None)),
        Some(e @ Value::Object(_)) => {
            let msg = e
                .get("message")
                .and_then(Value::as_str)
                .map(str::to_string)
                .unwrap_or_else(|| e.to_string());
            return Some((msg, ty(e)));
        }
        _ => {}
    }
    if v.get("object").and_then(Value::as_str) == Some("error") {
        let msg = v
            .get("message")
            .and_then(Value::as_str)
            .map(str::to_string)
            .unwrap_or_else(|| v.to_string());
        return Some((msg, ty(v)));
    }
    None
}

/// A human-readable message for an error response body.
pub(crate) fn describe_error_body(body: &[u8]) -> String {
    if let Ok(v) = serde_json::from_slice::<Value>(body) {
        if let Some((msg, _)) = error_body_message(&v) {
            return truncate(&msg, 2000);
        }
        if let Some(m) = v.get("message").and_then(Value::as_str) {
            return truncate(m, 2000);
        }
    }
    let text = String::from_utf8_lossy(body);
    let text = text.trim();
    if text.is_empty() {
        "(empty body)".to_string()
    } else {
        truncate(text, 500)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use reqwest::header::HeaderValue;

    #[test]
    fn retry_after_forms() {
        let mut h = HeaderMap::new();
        assert_eq!(retry_after(&h), None);
        h.insert("retry-after", HeaderValue::from_static("2"));
        assert_eq!(retry_after(&h), Some(Duration::from_secs(2)));
        h.insert("retry-after", HeaderValue::from_static("0.5"));
        assert_eq!(retry_after(&h), Some(Duration::from_millis(500)));
        h.insert("retry-after-ms", HeaderValue::from_static("1500"));
        assert_eq!(retry_after(&h), Some(Duration::from_millis(1500)));
        let mut h = HeaderMap::new();
        h.insert(
            "retry-after",
            HeaderValue::from_static("Sun, 06 Nov 1994 08:49:37 GMT"),
        );
        assert_eq!(retry_after(&h), Some(Duration::ZERO));
        h.insert("retry-after", HeaderValue::from_static("soon"));
        assert_eq!(retry_after(&h), None);
    }

    #[test]
    fn http_date() {
        let t = parse_http_date("Sun, 06 Nov 1994 08:49:37 GMT").unwrap();
        assert_eq!(t.duration_since(UNIX_EPOCH).unwrap().as_secs(), 784_111_777);
        let t = parse_http_date("Thu, 29 Feb 2024 00:00:00 GMT").unwrap();
        assert_eq!(
            t.duration_since(UNIX_EPOCH).unwrap().as_secs(),
            1_709_164_800
        );
        assert!(parse_http_date("Sun, 06 Foo 1994 08:49:37 GMT").is_none());
    }

    #[test]
    fn json_floats_are_short() {
        assert_eq!(f32_json(0.7).to_string(), "0.7");
        assert_eq!(f32_json(1.0).to_string(), "1.0");
    }

    #[test]
    fn error_bodies() {
        assert_eq!(
            describe_error_body(br#"{"error":{"message":"bad","type":"x"}}"#),
            "bad"
        );
        assert_eq!(
            describe_error_body(
                br#"{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}"#
            ),
            "Overloaded"
        );
        assert_eq!(
            describe_error_body(br#"{"object":"error","message":"vllm"}"#),
            "vllm"
        );
        assert_eq!(describe_error_body(b"  plain  "), "plain");
        assert_eq!(describe_error_body(b""), "(empty body)");
        assert_eq!(truncate("abcdef", 3), "abc…");
        assert_eq!(scrub("key sk-123 leaked", Some("sk-123")), "key *** leaked");
    }
}
