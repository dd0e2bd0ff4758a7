//! Events this process found sold out a moment ago. When an event sells out, thousands of buyers
//! keep pressing "book"; remembering the answer briefly lets this process refuse them without a
//! Redis call each. The memory is short because tickets can come back (a cancellation through
//! another instance, an expired hold), and a buyer should see them within `SOLD_OUT_MEMORY_MS`.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use ticketing::inventory::Shortfall;
use ticketing::tier::TierCode;
use uuid::Uuid;

#[derive(Clone)]
pub struct SoldOutMemory {
    until: Arc<RwLock<HashMap<Uuid, Instant>>>,
    span: Duration,
}

impl SoldOutMemory {
    /// Remembers a sold-out event for `span`; zero turns the memory off.
    pub fn new(span: Duration) -> Self {
        Self {
            until: Arc::default(),
            span,
        }
    }

    pub fn remember(&self, event_id: Uuid) {
        if self.span.is_zero() {
            return;
        }
        let until = Instant::now() + self.span;
        self.until
            .write()
            .expect("sold-out memory lock")
            .insert(event_id, until);
    }

    /// Tickets came back through this process: the next booking must reach Redis.
    pub fn forget(&self, event_id: Uuid) {
        let remembered = self
            .until
            .read()
            .expect("sold-out memory lock")
            .contains_key(&event_id);
        if remembered {
            self.until
                .write()
                .expect("sold-out memory lock")
                .remove(&event_id);
        }
    }

    /// What the reservation script would answer for `quantities` (each ≥ 1) while the event is
    /// remembered sold out: every requested tier short, none available.
    pub fn shortfall(
        &self,
        event_id: Uuid,
        quantities: &[(TierCode, u32)],
    ) -> Option<Vec<Shortfall>> {
        let until = *self
            .until
            .read()
            .expect("sold-out memory lock")
            .get(&event_id)?;
        if Instant::now() >= until {
            return None;
        }
        Some(
            quantities
                .iter()
                .map(|(tier, requested)| Shortfall {
                    tier: tier.clone(),
                    requested: i64::from(*requested),
                    available: 0,
                })
                .collect(),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn order() -> Vec<(TierCode, u32)> {
        vec![(TierCode::known("VIP"), 2), (TierCode::known("GA"), 1)]
    }

    #[test]
    fn answers_like_the_script_while_remembered() {
        let memory = SoldOutMemory::new(Duration::from_secs(60));
        let event = Uuid::new_v4();
        assert_eq!(memory.shortfall(event, &order()), None);
        memory.remember(event);
        let shortfall = memory.shortfall(event, &order()).expect("remembered");
        assert_eq!(
            shortfall,
            vec![
                Shortfall {
                    tier: TierCode::known("VIP"),
                    requested: 2,
                    available: 0
                },
                Shortfall {
                    tier: TierCode::known("GA"),
                    requested: 1,
                    available: 0
                },
            ]
        );
        assert_eq!(
            memory.shortfall(Uuid::new_v4(), &order()),
            None,
            "another event"
        );
        memory.forget(event);
        assert_eq!(memory.shortfall(event, &order()), None, "forgotten");
    }

    #[test]
    fn forgets_on_its_own_and_can_be_off() {
        let brief = SoldOutMemory::new(Duration::from_millis(1));
        let event = Uuid::new_v4();
        brief.remember(event);
        std::thread::sleep(Duration::from_millis(5));
        assert_eq!(brief.shortfall(event, &order()), None);

        let off = SoldOutMemory::new(Duration::ZERO);
        off.remember(event);
        assert_eq!(off.shortfall(event, &order()), None);
    }
}
