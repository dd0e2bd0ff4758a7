//! HTTP handlers and their wire types.

pub mod availability;
pub mod bookings;
pub mod health;
pub mod openapi;
