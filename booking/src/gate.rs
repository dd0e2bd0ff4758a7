//! Who is calling: an entry token, or a booking's access code.

use axum::http::{header, HeaderMap};
use ticketing::token::{EntryClaims, EntryVerifier};

use crate::error::ApiError;

/// The bearer credential, if any.
pub fn bearer(headers: &HeaderMap) -> Option<&str> {
    headers
        .get(header::AUTHORIZATION)?
        .to_str()
        .ok()?
        .strip_prefix("Bearer ")
        .map(str::trim)
        .filter(|t| !t.is_empty())
}

/// A verified entry token from the `Authorization` header.
pub async fn entry_token(
    headers: &HeaderMap,
    verifier: &EntryVerifier,
) -> Result<EntryClaims, ApiError> {
    let token = bearer(headers).ok_or(ApiError::InvalidToken)?;
    Ok(verifier.verify_batched(token).await?)
}

/// A JWT has three dot-separated parts; an access code has none.
pub fn looks_like_jwt(credential: &str) -> bool {
    credential.matches('.').count() == 2
}
