//! The services' runtime, and when their allocator gives freed memory back to the system.
//!
//! The gateway and the booking service allocate with mimalloc (declared in each binary). mimalloc
//! keeps the pages a burst freed for the thread that allocated them, and a page freed by another
//! thread waits on that thread's list until it allocates again. So a wave of slow clients left the
//! gateway's memory at 2.5× its start for good: 4,000 connections held, then closed, 77 MiB
//! resident from 32 (`system-tests/tests/slow_clients.rs`); glibc's allocator kept as much.
//! Collecting when a worker thread goes idle brought it back to within 10 % of the start, but only
//! when the machine was quiet: under load it stayed 16-23 % above. The accept loop ran on the
//! main thread (`block_on`), which never parks as a worker does, so the connection tasks it
//! allocated were freed by the workers onto the main thread's pages and never collected. The
//! service now runs on a worker (`run`), and the main thread only waits for it.
//!
//! Even so loaded runs stayed up to 34 % above the start, of which up to 10 MiB were transparent huge
//! pages (`AnonHugePages` in smaps): mimalloc asks for them on its arenas, and the kernel's
//! khugepaged fills a 2 MiB range back in when a single 4 KiB page of it is in use, undoing what
//! a collection gave back, on its own schedule (hence only under load, when a wave is spread
//! over more time). The services turn them off for the process (`PR_SET_THP_DISABLE`): they hold
//! tens of MiB, where huge pages save little, and the memory a burst leaves must come back. With
//! them off, loaded runs came back within 2-8 %, and the start fell from 31 to 26 MiB.
#![allow(unsafe_code)]

use std::cell::Cell;
use std::time::{Duration, Instant};

/// At most one collection per worker thread in this time (`ALLOCATOR_COLLECT_MS`, 0 turns it
/// off): a busy worker parks thousands of times a second, and a forced collection walks every
/// page the thread owns.
const COLLECT_EVERY_MS: u64 = 1_000;

/// Runs `service` to its end on a multi-threaded runtime (as `#[tokio::main]` would) whose idle
/// workers give back what they freed. The service runs as a spawned task, not in `block_on`: the
/// main thread is no worker, so what it allocated would never be collected.
pub fn run<F>(service: F) -> anyhow::Result<()>
where
    F: std::future::Future<Output = anyhow::Result<()>> + Send + 'static,
{
    without_huge_pages();
    runtime()?.block_on(async move {
        match tokio::spawn(service).await {
            Ok(finished) => finished,
            Err(failed) if failed.is_panic() => std::panic::resume_unwind(failed.into_panic()),
            Err(cancelled) => Err(cancelled.into()),
        }
    })
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    let every_ms: u64 = crate::config::env_or("ALLOCATOR_COLLECT_MS", COLLECT_EVERY_MS)?;
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    builder.enable_all();
    if every_ms > 0 {
        let every = Duration::from_millis(every_ms);
        builder.on_thread_park(move || collect_when_idle(every));
    }
    Ok(builder.build()?)
}

/// Turns transparent huge pages off for this process, whatever the system's setting: the flag
/// is the process's own, so it holds for the arenas mimalloc mapped before `main` too.
fn without_huge_pages() {
    #[cfg(target_os = "linux")]
    {
        // SAFETY: `prctl(PR_SET_THP_DISABLE, 1, 0, 0, 0)` takes integers only and sets one flag
        // of this process; it cannot touch memory the program uses.
        let refused = unsafe { libc::prctl(libc::PR_SET_THP_DISABLE, 1, 0, 0, 0) } != 0;
        if refused {
            // Kernels before 3.15 lack it: memory after a burst comes back less, nothing else.
            eprintln!("transparent huge pages stay on: prctl(PR_SET_THP_DISABLE) was refused");
        }
    }
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
