//! The services' runtime, and when their allocator gives freed memory back to the system.
//!
//! The gateway and the booking service allocate with mimalloc (declared in each binary). mimalloc
//! keeps the pages a burst freed for the thread that allocated them, and a page freed by another
//! thread waits on that thread's list until it allocates again. So a wave of slow clients left the
//! gateway's memory at 2.5× its start for good: 4,000 connections held, then closed, 77 MiB
//! resident from 32 (`system-tests/tests/slow_clients.rs`); glibc's allocator kept as much.
//! Collecting when a worker thread goes idle brought it back to within 10 % of the start.
#![allow(unsafe_code)]

use std::cell::Cell;
use std::time::{Duration, Instant};

/// At most one collection per worker thread in this time (`ALLOCATOR_COLLECT_MS`, 0 turns it
/// off): a busy worker parks thousands of times a second, and a forced collection walks every
/// page the thread owns.
const COLLECT_EVERY_MS: u64 = 1_000;

/// A multi-threaded runtime (as `#[tokio::main]` builds) whose idle workers give back what they
/// freed.
pub fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    let every_ms: u64 = crate::config::env_or("ALLOCATOR_COLLECT_MS", COLLECT_EVERY_MS)?;
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    builder.enable_all();
    if every_ms > 0 {
        let every = Duration::from_millis(every_ms);
        builder.on_thread_park(move || collect_when_idle(every));
    }
    Ok(builder.build()?)
}

thread_local! {
    static LAST_COLLECTED: Cell<Option<Instant>> = const { Cell::new(None) };
}

/// Runs as a worker parks (it has nothing to do): frees this thread's unused pages and returns
/// them to the system, unless it did within `every`.
fn collect_when_idle(every: Duration) {
    let now = Instant::now();
    let due = LAST_COLLECTED.with(|last| match last.get() {
        Some(at) if now.duration_since(at) < every => false,
        _ => {
            last.set(Some(now));
            true
        }
    });
    if due {
        // SAFETY: `mi_collect` takes no pointer and may be called from any thread at any time;
        // it only frees pages on which no allocation lives.
        unsafe { libmimalloc_sys::mi_collect(true) }
    }
}
