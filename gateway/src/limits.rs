//! Rate limits on the waiting room, each keyed by what it protects:
//!
//! - joins per visitor id (per event): a client-chosen id stays valid, but flooding one costs
//!   that id alone;
//! - polls per queue id: a refused poll belongs to the one entry that polled too often, never to
//!   a neighbour behind the same address, so a live buyer is never made to look abandoned;
//! - a generous ceiling per client address on each, since a whole crowd may share one NAT.
//!
//! Join limits are checked inside the join handler after the proof-of-work exchange, so a 428
//! charges nothing; poll limits run as a layer in front of the poll route. Memory is bounded:
//! keys idle long enough to be back at a full burst are forgotten every second, and a limiter
//! that still holds more than `LIMITER_MAX_KEYS` keys is emptied (`rate_limiter_resets_total`).

use std::collections::hash_map::RandomState;
use std::hash::BuildHasher;
use std::net::IpAddr;
use std::time::Duration;

use ticketing::failure::Failure;
use uuid::Uuid;

use crate::client_addr::ClientAddr;
use crate::config::LimitSettings;
use crate::error::ApiError;
use crate::keyed::Keyed;

/// The waiting room's limits.
pub struct Limits {
    join_per_visitor: Keyed<u64>,
    join_per_address: Keyed<IpAddr>,
    poll_per_queue_id: Keyed<Uuid>,
    poll_per_address: Keyed<IpAddr>,
    admin_per_address: Keyed<IpAddr>,
    // Visitor ids are up to 64 bytes each: the limiter keeps a 64-bit hash of (event, visitor)
    // instead, under a key chosen at start so nobody can aim collisions at someone else's id.
    hasher: RandomState,
    max_keys: usize,
}

impl Limits {
    pub fn new(settings: &LimitSettings) -> Self {
        Self {
            join_per_visitor: Keyed::of("join_per_visitor", settings.join_per_visitor),
            join_per_address: Keyed::of("join_per_address", settings.join_per_address),
            poll_per_queue_id: Keyed::of("poll_per_queue_id", settings.poll_per_queue_id),
            poll_per_address: Keyed::of("poll_per_address", settings.poll_per_address),
            admin_per_address: Keyed::of("admin_per_address", settings.admin_per_address),
            hasher: RandomState::new(),
            max_keys: settings.max_keys,
        }
    }

    /// A join by `visitor_id` (None when the gateway made the id up: nothing to count) from
    /// `client`. The address is counted first: a key per visitor id is kept only for requests
    /// their address was allowed, so made-up ids from one address cannot fill the limiter to
    /// its cap (which would empty it, turning per-visitor limits off for everyone).
    pub fn join(
        &self,
        event_id: Uuid,
        visitor_id: Option<&str>,
        client: ClientAddr,
    ) -> Result<(), ApiError> {
        self.join_per_address
            .check(&client.limit_key())
            .map_err(refused)?;
        if let Some(visitor_id) = visitor_id {
            let key = self.hasher.hash_one((event_id, visitor_id));
            self.join_per_visitor.check(&key).map_err(refused)?;
        }
        Ok(())
    }

    /// A poll of `queue_id` (None when the path holds no queue id: the handler answers 404, the
    /// address still pays) from `client`; the address first, as for [`Limits::join`].
    pub fn poll(&self, queue_id: Option<Uuid>, client: ClientAddr) -> Result<(), ApiError> {
        self.poll_per_address
            .check(&client.limit_key())
            .map_err(refused)?;
        if let Some(queue_id) = queue_id {
            self.poll_per_queue_id.check(&queue_id).map_err(refused)?;
        }
        Ok(())
    }

    /// An admin API request from `client`, before its token is checked.
    pub fn admin(&self, client: ClientAddr) -> Result<(), ApiError> {
        self.admin_per_address
            .check(&client.limit_key())
            .map_err(refused)
    }

    pub fn sweep(&self) {
        self.join_per_visitor.sweep(self.max_keys);
        self.join_per_address.sweep(self.max_keys);
        self.poll_per_queue_id.sweep(self.max_keys);
        self.poll_per_address.sweep(self.max_keys);
        self.admin_per_address.sweep(self.max_keys);
    }
}

fn refused(wait: Duration) -> ApiError {
    ApiError::Failure(Failure::RateLimited { retry_after: wait })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Rate;

    fn settings() -> LimitSettings {
        LimitSettings {
            join_per_visitor: Rate::new(1, 2),
            join_per_address: Rate::new(100, 5),
            poll_per_queue_id: Rate::new(1, 2),
            poll_per_address: Rate::new(100, 5),
            admin_per_address: Rate::new(1, 2),
            max_keys: 1_000,
        }
    }

    fn client(text: &str) -> ClientAddr {
        ClientAddr(text.parse().unwrap())
    }

    #[test]
    fn one_visitor_id_is_limited_without_touching_its_neighbours() {
        let limits = Limits::new(&settings());
        let event = Uuid::new_v4();
        let home = client("198.51.100.1");
        assert!(limits.join(event, Some("flood"), home).is_ok());
        assert!(limits.join(event, Some("flood"), home).is_ok());
        let Err(ApiError::Failure(Failure::RateLimited { retry_after })) =
            limits.join(event, Some("flood"), home)
        else {
            panic!("the third join of one id at once is refused");
        };
        assert!(retry_after > Duration::ZERO && retry_after <= Duration::from_secs(1));
        assert!(limits.join(event, Some("neighbour"), home).is_ok());
        assert!(
            limits.join(Uuid::new_v4(), Some("flood"), home).is_ok(),
            "the same id for another event is another key"
        );
    }

    #[test]
    fn an_address_has_a_ceiling_over_all_its_visitors() {
        let limits = Limits::new(&settings());
        let event = Uuid::new_v4();
        let nat = client("198.51.100.2");
        for i in 0..5 {
            assert!(limits.join(event, Some(&format!("v{i}")), nat).is_ok());
        }
        assert!(limits.join(event, Some("v5"), nat).is_err());
        assert!(limits
            .join(event, Some("v5"), client("198.51.100.3"))
            .is_ok());
    }

    #[test]
    fn ids_an_address_was_refused_for_leave_no_keys_behind() {
        let limits = Limits::new(&LimitSettings {
            join_per_address: Rate::new(1, 5),
            poll_per_address: Rate::new(1, 5),
            ..settings()
        });
        let bot = client("203.0.113.9");
        let event = Uuid::new_v4();
        for i in 0..1_000 {
            let _ = limits.poll(Some(Uuid::new_v4()), bot);
            let _ = limits.join(event, Some(&format!("made-up-{i}")), bot);
        }
        // The address's burst of 5 each (and a sixth if a second passed): only the requests
        // the address was allowed made a key.
        assert!((5..=6).contains(&limits.poll_per_queue_id.len()));
        assert!((5..=6).contains(&limits.join_per_visitor.len()));
    }

    #[test]
    fn the_admin_api_is_limited_per_address() {
        let limits = Limits::new(&settings());
        let guesser = client("203.0.113.10");
        assert!(limits.admin(guesser).is_ok());
        assert!(limits.admin(guesser).is_ok());
        assert!(limits.admin(guesser).is_err());
        assert!(limits.admin(client("203.0.113.11")).is_ok());
    }

    #[test]
    fn polls_are_limited_per_queue_id() {
        let limits = Limits::new(&settings());
        let nat = client("198.51.100.4");
        let (busy, quiet) = (Uuid::new_v4(), Uuid::new_v4());
        assert!(limits.poll(Some(busy), nat).is_ok());
        assert!(limits.poll(Some(busy), nat).is_ok());
        assert!(limits.poll(Some(busy), nat).is_err());
        assert!(
            limits.poll(Some(quiet), nat).is_ok(),
            "a neighbour still polls"
        );
    }

    #[test]
    fn a_limiter_over_its_key_cap_is_emptied() {
        let keyed: Keyed<u32> = Keyed::new("test", 1, 1);
        for key in 0..50 {
            assert!(keyed.check(&key).is_ok());
        }
        keyed.sweep(100);
        assert_eq!(keyed.len(), 50, "keys still limited are kept under the cap");
        keyed.sweep(10);
        assert!(keyed.is_empty());
    }
}
