//! The worker's jobs; each is safe to run in several processes at once and to run twice.

pub mod admission;
pub mod dormancy;
pub mod holds;
pub mod reconcile;
