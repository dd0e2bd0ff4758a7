//! Reading the loosely typed replies of our Lua scripts.

use redis::Value;

pub(crate) fn text(value: &Value) -> Option<String> {
    match value {
        Value::BulkString(bytes) => String::from_utf8(bytes.clone()).ok(),
        Value::SimpleString(s) => Some(s.clone()),
        Value::Int(n) => Some(n.to_string()),
        Value::Okay => Some("OK".into()),
        _ => None,
    }
}

pub(crate) fn int(value: &Value) -> Option<i64> {
    match value {
        Value::Int(n) => Some(*n),
        Value::BulkString(bytes) => std::str::from_utf8(bytes).ok()?.parse().ok(),
        Value::SimpleString(s) => s.parse().ok(),
        _ => None,
    }
}

pub(crate) fn array(value: &Value) -> &[Value] {
    match value {
        Value::Array(items) => items,
        _ => &[],
    }
}

pub(crate) fn malformed(script: &str) -> redis::RedisError {
    redis::RedisError::from((
        redis::ErrorKind::TypeError,
        "unexpected script reply",
        script.to_string(),
    ))
}

/// Pairs of a flat `HGETALL`-style list.
pub(crate) fn pairs(value: &Value) -> Vec<(String, String)> {
    array(value)
        .chunks(2)
        .filter_map(|pair| match pair {
            [k, v] => Some((text(k)?, text(v)?)),
            _ => None,
        })
        .collect()
}
