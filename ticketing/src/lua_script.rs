//! How the scripts in `lua/` are loaded: each with the parts of the library `lua/lib/` it uses
//! spliced before it, so a rule (Redis's clock, taking ticket numbers, ending a hold, counting
//! demand) is written once. The library defines local functions only and reads no KEYS or ARGV
//! of its own.
//!
//! Only the library files a script names (directly, or through another library file it names)
//! go before it. A script's body runs whole on every call, so every `local function` before it
//! is a closure made again on every call, garbage for Lua's collector; and every script loaded
//! keeps its copy of what was spliced, which each collection cycle walks. Profiled on a Redis
//! built with symbols, the collector took 9 % of Redis's CPU at the booking ceiling and string
//! interning 10 % (BENCHMARKS.md, issue 25).

use std::collections::HashSet;

/// The library, in the order its files go before a script: each file uses only those before it.
const LIBRARY: [(&str, &str); 7] = [
    ("clock", include_str!("../../lua/lib/clock.lua")),
    ("fields", include_str!("../../lua/lib/fields.lua")),
    ("numbers", include_str!("../../lua/lib/numbers.lua")),
    ("holds", include_str!("../../lua/lib/holds.lua")),
    ("demand", include_str!("../../lua/lib/demand.lua")),
    ("conversion", include_str!("../../lua/lib/conversion.lua")),
    ("liveness", include_str!("../../lua/lib/liveness.lua")),
];

/// A lazily built `redis::Script` of `lua/<file>`, after any parts named with it (`lua/<part>`,
/// in order: a long script split by concern, as `admit.lua` is), with the library files they use
/// before all of them.
#[macro_export]
macro_rules! lua_script {
    ($file:literal $(, $part:literal)* $(,)?) => {
        std::sync::LazyLock::new(|| {
            redis::Script::new(&$crate::lua_script::splice(&[
                $(include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/../lua/", $part)),)*
                include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/../lua/", $file)),
            ]))
        })
    };
}

/// The script made of `parts`, in order, with the library files they use before them (in the
/// library's order). A file is used when any word of the text names one of its top-level
/// definitions (a function or a constant); a mention in a comment counts too, which can only add
/// a file, never leave one out.
pub fn splice(parts: &[&str]) -> String {
    let mut words: HashSet<&str> = parts.iter().flat_map(|part| identifiers(part)).collect();
    let mut used = [false; LIBRARY.len()];
    // Files named by files taken in: until nothing new is taken.
    loop {
        let before = used;
        for (i, (_, text)) in LIBRARY.iter().enumerate() {
            if !used[i] && definitions(text).any(|f| words.contains(f)) {
                used[i] = true;
                words.extend(identifiers(text));
            }
        }
        if used == before {
            break;
        }
    }
    let mut script = String::new();
    for ((_, text), _) in LIBRARY.iter().zip(used).filter(|(_, used)| *used) {
        script.push_str(text);
    }
    for part in parts {
        script.push_str(part);
    }
    script
}

/// The names a library file defines at its top level: `local function <name>` and
/// `local <name>, ... = ...` (a constant, such as liveness's `ARRIVALS`, is as much a name a
/// script may use as a function). Only unindented lines are the file's top level.
fn definitions(text: &str) -> impl Iterator<Item = &str> {
    text.lines().flat_map(|line| {
        let declared = line.strip_prefix("local ").map(|rest| {
            let rest = rest.strip_prefix("function ").unwrap_or(rest);
            let end = rest.find(['=', '(']).unwrap_or(rest.len());
            &rest[..end]
        });
        declared
            .into_iter()
            .flat_map(|names| names.split(',').map(str::trim))
            .filter(|name| !name.is_empty())
    })
}

/// Every Lua identifier-shaped word of `text`.
fn identifiers(text: &str) -> impl Iterator<Item = &str> {
    text.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .filter(|word| word.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_'))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The library files `splice` puts before `parts`, by name, in order.
    fn library_for(parts: &[&str]) -> Vec<&'static str> {
        let script = splice(parts);
        LIBRARY
            .iter()
            .filter(|(_, text)| script.contains(text))
            .map(|(name, _)| *name)
            .collect()
    }

    /// Every name a script uses that the library defines must be defined before the script: a
    /// missing one fails only when its path runs, which a test may never reach.
    #[test]
    fn every_library_name_a_script_uses_is_spliced_before_it() {
        let defined: Vec<(&str, &str)> = LIBRARY
            .iter()
            .flat_map(|(name, text)| definitions(text).map(move |f| (*name, f)))
            .collect();
        // Every `local` at a library file's top level, as `grep -c '^local' lua/lib/*.lua` counts.
        let expected: usize = LIBRARY
            .iter()
            .map(|(_, text)| text.lines().filter(|l| l.starts_with("local ")).count())
            .sum();
        assert_eq!(defined.len(), expected, "{defined:?}");
        assert!(defined.contains(&("liveness", "ARRIVALS")), "{defined:?}");
        let lua = concat!(env!("CARGO_MANIFEST_DIR"), "/../lua");
        let read = |path: &std::path::Path| std::fs::read_to_string(path).unwrap();
        // `admit.lua` goes with its parts (`lua/admission/`), which name the library too.
        let parts: Vec<String> = std::fs::read_dir(format!("{lua}/admission"))
            .unwrap()
            .map(|entry| read(&entry.unwrap().path()))
            .collect();
        for entry in std::fs::read_dir(lua).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().is_none_or(|e| e != "lua") {
                continue;
            }
            let text = read(&path);
            let mut all: Vec<&str> = Vec::new();
            if path.ends_with("admit.lua") {
                all.extend(parts.iter().map(String::as_str));
            }
            all.push(&text);
            let script = splice(&all);
            let words: HashSet<&str> = identifiers(&script).collect();
            for (file, function) in &defined {
                if words.contains(function) {
                    assert!(
                        definitions(&script).any(|name| name == *function),
                        "{} names {function} ({file}.lua) without it",
                        path.display()
                    );
                }
            }
        }
    }

    #[test]
    fn a_script_carries_only_the_library_it_uses() {
        let reserve = include_str!("../../lua/reserve.lua");
        assert_eq!(library_for(&[reserve]), ["clock", "numbers", "holds"]);
        // Through another file: `end_hold` (holds) and `forget_demand` (demand) bring nothing
        // they do not name; `note_outcome` (conversion) brings `read_hash` (fields).
        let confirm = include_str!("../../lua/confirm.lua");
        assert_eq!(
            library_for(&[confirm]),
            ["clock", "fields", "holds", "demand", "conversion"]
        );
        assert!(library_for(&["return 1"]).is_empty());
        // A file named only by another library file is taken in with it: `end_hold` (holds)
        // marks a tier sold out through a function of its own file, and names no other file's.
        assert_eq!(library_for(&["return end_hold"]), ["holds"]);
        assert_eq!(library_for(&["return take_numbers"]), ["numbers"]);
        // A constant counts as much as a function: polls use liveness's `ARRIVALS`.
        assert_eq!(library_for(&["return ARRIVALS"]), ["liveness"]);
        let entry = include_str!("../../lua/queue_entry.lua");
        assert!(library_for(&[entry]).contains(&"liveness"));
    }

    #[test]
    fn parts_go_in_order_after_the_library() {
        let script = splice(&["-- first\nlocal x = clock_ms()\n", "-- second\nreturn x\n"]);
        let first = script.find("-- first").unwrap();
        let second = script.find("-- second").unwrap();
        let clock = script.find("local function clock_ms").unwrap();
        assert!(clock < first && first < second);
    }
}
