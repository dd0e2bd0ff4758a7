//! A booking request parsed into an order that can only be valid.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use ticketing::tier::TierCode;
use uuid::Uuid;

use crate::error::ApiError;
use crate::tiers::EventTiers;

/// The body of `POST /api/bookings`.
#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BookingRequest {
    pub event_id: Uuid,
    /// Quantity per tier code, e.g. `{"VIP": 1, "GA": 2}`.
    #[schema(value_type = std::collections::HashMap<String, i64>)]
    pub tiers: BTreeMap<String, i64>,
    pub buyer_email: String,
}

/// A validated order: known tiers, positive quantities within the token's limit, a plausible
/// email.
/// A booking's status: the `status` column's text in Postgres, the same words on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum BookingStatus {
    Confirmed,
    Cancelled,
}

impl TryFrom<String> for BookingStatus {
    type Error = String;

    fn try_from(status: String) -> Result<Self, Self::Error> {
        match status.as_str() {
            "confirmed" => Ok(Self::Confirmed),
            "cancelled" => Ok(Self::Cancelled),
            other => Err(format!("unknown booking status {other:?}")),
        }
    }
}

#[derive(Debug, Clone)]
pub struct Order {
    pub event_id: Uuid,
    /// Tier code → quantity ≥ 1, in code order.
    pub quantities: Vec<(TierCode, u32)>,
    pub buyer_email: String,
    pub total_cents: i64,
}

impl Order {
    pub fn parse(
        request: BookingRequest,
        tiers: &EventTiers,
        token_max: u32,
    ) -> Result<Self, ApiError> {
        let email = request.buyer_email.trim().to_string();
        if !is_email(&email) {
            return Err(ApiError::invalid(
                "buyer_email is not a valid email address",
            ));
        }
        let mut quantities = Vec::new();
        let mut total: u64 = 0;
        let mut total_cents: i64 = 0;
        for (code, quantity) in &request.tiers {
            let Some(tier) = tiers.by_code(code) else {
                return Err(ApiError::invalid(format!("unknown tier {code:?}")));
            };
            if *quantity < 0 {
                return Err(ApiError::invalid(format!(
                    "quantity of {code:?} is negative"
                )));
            }
            if *quantity == 0 {
                continue;
            }
            let quantity = u32::try_from(*quantity)
                .map_err(|_| ApiError::invalid(format!("quantity of {code:?} is too large")))?;
            total += u64::from(quantity);
            total_cents =
                total_cents.saturating_add(tier.price_cents.saturating_mul(i64::from(quantity)));
            quantities.push((tier.code.clone(), quantity));
        }
        if total == 0 {
            return Err(ApiError::invalid("book at least one ticket"));
        }
        let limit = u64::from(token_max.min(tiers.max_per_booking));
        if total > limit {
            return Err(ApiError::invalid(format!(
                "at most {limit} tickets per booking"
            )));
        }
        Ok(Self {
            event_id: request.event_id,
            quantities,
            buyer_email: email,
            total_cents,
        })
    }

    /// What makes two requests the same for `Idempotency-Key`.
    pub fn fingerprint(&self) -> Vec<u8> {
        let mut hash = Sha256::new();
        hash.update(self.event_id.as_bytes());
        for (code, quantity) in &self.quantities {
            hash.update(code.as_bytes());
            hash.update(b"=");
            hash.update(quantity.to_be_bytes());
            hash.update(b";");
        }
        hash.update(self.buyer_email.to_lowercase().as_bytes());
        hash.finalize().to_vec()
    }
}

fn is_email(email: &str) -> bool {
    let Some((local, domain)) = email.rsplit_once('@') else {
        return false;
    };
    (3..=254).contains(&email.len())
        && !local.is_empty()
        && domain.contains('.')
        && !domain.starts_with('.')
        && !domain.ends_with('.')
        && !email.chars().any(|c| c.is_whitespace() || c.is_control())
}

/// A client's `Idempotency-Key`: 1-255 printable ASCII characters.
pub fn idempotency_key(raw: Option<&str>) -> Result<Option<String>, ApiError> {
    match raw {
        None => Ok(None),
        Some(key)
            if (1..=255).contains(&key.len()) && key.bytes().all(|b| b.is_ascii_graphic()) =>
        {
            Ok(Some(key.to_string()))
        }
        Some(_) => Err(ApiError::invalid(
            "Idempotency-Key must be 1-255 printable ASCII characters",
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ticketing::event::Tier;
    use ticketing::failure::Failure;

    fn tiers() -> EventTiers {
        EventTiers {
            tiers: vec![
                Tier {
                    id: Uuid::new_v4(),
                    event_id: Uuid::nil(),
                    code: TierCode::known("VIP"),
                    name: "VIP".into(),
                    capacity: 5,
                    price_cents: 10_000,
                },
                Tier {
                    id: Uuid::new_v4(),
                    event_id: Uuid::nil(),
                    code: TierCode::known("GA"),
                    name: "General admission".into(),
                    capacity: 10,
                    price_cents: 1_000,
                },
            ],
            max_per_booking: 8,
            on_sale_at: chrono::Utc::now(),
        }
    }

    fn request(tiers: &[(&str, i64)]) -> BookingRequest {
        BookingRequest {
            event_id: Uuid::nil(),
            tiers: tiers.iter().map(|(c, q)| (c.to_string(), *q)).collect(),
            buyer_email: "ada@example.com".into(),
        }
    }

    fn refusal(result: Result<Order, ApiError>) -> String {
        match result {
            Err(ApiError::Failure(Failure::Invalid(message))) => message,
            other => panic!("expected a 422, got {other:?}"),
        }
    }

    #[test]
    fn an_order_totals_its_price_and_skips_zero_quantities() {
        let order = Order::parse(
            request(&[("VIP", 1), ("GA", 2), ("FrontRow", 0)]),
            &tiers(),
            6,
        );
        assert!(order.is_err(), "unknown tiers are refused even at zero");
        let order = Order::parse(request(&[("VIP", 1), ("GA", 2)]), &tiers(), 6).unwrap();
        assert_eq!(order.total_cents, 12_000);
        assert_eq!(
            order.quantities,
            vec![(TierCode::known("GA"), 2), (TierCode::known("VIP"), 1)]
        );
    }

    #[test]
    fn bad_quantities_are_refused() {
        assert!(refusal(Order::parse(request(&[("VIP", -1)]), &tiers(), 6)).contains("negative"));
        assert!(refusal(Order::parse(request(&[("VIP", 0)]), &tiers(), 6)).contains("at least one"));
        assert!(refusal(Order::parse(request(&[("GA", 7)]), &tiers(), 6)).contains("at most 6"));
        assert!(
            refusal(Order::parse(request(&[("Balcony", 1)]), &tiers(), 6)).contains("unknown tier")
        );
    }

    #[test]
    fn emails_need_a_local_part_and_a_domain() {
        assert!(is_email("a@b.co"));
        assert!(!is_email("nobody"));
        assert!(!is_email("a@b"));
        assert!(!is_email("a b@c.de"));
    }

    #[test]
    fn the_fingerprint_ignores_zero_quantities_and_email_case() {
        let a = Order::parse(request(&[("VIP", 1)]), &tiers(), 6).unwrap();
        let mut with_zero = request(&[("VIP", 1), ("GA", 0)]);
        with_zero.buyer_email = "ADA@example.com".into();
        let b = Order::parse(with_zero, &tiers(), 6).unwrap();
        assert_eq!(a.fingerprint(), b.fingerprint());
        let c = Order::parse(request(&[("VIP", 2)]), &tiers(), 6).unwrap();
        assert_ne!(a.fingerprint(), c.fingerprint());
    }
}
