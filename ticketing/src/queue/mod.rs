//! The waiting room in Redis, one step per module, in the order a buyer meets them:
//! `id` (who stands in line) → `place` (where: the lot drawn before the opening, arrival order
//! after it) → `entry` (join, poll, and coming back from a receipt after Redis lost the line) →
//! `admit` (the worker's bounded admission step) → `entry_token` (one signed token per
//! admission). `room` holds the settings and how they reach Redis, `receipt` the signed place
//! receipts, `stats` the live numbers, `wish` what a buyer in line wants and is told of the stock. Each Redis step is one Lua script in `lua/`.

pub mod admit;
pub mod entry;
pub mod entry_token;
pub mod id;
pub mod liveness;
pub mod place;
pub mod receipt;
pub mod room;
pub mod stats;
pub mod wish;

pub use admit::{admit, give_back_admission, AdmissionStep};
pub use entry::{due_to_leave, join, leave, poll, Leaving, Standing};
pub use entry_token::{
    deliver_entry_token, keep_entry_token, note_cadence, page_alive, DELIVERY_GRACE_MS,
    DELIVERY_WINDOW_MS, FRESH_AFTER_DELIVERY_MS, FRESH_UNDELIVERED_MS, PAGE_GONE_MS,
};
pub use id::QueueId;
pub use place::Place;
pub use receipt::{Receipt, ReceiptKeys};
pub use room::{
    sync_config, Adaptive, Generation, QueueMarks, RoomColumns, Sync, WaitingRoom, ROOM_COLUMNS,
};
pub use stats::{stats, QueueStats};
pub use wish::{set_wish, AdmittedAs, Line, TierLine, TierStock, Wish, WishSet};

/// How long without a poll before a waiting entry counts as gone: it is dropped when it reaches
/// the head after one to two windows of silence.
pub const ALIVE_WINDOW_S: u32 = 60;

/// The longest a live page waits between two polls (the gateway's longest `poll_after_ms` and its
/// jitter): after a Redis data loss, admission waits this long, so every live entry has polled
/// with its receipt and stands at its place again before anyone behind it is admitted.
pub const LONGEST_POLL_MS: u64 = 22_000;
