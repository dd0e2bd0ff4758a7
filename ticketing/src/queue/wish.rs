//! What a waiting buyer wants: tiers and quantities chosen in line (`lua/queue_wish.lua`), and
//! what the line tells them of each tier's stock. Admission counts wishes against the stock
//! (`lua/admit.lua`); with hold on admission it reserves them.

use std::sync::LazyLock;

use redis::{RedisResult, Script, Value};
use uuid::Uuid;

use super::QueueId;
use crate::inventory::Shortfall;
use crate::keys::EventKeys;
use crate::lua_reply::{array, int, malformed, text};
use crate::redis_client::RedisClient;
use crate::tier::TierCode;

static WISH: LazyLock<Script> = crate::lua_script!("queue_wish.lua");

/// Tiers and quantities (each ≥ 1), in the order given; the wire form in Redis is
/// `GA=2;VIP=1`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Wish(pub Vec<(TierCode, u32)>);

impl Wish {
    /// Reads the Redis form; malformed parts (never written by this system) are skipped.
    pub fn parse(text: &str) -> Self {
        Self::parse_with(text, '=')
    }

    fn parse_with(text: &str, between: char) -> Self {
        Self(
            text.split(';')
                .filter_map(|part| {
                    let (code, quantity) = part.split_once(between)?;
                    Some((
                        TierCode::parse(code)?,
                        quantity.parse().ok().filter(|q| *q > 0)?,
                    ))
                })
                .collect(),
        )
    }

    pub fn encode(&self) -> String {
        self.0
            .iter()
            .map(|(code, quantity)| format!("{code}={quantity}"))
            .collect::<Vec<_>>()
            .join(";")
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn total(&self) -> u32 {
        self.0.iter().map(|(_, quantity)| quantity).sum()
    }

    pub fn quantity(&self, code: &str) -> Option<u32> {
        self.0.iter().find(|(c, _)| c == code).map(|(_, q)| *q)
    }
}

/// One tier as a buyer in line sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TierLine {
    pub code: TierCode,
    /// On sale now.
    pub available: i64,
    /// Reserved by buyers now: they may come back.
    pub held: i64,
    /// People ahead whose wish includes this tier; None for a tier not in the buyer's wish, and
    /// before the opening (the order is not told until then).
    pub wanted_ahead: Option<u64>,
}

/// What the entry script tells of a buyer in line beside the place: the wish, and per tier of
/// the event (in order) how many people ahead wish for it (None for a tier not in the wish, and
/// before the opening).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Line {
    pub wish: Option<Wish>,
    pub wanted_ahead: Vec<Option<u64>>,
}

impl Line {
    pub(crate) fn from_reply(wish: Option<&Value>, ahead: Option<&Value>) -> Self {
        let wish = wish
            .and_then(text)
            .map(|t| Wish::parse(&t))
            .filter(|w| !w.is_empty());
        let wanted_ahead = ahead
            .map(array)
            .unwrap_or_default()
            .iter()
            .map(|n| int(n).and_then(|n| u64::try_from(n).ok()))
            .collect();
        Self { wish, wanted_ahead }
    }

    /// Each tier as this buyer sees it, given the event's stock (in the event's tier order).
    pub fn tiers(&self, stock: &[TierStock]) -> Vec<TierLine> {
        stock
            .iter()
            .enumerate()
            .map(|(i, s)| TierLine {
                code: s.code.clone(),
                available: s.available,
                held: s.held,
                wanted_ahead: self.wanted_ahead.get(i).copied().flatten(),
            })
            .collect()
    }
}

/// One tier's stock now: the event's, the same for every buyer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TierStock {
    pub code: TierCode,
    pub available: i64,
    pub held: i64,
}

/// The stock of `codes` (the event's tiers, in order): one `HMGET`. A gateway reads it apart
/// from the polls, which all tell the same numbers.
pub async fn stock(
    redis: &RedisClient,
    event_id: Uuid,
    codes: &[TierCode],
) -> RedisResult<Vec<TierStock>> {
    if codes.is_empty() {
        return Ok(Vec::new());
    }
    let mut read = redis::cmd("HMGET");
    read.arg(EventKeys::new(event_id).inventory());
    for code in codes {
        read.arg(format!("{code}:avail"))
            .arg(format!("{code}:held"));
    }
    let values: Vec<Option<i64>> = read.query_async(&mut redis.clone()).await?;
    Ok(codes
        .iter()
        .zip(values.chunks(2))
        .map(|(code, v)| TierStock {
            code: code.clone(),
            available: v.first().copied().flatten().unwrap_or(0),
            held: v.get(1).copied().flatten().unwrap_or(0),
        })
        .collect())
}

/// The tiers of `wish` that cannot be met at all (less left, held included, than wished): such a
/// buyer keeps the place but is not admitted until the wish changes.
pub fn shortfall(wish: Option<&Wish>, tiers: &[TierLine]) -> Vec<Shortfall> {
    let Some(wish) = wish else {
        return Vec::new();
    };
    wish.0
        .iter()
        .filter_map(|(code, quantity)| {
            let left = tiers
                .iter()
                .find(|t| t.code == *code)
                .map_or(0, |t| t.available + t.held);
            (left < i64::from(*quantity)).then(|| Shortfall {
                tier: code.clone(),
                requested: i64::from(*quantity),
                available: left,
            })
        })
        .collect()
}

/// Nothing is on sale now, but some tickets are held and may come back.
pub fn held_only(tiers: &[TierLine]) -> bool {
    !tiers.is_empty() && tiers.iter().all(|t| t.available == 0) && tiers.iter().any(|t| t.held > 0)
}

/// What admission made of a buyer's wish.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdmittedAs {
    /// The wish the buyer was admitted with, if any.
    pub wish: Option<Wish>,
    /// Its tickets are reserved for the buyer (hold on admission): booking it cannot fall short.
    pub held: bool,
}

impl AdmittedAs {
    /// Reads the `admw` entry: `h|GA:2` (held), `w|GA=200` (a wish, in hundredths), `a|…` (no
    /// wish, counted at the sale's average), either of the last two marked `~`, `^` or `!` after
    /// the kind (`w~|…`) once its demand is stale (`lua/lib/demand.lua`), or empty.
    pub(crate) fn parse(entry: &str) -> Option<Self> {
        let (kind, rest) = entry.split_once('|')?;
        Some(match kind.trim_end_matches(['~', '^', '!']) {
            "h" => Self {
                wish: Some(Wish::parse_with(rest, ':')),
                held: true,
            },
            "w" => Self {
                wish: Some(Wish(
                    Wish::parse(rest)
                        .0
                        .into_iter()
                        .map(|(code, hundredths)| (code, hundredths / 100))
                        .collect(),
                )),
                held: false,
            },
            _ => Self {
                wish: None,
                held: false,
            },
        })
    }
}

/// How setting a wish went.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WishSet {
    Set,
    NotFound,
    /// Admitted already: the wish no longer matters (the booking form takes any tiers).
    NotWaiting,
    /// These tiers have less left, held included, than wished: nothing changed.
    Short(Vec<Shortfall>),
}

/// Sets the wish of an entry in line (an empty wish clears it). `codes` are every tier of the
/// event; the caller checked the wish names only those, with quantities the event allows.
pub async fn set_wish(
    redis: &RedisClient,
    event_id: Uuid,
    queue_id: QueueId,
    wish: &Wish,
    codes: &[TierCode],
) -> RedisResult<WishSet> {
    let keys = EventKeys::new(event_id);
    let mut invocation = WISH.prepare_invoke();
    invocation
        .key(keys.waiting())
        .key(keys.parked())
        .key(keys.admitted())
        .key(keys.wishes())
        .key(keys.inventory())
        .key(keys.dormant())
        .key(keys.queue_config())
        .arg(queue_id)
        .arg(wish.encode());
    for code in codes {
        invocation.key(keys.wanting(code)).arg(code);
    }
    let reply: Value = invocation.invoke_async(&mut redis.clone()).await?;
    let items = array(&reply);
    let tag = items
        .first()
        .and_then(text)
        .ok_or_else(|| malformed("queue_wish"))?;
    Ok(match tag.as_str() {
        "ok" => WishSet::Set,
        "not_found" => WishSet::NotFound,
        "not_waiting" => WishSet::NotWaiting,
        "short" => WishSet::Short(
            items[1..]
                .chunks(3)
                .filter_map(|c| {
                    Some(Shortfall {
                        tier: TierCode::parse(&text(c.first()?)?)?,
                        requested: int(c.get(1)?)?,
                        available: int(c.get(2)?)?,
                    })
                })
                .collect(),
        ),
        _ => return Err(malformed("queue_wish")),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_wish_round_trips_through_its_redis_form() {
        let wish = Wish(vec![
            (TierCode::known("GA"), 2),
            (TierCode::known("VIP"), 1),
        ]);
        assert_eq!(wish.encode(), "GA=2;VIP=1");
        assert_eq!(Wish::parse("GA=2;VIP=1"), wish);
        assert_eq!(wish.total(), 3);
        assert_eq!(Wish::parse(""), Wish::default());
        assert_eq!(
            Wish::parse("GA=0;VIP=x;FR=1"),
            Wish(vec![(TierCode::known("FR"), 1)])
        );
    }

    #[test]
    fn admission_records_read_back_as_the_wish() {
        let held = AdmittedAs::parse("h|GA:2;VIP:1").unwrap();
        assert!(held.held);
        assert_eq!(held.wish.unwrap().encode(), "GA=2;VIP=1");
        let counted = AdmittedAs::parse("w|GA=200").unwrap();
        assert!(!counted.held);
        assert_eq!(counted.wish.unwrap().encode(), "GA=2");
        assert_eq!(AdmittedAs::parse("a|GA=150").unwrap().wish, None);
        let stale = AdmittedAs::parse("w~|GA=200").unwrap();
        assert_eq!(stale.wish.unwrap().encode(), "GA=2");
        assert_eq!(AdmittedAs::parse("a~|GA=150").unwrap().wish, None);
        let gone = AdmittedAs::parse("w!|GA=100").unwrap();
        assert_eq!(gone.wish.unwrap().encode(), "GA=1");
        assert_eq!(AdmittedAs::parse(""), None);
    }

    #[test]
    fn a_shortfall_counts_held_tickets_as_possibly_coming_back() {
        let line = Line {
            wish: Some(Wish(vec![
                (TierCode::known("GA"), 2),
                (TierCode::known("VIP"), 1),
            ])),
            wanted_ahead: vec![Some(3), None],
        };
        let stock = |code: &str, held| TierStock {
            code: TierCode::known(code),
            available: 0,
            held,
        };
        let tiers = line.tiers(&[stock("GA", 1), stock("VIP", 1)]);
        assert_eq!(tiers[0].wanted_ahead, Some(3));
        assert_eq!(tiers[1].wanted_ahead, None);
        assert_eq!(
            shortfall(line.wish.as_ref(), &tiers),
            vec![Shortfall {
                tier: TierCode::known("GA"),
                requested: 2,
                available: 1
            }]
        );
        assert!(held_only(&tiers));
    }
}
