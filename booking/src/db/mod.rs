//! Queries of the booking service; each takes the connection it runs on, so the handler owns
//! the transaction.

pub mod bookings;
