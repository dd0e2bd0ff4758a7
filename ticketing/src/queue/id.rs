//! Queue ids: the first four bytes carry the event's short id (so a poll finds its event without
//! a lookup table), the rest a keyed hash of the visitor, so a visitor gets the same id on every
//! join and nobody can guess another's.

use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;
use uuid::Uuid;

/// One visitor's entry in one event's line: the member of the waiting sorted set (raw 16 bytes),
/// the `sub` of its entry token, and `queue_id` on the wire.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, sqlx::Type, utoipa::ToSchema,
)]
#[serde(transparent)]
#[sqlx(transparent)]
#[schema(value_type = Uuid)]
pub struct QueueId(pub Uuid);

impl QueueId {
    /// The id `visitor_id` has in this event's line.
    pub fn for_visitor(
        secret: &[u8],
        event_short_id: i32,
        event_id: Uuid,
        visitor_id: &str,
    ) -> Self {
        let mut mac =
            Hmac::<Sha256>::new_from_slice(secret).expect("hmac takes keys of any length");
        mac.update(event_id.as_bytes());
        mac.update(visitor_id.as_bytes());
        let digest = mac.finalize().into_bytes();
        let mut bytes = [0u8; 16];
        bytes[..4].copy_from_slice(&event_short_id.to_be_bytes());
        bytes[4..].copy_from_slice(&digest[..12]);
        Self(uuid::Builder::from_custom_bytes(bytes).into_uuid())
    }

    /// The short id of the event whose line this id stands in.
    pub fn event_short_id(self) -> i32 {
        let bytes = self.0.as_bytes();
        i32::from_be_bytes([bytes[0], bytes[1], bytes[2], bytes[3]])
    }

    pub fn as_bytes(&self) -> &[u8; 16] {
        self.0.as_bytes()
    }
}

impl std::fmt::Display for QueueId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

impl std::str::FromStr for QueueId {
    type Err = uuid::Error;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        s.parse().map(Self)
    }
}

impl redis::ToRedisArgs for QueueId {
    fn write_redis_args<W: ?Sized + redis::RedisWrite>(&self, out: &mut W) {
        // Raw bytes: a member of the waiting set costs 16 bytes, not 36.
        out.write_arg(self.as_bytes())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_visitor_keeps_its_id_and_the_id_names_its_event() {
        let event = Uuid::new_v4();
        let a = QueueId::for_visitor(b"secret", 42, event, "alice");
        assert_eq!(a, QueueId::for_visitor(b"secret", 42, event, "alice"));
        assert_ne!(a, QueueId::for_visitor(b"secret", 42, event, "bob"));
        assert_ne!(a, QueueId::for_visitor(b"other", 42, event, "alice"));
        assert_eq!(a.event_short_id(), 42);
        assert_eq!(a.to_string().parse::<QueueId>().unwrap(), a);
    }
}
