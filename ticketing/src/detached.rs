//! Work that must finish even when the request that asked for it goes away.
//!
//! A client that disconnects, or the request timeout, drops the handler's future at whatever
//! `.await` it was in. Dropped in the middle of a transaction step (sqlx's `BEGIN` is not
//! cancel-safe on Postgres: launchbadge/sqlx#4393), a pooled connection goes back inside a
//! transaction; dropped between Redis and Postgres, a hold or an epoch is left half-made. So such
//! work runs in a task of its own, which no dropped request can cut, and the handler only awaits
//! its result.

use std::future::Future;

/// Runs `work` to completion in its own task and returns its result. If the caller is dropped,
/// the work still finishes; its result is then dropped.
pub async fn finish<F, T, E>(work: F) -> Result<T, E>
where
    F: Future<Output = Result<T, E>> + Send + 'static,
    T: Send + 'static,
    E: From<anyhow::Error> + Send + 'static,
{
    match tokio::spawn(work).await {
        Ok(result) => result,
        Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
        Err(e) => Err(E::from(anyhow::anyhow!("detached task cancelled: {e}"))),
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;
    use std::time::Duration;

    use super::*;

    #[tokio::test]
    async fn work_finishes_when_its_caller_is_dropped() {
        let done = Arc::new(AtomicBool::new(false));
        let flag = done.clone();
        let caller = finish::<_, (), anyhow::Error>(async move {
            tokio::time::sleep(Duration::from_millis(50)).await;
            flag.store(true, Ordering::SeqCst);
            Ok(())
        });
        // The caller gives up long before the work is done.
        assert!(tokio::time::timeout(Duration::from_millis(5), caller)
            .await
            .is_err());
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert!(done.load(Ordering::SeqCst));
    }
}
