//! A service's state, as every request and task holds it.

/// Declares `$name`, a service's state as every extractor of every request and every task a
/// request starts clones it: one reference count to `$inner`, not one per field. Cloning a
/// struct of pools, channels and limiters field by field touches a dozen atomic counters shared
/// by every core, and in the gateway that was a tenth of a poll's CPU. Fields are read through
/// `Deref`; the service builds it as `$name(Arc::new(inner))`.
#[macro_export]
macro_rules! shared_state {
    ($(#[$meta:meta])* $vis:vis $name:ident($inner:ty)) => {
        $(#[$meta])*
        #[derive(Clone)]
        $vis struct $name(std::sync::Arc<$inner>);

        impl std::ops::Deref for $name {
            type Target = $inner;

            fn deref(&self) -> &$inner {
                &self.0
            }
        }
    };
}
