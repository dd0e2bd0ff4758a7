//! HTTP handlers and their wire types, one module per resource.

pub mod admin;
pub mod catalog;
pub mod guards;
pub mod health;
pub mod live;
pub mod openapi;
pub mod queue;
pub mod queue_stream;
