//! What will happen next at this pace, from the live samples (`ticketing::live`): when the line
//! drains, when each tier sells out, and how many in line will likely go without. Rates are
//! measured over the last minute of samples (or what there is of it, from 10 s on).

use serde::Serialize;
use ticketing::live::Sample;

/// Less history than this gives no rate (a second or two of samples is noise).
const SHORTEST_SPAN_MS: i64 = 10_000;
/// Rates look back this far.
const RATE_SPAN_MS: i64 = 60_000;
/// The line's drain also looks at this recent span: a line stalled by `max_active` (everyone
/// admitted still booking) or a pause shows at once, not after a minute of averages.
const RECENT_SPAN_MS: i64 = 15_000;
/// Tickets a booking takes before the first booking tells.
const DEFAULT_TICKETS_PER_BOOKING: f64 = 2.0;
/// Admissions before the share of admitted buyers who book is trusted over "all of them".
const FEWEST_ADMISSIONS: i64 = 20;

#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct Projections {
    /// Measured over the last minute; none with less than 10 s of samples.
    pub admissions_per_minute: Option<f64>,
    pub bookings_per_minute: Option<f64>,
    /// When the line drains at the measured admission rate (the last minute's, or the last
    /// 15 s's when lower: a stall shows at once): 0 when nobody waits, none when nobody is being
    /// admitted.
    pub queue_drains_in_s: Option<u64>,
    pub tiers: Vec<TierProjection>,
    /// Tickets per booking so far (2 before the first booking).
    pub tickets_per_booking: f64,
    /// Of those admitted, the share who booked (1 until enough were admitted to tell).
    pub booking_share: f64,
    /// People in line who will likely not get tickets: the line beyond what the tickets left
    /// serve, after the buyers admitted now take theirs.
    pub likely_unserved: u64,
    /// Of the buyers admitted in the last minute (over the whole sale while fewer than 20 were),
    /// the share refused for stock; none before the first admission.
    pub refused_share: Option<f64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct TierProjection {
    pub code: String,
    pub sold_per_minute: Option<f64>,
    /// 0 when nothing is left nor held; none when it is not selling.
    pub sells_out_in_s: Option<u64>,
    /// Of the buyers admitted in the last minute (over the whole sale while fewer than 20 were),
    /// the share who booked this tier; none before the first admission.
    pub conversion: Option<f64>,
}

/// Projections from samples, oldest first; `None` without any.
pub fn project(samples: &[Sample]) -> Option<Projections> {
    let latest = samples.last()?;
    let since = |span_ms: i64| {
        samples
            .iter()
            .find(|s| s.t_ms >= latest.t_ms - span_ms)
            .filter(|s| latest.t_ms - s.t_ms >= SHORTEST_SPAN_MS)
    };
    let rate = |base: Option<&Sample>, of: &dyn Fn(&Sample) -> i64| {
        base.map(|b| {
            let minutes = (latest.t_ms - b.t_ms) as f64 / 60_000.0;
            (of(latest) - of(b)).max(0) as f64 / minutes
        })
    };
    let base = since(RATE_SPAN_MS);
    let per_minute = |of: &dyn Fn(&Sample) -> i64| rate(base, of);
    // A share of admissions: over the last minute when it admitted enough to tell, else over
    // the whole sale.
    let recent_share = |of: &dyn Fn(&Sample) -> i64| {
        let share = match base {
            Some(b) if latest.admitted_total - b.admitted_total >= FEWEST_ADMISSIONS => {
                (of(latest) - of(b)).max(0) as f64
                    / (latest.admitted_total - b.admitted_total) as f64
            }
            _ if latest.admitted_total > 0 => of(latest) as f64 / latest.admitted_total as f64,
            _ => return None,
        };
        Some(share.min(1.0))
    };
    let admissions_per_minute = per_minute(&|s| s.admitted_total);
    let bookings_per_minute = per_minute(&|s| s.booked_total);
    let draining = match (
        admissions_per_minute,
        rate(since(RECENT_SPAN_MS), &|s| s.admitted_total),
    ) {
        (Some(minute), Some(recent)) => Some(minute.min(recent)),
        (minute, _) => minute,
    };
    let queue_drains_in_s = match (latest.waiting, draining) {
        (0, _) => Some(0),
        (waiting, Some(rate)) if rate > 0.0 => Some((waiting as f64 / rate * 60.0).ceil() as u64),
        _ => None,
    };
    let tiers = latest
        .tiers
        .iter()
        .map(|tier| {
            let sold_per_minute = per_minute(&|s| {
                s.tiers
                    .iter()
                    .find(|t| t.code == tier.code)
                    .map_or(0, |t| t.sold)
            });
            let sells_out_in_s = if tier.available + tier.held == 0 {
                Some(0)
            } else {
                sold_per_minute
                    .filter(|rate| *rate > 0.0)
                    .map(|rate| (tier.available as f64 / rate * 60.0).ceil() as u64)
            };
            let conversion = recent_share(&|s| {
                s.tiers
                    .iter()
                    .find(|t| t.code == tier.code)
                    .map_or(0, |t| t.buyers_total)
            });
            TierProjection {
                code: tier.code.clone(),
                sold_per_minute,
                sells_out_in_s,
                conversion,
            }
        })
        .collect();
    let tickets_per_booking = if latest.booked_total > 0 && latest.tickets_sold > 0 {
        latest.tickets_sold as f64 / latest.booked_total as f64
    } else {
        DEFAULT_TICKETS_PER_BOOKING
    };
    let booking_share = if latest.admitted_total >= FEWEST_ADMISSIONS && latest.booked_total > 0 {
        (latest.booked_total as f64 / latest.admitted_total as f64).min(1.0)
    } else {
        1.0
    };
    let tickets_left: i64 = latest.tiers.iter().map(|t| t.available + t.held).sum();
    // Bookings the stock still allows; the admitted buyers take theirs first.
    let bookings_left = tickets_left as f64 / tickets_per_booking;
    let for_the_line = (bookings_left - latest.active as f64 * booking_share).max(0.0);
    let served_from_line = for_the_line / booking_share;
    let likely_unserved = (latest.waiting as f64 - served_from_line).max(0.0).round() as u64;
    Some(Projections {
        admissions_per_minute,
        bookings_per_minute,
        queue_drains_in_s,
        tiers,
        tickets_per_booking,
        booking_share,
        likely_unserved,
        refused_share: recent_share(&|s| s.refused_total),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use ticketing::live::TierSample;

    fn sample(t_s: i64, waiting: i64, admitted: i64, booked: i64, ga: (i64, i64, i64)) -> Sample {
        Sample {
            id: format!("{}-0", t_s * 1000),
            t_ms: t_s * 1000,
            waiting,
            active: 0,
            admitted_total: admitted,
            booked_total: booked,
            refused_total: 0,
            stall_s: 0,
            stalled_total_s: 0,
            tickets_sold: ga.2,
            admission_per_minute: 600,
            paused: false,
            enabled: true,
            booking_p95_ms: None,
            tiers: vec![TierSample {
                code: "GA".into(),
                available: ga.0,
                held: ga.1,
                sold: ga.2,
                buyers_total: booked,
            }],
        }
    }

    #[test]
    fn a_steady_sale_projects_from_the_last_minute() {
        // A minute ago: 1,000 waiting, nothing sold. Now: 400 admitted, 300 booked with 600
        // tickets, 800 waiting, 400 GA left.
        let samples = [
            sample(0, 1_000, 0, 0, (1_000, 0, 0)),
            sample(30, 900, 200, 150, (700, 0, 300)),
            sample(60, 800, 400, 300, (400, 0, 600)),
        ];
        let p = project(&samples).expect("projections");
        assert_eq!(p.admissions_per_minute, Some(400.0));
        assert_eq!(p.bookings_per_minute, Some(300.0));
        assert_eq!(p.queue_drains_in_s, Some(120));
        assert_eq!(p.tiers[0].sold_per_minute, Some(600.0));
        assert_eq!(p.tiers[0].sells_out_in_s, Some(40));
        assert_eq!(p.tickets_per_booking, 2.0);
        assert_eq!(p.booking_share, 0.75);
        // Every booking took GA: three in four admitted in the minute booked it; none refused.
        assert_eq!(p.tiers[0].conversion, Some(0.75));
        assert_eq!(p.refused_share, Some(0.0));
        // 400 tickets = 200 bookings = 267 people at a 75 % share; 800 wait.
        assert_eq!(p.likely_unserved, 533);
    }

    #[test]
    fn a_line_that_stopped_moving_does_not_drain_on_the_last_minute_s_average() {
        // Admissions went fast for 45 s, then stopped (max_active reached, or paused).
        let samples = [
            sample(0, 100, 0, 0, (100, 0, 0)),
            sample(45, 40, 60, 0, (100, 0, 0)),
            sample(60, 40, 60, 0, (100, 0, 0)),
        ];
        let p = project(&samples).expect("projections");
        assert_eq!(p.admissions_per_minute, Some(60.0));
        assert_eq!(p.queue_drains_in_s, None, "{p:?}");
    }

    #[test]
    fn too_little_history_or_no_movement_says_nothing_rather_than_guess() {
        let short = [
            sample(0, 50, 0, 0, (10, 0, 0)),
            sample(5, 50, 5, 0, (10, 0, 0)),
        ];
        let p = project(&short).expect("projections");
        assert_eq!(p.admissions_per_minute, None);
        assert_eq!(p.queue_drains_in_s, None);
        assert_eq!(p.tiers[0].sells_out_in_s, None);
        // 10 tickets at 2 a booking serve 5 of the 50.
        assert_eq!(p.likely_unserved, 45);
        let sold_out = [
            sample(0, 0, 10, 10, (0, 0, 20)),
            sample(20, 0, 10, 10, (0, 0, 20)),
        ];
        let p = project(&sold_out).expect("projections");
        assert_eq!(p.queue_drains_in_s, Some(0));
        assert_eq!(p.tiers[0].sells_out_in_s, Some(0));
        assert_eq!(p.likely_unserved, 0);
        assert_eq!(project(&[]), None);
    }

    #[test]
    fn conversion_and_refusals_count_the_last_minute_or_the_whole_sale_while_few_were_admitted() {
        // Five admitted in all, two booked GA, one refused: too few in the minute, so the sale.
        let mut early = sample(30, 20, 5, 2, (90, 0, 4));
        early.refused_total = 1;
        let p = project(&[sample(0, 25, 0, 0, (94, 0, 0)), early]).expect("projections");
        assert_eq!(p.tiers[0].conversion, Some(0.4));
        assert_eq!(p.refused_share, Some(0.2));
        // A minute that admitted 100, of whom 10 booked and 60 were refused (the tier ran short).
        let mut before = sample(0, 500, 100, 50, (100, 0, 100));
        before.refused_total = 10;
        let mut now = sample(60, 400, 200, 60, (80, 0, 120));
        now.refused_total = 70;
        let p = project(&[before, now]).expect("projections");
        assert_eq!(p.tiers[0].conversion, Some(0.1));
        assert_eq!(p.refused_share, Some(0.6));
        // Nobody admitted yet: nothing to tell.
        let p = project(&[sample(0, 5, 0, 0, (10, 0, 0))]).expect("projections");
        assert_eq!((p.tiers[0].conversion, p.refused_share), (None, None));
    }
}
