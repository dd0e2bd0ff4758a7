//! What the gateway, the booking service and the queue-worker share: settings, telemetry, the
//! Redis key layout with the Lua scripts that guard it, entry tokens and the error envelope.

pub mod activity;
pub mod allocator;
pub mod config;
pub mod db;
pub mod detached;
pub mod envelope;
pub mod event;
pub mod failure;
pub mod http;
pub mod inventory;
pub mod keys;
pub mod known_events;
pub mod live;
mod lua_reply;
pub mod lua_script;
pub mod queue;
pub mod rebuild;
pub mod redis_client;
mod shared_state;
pub mod signatures;
pub mod telemetry;
pub mod tier;
pub mod token;
