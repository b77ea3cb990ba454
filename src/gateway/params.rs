//! Request parameters → job payload, and job results → HTTP content types.

use serde_json::{Map, Value};

/// Query parameters the gateway itself reads; they never reach the worker.
pub const GATEWAY_PARAMS: &[&str] = &["timeout_ms"];

fn hex_val(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// Decodes `application/x-www-form-urlencoded` text: `+` is a space, `%XX`
/// a byte. A `%` not followed by two hex digits is kept as is.
pub fn form_decode(s: &str) -> Vec<u8> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < b.len() => match (hex_val(b[i + 1]), hex_val(b[i + 2])) {
                (Some(h), Some(l)) => {
                    out.push(h * 16 + l);
                    i += 2;
                }
                _ => out.push(b'%'),
            },
            c => out.push(c),
        }
        i += 1;
    }
    out
}

/// Percent-decodes a URL path segment (`+` stays `+`).
pub fn path_decode(s: &str) -> Vec<u8> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            if let (Some(h), Some(l)) = (hex_val(b[i + 1]), hex_val(b[i + 2])) {
                out.push(h * 16 + l);
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    out
}

/// Splits a query string into decoded (key, value) pairs, in order.
/// Errors name the first key or value that is not UTF-8.
pub fn query_pairs(query: &str) -> Result<Vec<(String, String)>, String> {
    let mut out = Vec::new();
    for part in query.split('&').filter(|p| !p.is_empty()) {
        let (k, v) = part.split_once('=').unwrap_or((part, ""));
        let k = String::from_utf8(form_decode(k)).map_err(|_| "a query parameter name is not UTF-8".to_string())?;
        let v = String::from_utf8(form_decode(v)).map_err(|_| format!("query parameter '{k}' is not UTF-8"))?;
        out.push((k, v));
    }
    Ok(out)
}

/// The gateway's own parameters (e.g. `timeout_ms`), last value wins.
pub fn gateway_param<'a>(pairs: &'a [(String, String)], name: &str) -> Option<&'a str> {
    pairs.iter().rev().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
}

/// The query parameters as a JSON object, gateway parameters left out:
/// `str=Hello,+world` → `{"str":"Hello, world"}`. Values are strings; a
/// repeated name becomes an array of its values in order.
pub fn query_to_json(pairs: &[(String, String)]) -> Value {
    let mut map = Map::new();
    for (k, v) in pairs {
        if GATEWAY_PARAMS.contains(&k.as_str()) {
            continue;
        }
        match map.get_mut(k) {
            None => {
                map.insert(k.clone(), Value::String(v.clone()));
            }
            Some(Value::Array(a)) => a.push(Value::String(v.clone())),
            Some(other) => {
                let first = other.take();
                *other = Value::Array(vec![first, Value::String(v.clone())]);
            }
        }
    }
    Value::Object(map)
}

/// Whether a `Content-Type` header value names JSON (`application/json`,
/// `application/*+json`, parameters ignored).
pub fn is_json_content_type(ct: &str) -> bool {
    let mime = ct.split(';').next().unwrap_or("").trim().to_ascii_lowercase();
    mime == "application/json" || (mime.starts_with("application/") && mime.ends_with("+json"))
}

/// Whether `data` is one JSON text; the error says why not. JSON text is
/// UTF-8 throughout (RFC 8259 section 8.1), so that is checked first, in one
/// pass without allocating: `serde_json`'s ignored-value parse checks the
/// grammar without building values, but skips the bytes inside strings
/// unchecked, so `"\xff"` alone would pass it.
pub fn check_json(data: &[u8]) -> Result<(), String> {
    let text = std::str::from_utf8(data).map_err(|e| format!("invalid UTF-8 at byte {}", e.valid_up_to()))?;
    serde_json::from_str::<serde::de::IgnoredAny>(text).map(|_| ()).map_err(|e| e.to_string())
}

/// The content type of a job result: JSON when it parses as JSON, text when
/// it is UTF-8, bytes otherwise.
pub fn sniff_content_type(result: &[u8]) -> &'static str {
    let start = result.iter().position(|b| !b.is_ascii_whitespace()).unwrap_or(result.len());
    let end = result.iter().rposition(|b| !b.is_ascii_whitespace()).map_or(start, |i| i + 1);
    let trimmed = &result[start..end.max(start)];
    if !trimmed.is_empty() && check_json(trimmed).is_ok() {
        "application/json"
    } else if std::str::from_utf8(result).is_ok() {
        "text/plain; charset=utf-8"
    } else {
        "application/octet-stream"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_becomes_json() {
        let p = query_pairs("str=Hello,+world&timeout_ms=500").unwrap();
        assert_eq!(query_to_json(&p).to_string(), r#"{"str":"Hello, world"}"#);
        assert_eq!(gateway_param(&p, "timeout_ms"), Some("500"));
        let p = query_pairs("a=1&a=2&b&c=%C3%A9%2B%zz&a=3").unwrap();
        assert_eq!(query_to_json(&p).to_string(), r#"{"a":["1","2","3"],"b":"","c":"é+%zz"}"#);
        assert!(query_pairs("x=%FF").is_err());
        assert_eq!(query_to_json(&query_pairs("").unwrap()).to_string(), "{}");
        assert_eq!(form_decode("%4"), b"%4");
        assert_eq!(form_decode("%41"), b"A");
        assert_eq!(path_decode("SYNC%3ASTR-REV"), b"SYNC:STR-REV");
        assert_eq!(path_decode("a%2"), b"a%2");
        assert_eq!(path_decode("a+b"), b"a+b");
    }

    #[test]
    fn json_check() {
        assert_eq!(check_json(br#" {"a":["\u00e9",1.5e3,null]} "#), Ok(()));
        assert_eq!(check_json("\"é\"".as_bytes()), Ok(()));
        assert_eq!(check_json(b"\"\xff\""), Err("invalid UTF-8 at byte 1".into()));
        assert_eq!(check_json(b"{\"k\xc3\":1}"), Err("invalid UTF-8 at byte 3".into()));
        assert!(check_json(b"{not json").is_err());
        assert!(check_json(b"1 2").is_err());
    }

    #[test]
    fn content_types() {
        assert_eq!(sniff_content_type(br#"{"a":1}"#), "application/json");
        assert_eq!(sniff_content_type(b"42\n"), "application/json");
        assert_eq!(sniff_content_type(b"dlrow ,olleH"), "text/plain; charset=utf-8");
        assert_eq!(sniff_content_type(b""), "text/plain; charset=utf-8");
        assert_eq!(sniff_content_type(&[0xff, 0x00]), "application/octet-stream");
        assert_eq!(sniff_content_type(b"\"\xff\""), "application/octet-stream");
        assert!(is_json_content_type("application/json; charset=utf-8"));
        assert!(is_json_content_type("application/vnd.api+json"));
        assert!(!is_json_content_type("text/plain"));
    }
}
