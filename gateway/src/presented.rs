//! What a request presents besides its path: the place receipt a page sends back (header
//! `X-Queue-Receipt`, or query parameter `receipt` where headers cannot be set) and plain query
//! values. Read by the routes and by the limiter in front of them.

use axum::http::HeaderMap;

/// The header a page sends its latest place receipt in.
pub const RECEIPT_HEADER: &str = "x-queue-receipt";

/// The receipt a poll presents: the header, else the query parameter. Receipts are URL-safe
/// (base64url and dots), so the query needs no decoding.
pub fn presented_receipt<'a>(headers: &'a HeaderMap, query: Option<&'a str>) -> Option<&'a str> {
    headers
        .get(RECEIPT_HEADER)
        .and_then(|v| v.to_str().ok())
        .or_else(|| query_value(query, "receipt"))
        .filter(|text| !text.is_empty())
}

/// The value of `name` in a query string (no decoding: our parameters are plain).
pub fn query_value<'a>(query: Option<&'a str>, name: &str) -> Option<&'a str> {
    query?.split('&').find_map(|pair| {
        let (key, value) = pair.split_once('=')?;
        (key == name).then_some(value)
    })
}
