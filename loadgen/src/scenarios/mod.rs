//! The load scenarios.

pub mod baseline;
pub mod bookings;
pub mod onsale;
pub mod opening;
pub mod proof_joins;
pub mod queue_storm;
pub mod rehearsal;
pub mod slowed;
pub mod stock_sale;
pub mod streams;
