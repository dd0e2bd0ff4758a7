//! Queries of the gateway, one module per table group; each takes the executor it runs on.

pub mod events;
