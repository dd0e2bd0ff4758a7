//! How the scripts in `lua/` are loaded: each with the library `lua/lib/` spliced before it, so
//! a rule (Redis's clock, taking ticket numbers, ending a hold, counting demand) is written once.
//! The library defines local functions only and reads no KEYS or ARGV of its own.

/// A lazily built `redis::Script` of `lua/<file>` with the library before it, then any parts
/// named after it (`lua/<part>`, in order): a long script split by concern, as `admit.lua` is.
#[macro_export]
macro_rules! lua_script {
    ($file:literal $(, $part:literal)* $(,)?) => {
        std::sync::LazyLock::new(|| {
            redis::Script::new(concat!(
                include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/../lua/lib/clock.lua")),
                include_str!(concat!(
                    env!("CARGO_MANIFEST_DIR"),
                    "/../lua/lib/fields.lua"
                )),
                include_str!(concat!(
                    env!("CARGO_MANIFEST_DIR"),
                    "/../lua/lib/numbers.lua"
                )),
                include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/../lua/lib/holds.lua")),
                include_str!(concat!(
                    env!("CARGO_MANIFEST_DIR"),
                    "/../lua/lib/demand.lua"
                )),
                include_str!(concat!(
                    env!("CARGO_MANIFEST_DIR"),
                    "/../lua/lib/conversion.lua"
                )),
                include_str!(concat!(
                    env!("CARGO_MANIFEST_DIR"),
                    "/../lua/lib/liveness.lua"
                )),
                $(include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/../lua/", $part)),)*
                include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/../lua/", $file)),
            ))
        })
    };
}
