//! `loadgen <scenario> [--option value …]`: replays an on-sale night (or one part of it) against
//! running services and reports how they held up. See `loadgen help`.

mod args;
mod client;
mod invariants;
mod report;
mod scenarios;
mod stats;
mod tokens;

use std::path::PathBuf;
use std::time::Duration;

use anyhow::bail;
use serde_json::json;

use crate::args::Args;
use crate::client::Api;
use crate::scenarios::bookings::Load;
use crate::stats::Recorder;

const HELP: &str = "loadgen <scenario> [options]

scenarios:
  on-sale          visitors join a hot event's queue, poll, get admitted and book until sold out
  booking-ceiling  bookings straight at the booking service with minted tokens
  sold-out-storm   bookings against a sold-out event
  queue-storm      joins and polls only
  opening          a pre-queue of --count opens while visitors keep arriving: time to the first
                   admission, order of later joiners, Redis bytes per visitor, SLOWLOG
  proof-joins      joins/s with proof of work on (proofs solved before the timed phase) against
                   off, in one run: --gateway never asks, --proof-gateway always asks
  stock-sale       two tiers selling out at different times, buyers choosing while they wait,
                   replayed against three rooms in one run (hold on admission, stock gate,
                   rate only): refusals for stock among admitted buyers, time to be told
  rehearsal        an on-sale night as crowds behave (a pre-queue, later arrivals, visitors who
                   leave while waiting, admitted buyers who never book, no wishes), replayed
                   against the stock gate and a rate-only room: sell-out times, admissions a
                   minute, the longest stall, refusals for stock, the first wait range
  slowed-backend   adaptive admission against a booking service Postgres slows down (a delay
                   injected per booking row between a calm phase and a recovery), replayed
                   against a room with adaptive admission on and one with it off: booking p95
                   per phase, 503s, admissions a minute, the rate's recovery
  streams          --counts open queue streams on one gateway against as many pages polling:
                   its memory per stream, CPU and Redis commands, admission-notice latency
  original         the original app's SKIP LOCKED algorithm in Postgres (baseline)
  mint             prints --count entry tokens (default 1) for --event, one per line (for other
                   load tools)
  lua-script       prints the script --file (a path, e.g. lua/reserve.lua) as the services send
                   it to Redis, the library it uses spliced before it (for redis-benchmark)

common options (defaults):
  --gateway http://127.0.0.1:3000   --booking http://127.0.0.1:5000
  --admin-token $ADMIN_TOKEN        --database-url $DATABASE_URL
  --keys-dir .run/keys --kid dev    (to mint entry tokens)
  --duration 20 (seconds)           --out test-output/loadgen/<scenario>
on-sale:         --visitors 50000 --arrival-rate 0 (0 = burst) --abandon 0.1 --admission-per-minute 6000
                 --max-active 5000 --vip 500 --front-row 1500 --ga 8000 --max-duration 600
booking-ceiling: --mode closed|open --concurrency 32 --rate 500 --order VIP=1,FrontRow=1,GA=2
                 (each booking the same; without it, one or two tiers, one or two tickets each)
                 --lookup-flood 0 (availability look-ups per second, sent at a fixed rate beside
                 the bookings) --flood-ids unknown (made-up event ids, half sharing the event's
                 first 8 bytes) | known (the event on sale, answered from the caches)
sold-out-storm:  --concurrency 64
queue-storm:     --concurrency 64 (joins for half the duration, polls for the other half)
proof-joins:     --proof-gateway http://127.0.0.1:3001 --joins 20000 (per mode) --rounds 10
                 (alternating slices of each mode) --concurrency 64
stock-sale:      --visitors 3000 --arrival-rate 300 --ga 2400 --vip 300 --admission-per-minute 3000
                 --max-active 300 --switch 0.1 --max-poll-ms 2000 --max-duration 300
rehearsal:       --pre-queued 8000 --lead 20 --later 4000 --later-rate 150 --abandon 0.2
                 --never-book 0.05 --add-vip 0.1 --ga 3000 --vip 300 --admission-per-minute 3000
                 --max-active 1000 --token-ttl 120 --max-poll-ms 20000 --max-duration 300
                 --rooms gate,rate (which rooms to replay the crowd against, in that order)
slowed-backend:  --arrival-rate 110 --calm 30 --slowed 60 --after 40 --delay-ms 60
                 --admission-per-minute 6000 --max-active 5000 --target-p95-ms 500
                 --max-503-pct 5 --floor-per-minute 600 --max-poll-ms 2000
streams:         --counts 5000,10000,20000 --sources 10 (127.0.0.x addresses) --window 20
                 --admit 2000 --gateway-pid <pid> (required) --redis-url $REDIS_URL
original:        --concurrency 32 --rows 300000
opening:         --count 1000000 --arrivals-per-second 300 --lead 45 (seconds from creating
                 the event to on_sale_at; seeding must fit, and the seeded visitors count as
                 alive for a minute) --redis-url $REDIS_URL";

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut raw = std::env::args().skip(1);
    let scenario = raw.next().unwrap_or_else(|| "help".into());
    if matches!(scenario.as_str(), "help" | "--help" | "-h") {
        println!("{HELP}");
        return Ok(());
    }
    let args = Args::parse(raw)?;
    if scenario == "lua-script" {
        let file = args
            .optional("file")
            .ok_or_else(|| anyhow::anyhow!("lua-script needs --file"))?;
        let text = std::fs::read_to_string(&file)?;
        print!("{}", ticketing::lua_script::splice(&[&text]));
        return Ok(());
    }
    if scenario == "mint" {
        let minter = tokens::Minter::from_dir(
            &PathBuf::from(args.text("keys-dir", ".run/keys")),
            &args.text("kid", "dev"),
        )?;
        let event = args
            .optional("event")
            .ok_or_else(|| anyhow::anyhow!("mint needs --event"))?;
        let (event, ttl) = (event.parse()?, args.get("ttl", 3600)?);
        for _ in 0..args.get("count", 1u32)? {
            println!("{}", minter.mint(event, ttl)?);
        }
        return Ok(());
    }
    if scenario == "opening" || scenario == "streams" {
        let out = PathBuf::from(args.text("out", &format!("test-output/loadgen/{scenario}")));
        let result = if scenario == "opening" {
            scenarios::opening::run(&args).await?
        } else {
            scenarios::streams::run(&args).await?
        };
        std::fs::create_dir_all(out.parent().unwrap_or(&out))?;
        std::fs::write(
            out.with_extension("json"),
            serde_json::to_vec_pretty(&result)?,
        )?;
        println!("{result}");
        return Ok(());
    }
    let recorder = Recorder::new();
    let api = Api::new(
        args.text("gateway", "http://127.0.0.1:3000"),
        args.text("booking", "http://127.0.0.1:5000"),
        args.admin_token(),
        recorder.clone(),
    )?;
    let database_url = args
        .optional("database-url")
        .or_else(|| std::env::var("DATABASE_URL").ok())
        .unwrap_or_else(|| "postgres://postgres@127.0.0.1:5432/ticket_booking".into());
    let duration = Duration::from_secs_f64(args.get("duration", 20.0)?);
    let out = PathBuf::from(args.text("out", &format!("test-output/loadgen/{scenario}")));
    let minter = || {
        tokens::Minter::from_dir(
            &PathBuf::from(args.text("keys-dir", ".run/keys")),
            &args.text("kid", "dev"),
        )
    };
    let run_id = uuid::Uuid::new_v4().simple().to_string()[..8].to_string();
    let tiers = |pairs: &[(&str, i64)]| {
        pairs
            .iter()
            .map(|(c, n)| (c.to_string(), *n))
            .collect::<Vec<_>>()
    };
    let open_room = json!({"enabled": false, "admission_per_minute": 600, "max_active": 100000, "paused": false, "token_ttl_s": 3600});

    let mut report = json!({ "scenario": scenario, "run": run_id });
    let mut event = None;
    let started = std::time::Instant::now();
    let window;
    match scenario.as_str() {
        "booking-ceiling" | "sold-out-storm" => {
            let sold_out = scenario == "sold-out-storm";
            let capacity = if sold_out { 1 } else { 1_000_000 };
            let codes = ["VIP", "FrontRow", "GA"];
            let id = api
                .create_event(
                    &format!("loadgen {scenario} {run_id}"),
                    &tiers(&codes.map(|c| (c, capacity))),
                    open_room,
                )
                .await?;
            event = Some(id);
            let minter = minter()?;
            let codes: Vec<String> = codes.iter().map(|c| c.to_string()).collect();
            if sold_out {
                for code in &codes {
                    let token = minter.mint(id, 600)?;
                    let body = json!({"event_id": id, "tiers": {code: 1}, "buyer_email": "first@example.com"});
                    let (status, answer) = api.book(&token, &body, std::time::Instant::now()).await;
                    if status != 201 {
                        bail!("could not sell the event out first: {status} {answer}");
                    }
                }
            }
            let load = match (sold_out, args.text("mode", "closed").as_str()) {
                (false, "open") => Load::Open {
                    rate: args.get("rate", 500.0)?,
                },
                (false, "closed") => Load::Closed {
                    concurrency: args.get("concurrency", 32)?,
                },
                (true, _) => Load::Closed {
                    concurrency: args.get("concurrency", 64)?,
                },
                (_, other) => bail!("--mode {other}: use open or closed"),
            };
            report["load"] = json!(format!("{load:?}"));
            let tokens = scenarios::bookings::mint(&minter, id, load, duration, sold_out)?;
            let progress = stats::progress(recorder.clone(), duration, "bookings");
            let measured = std::time::Instant::now();
            let flood_rate: f64 = args.get("lookup-flood", 0.0)?;
            let flood_ids =
                scenarios::bookings::FloodIds::parse(&args.text("flood-ids", "unknown"))?;
            let flood = (flood_rate > 0.0).then(|| {
                report["lookup_flood_per_s"] = json!(flood_rate);
                report["lookup_flood_ids"] = json!(format!("{flood_ids:?}"));
                tokio::spawn(scenarios::bookings::lookup_flood(
                    api.clone(),
                    id,
                    flood_ids,
                    flood_rate,
                    duration,
                ))
            });
            let orders =
                scenarios::bookings::Orders::parse(args.optional("order").as_deref(), &codes)?;
            report["orders"] = json!(format!("{orders:?}"));
            scenarios::bookings::run(&api, tokens, id, &orders, load, duration, sold_out).await?;
            if let Some(flood) = flood {
                flood.await?;
            }
            window = measured.elapsed();
            progress.abort();
        }
        "queue-storm" => {
            let id = api
                .create_event(
                    &format!("loadgen queue storm {run_id}"),
                    &tiers(&[("GA", 1000)]),
                    json!({"enabled": true, "admission_per_minute": 1, "max_active": 1, "paused": true, "token_ttl_s": 600}),
                )
                .await?;
            event = Some(id);
            let progress = stats::progress(recorder.clone(), duration, "queue");
            let measured = std::time::Instant::now();
            let joined = scenarios::queue_storm::run(
                &api,
                id,
                args.get("concurrency", 64)?,
                duration / 2,
                duration / 2,
            )
            .await?;
            window = measured.elapsed() / 2;
            progress.abort();
            report["joined"] = json!(joined);
        }
        "proof-joins" => {
            let id = api
                .create_event(
                    &format!("loadgen proof joins {run_id}"),
                    &tiers(&[("GA", 1000)]),
                    json!({"enabled": true, "admission_per_minute": 1, "max_active": 1, "paused": true, "token_ttl_s": 600}),
                )
                .await?;
            event = Some(id);
            let proof_api = Api::new(
                args.text("proof-gateway", "http://127.0.0.1:3001"),
                api.booking.clone(),
                api.admin_token.clone(),
                recorder.clone(),
            )?;
            let measured = std::time::Instant::now();
            let outcome = scenarios::proof_joins::run(
                &api,
                &proof_api,
                id,
                args.get("joins", 20_000)?,
                args.get("rounds", 10)?,
                args.get("concurrency", 64)?,
            )
            .await?;
            window = measured.elapsed();
            println!("proof joins: {}", serde_json::to_string_pretty(&outcome)?);
            report["proof_joins"] = serde_json::to_value(&outcome)?;
        }
        "on-sale" => {
            let rate: f64 = args.get("admission-per-minute", 6000.0)?;
            let ttl: i64 = 600;
            let tier_plan = tiers(&[
                ("VIP", args.get("vip", 500)?),
                ("FrontRow", args.get("front-row", 1500)?),
                ("GA", args.get("ga", 8000)?),
            ]);
            let id = api
                .create_event(
                    &format!("loadgen on-sale {run_id}"),
                    &tier_plan,
                    json!({"enabled": true, "admission_per_minute": rate as u32, "max_active": args.get("max-active", 5000)?, "paused": false, "token_ttl_s": ttl}),
                )
                .await?;
            event = Some(id);
            let arrival: f64 = args.get("arrival-rate", 0.0)?;
            let plan = scenarios::onsale::Plan {
                visitors: args.get("visitors", 50_000)?,
                arrival_rate: (arrival > 0.0).then_some(arrival),
                abandon_fraction: args.get("abandon", 0.1)?,
                token_ttl_s: ttl,
                max_duration: Duration::from_secs_f64(args.get("max-duration", 600.0)?),
                tick: Duration::from_millis(args.get("tick-ms", 100)?),
            };
            let progress = stats::progress(recorder.clone(), plan.max_duration, "on-sale");
            let codes: Vec<String> = tier_plan.iter().map(|(c, _)| c.clone()).collect();
            let result = scenarios::onsale::run(&api, id, &codes, &plan, rate).await?;
            window = started.elapsed();
            progress.abort();
            report["on_sale"] = serde_json::to_value(&result)?;
            report["tiers"] = json!(tier_plan);
            report["visitors"] = json!(plan.visitors);
        }
        "stock-sale" => {
            let plan = scenarios::stock_sale::Plan {
                visitors: args.get("visitors", 3000)?,
                arrival_rate: args.get("arrival-rate", 300.0)?,
                ga: args.get("ga", 2400)?,
                vip: args.get("vip", 300)?,
                admission_per_minute: args.get("admission-per-minute", 3000)?,
                max_active: args.get("max-active", 300)?,
                switch_fraction: args.get("switch", 0.1)?,
                max_poll_ms: args.get("max-poll-ms", 2000)?,
                max_duration: Duration::from_secs_f64(args.get("max-duration", 300.0)?),
            };
            let mut rooms = Vec::new();
            let mut checks = Vec::new();
            for room in scenarios::stock_sale::ROOMS {
                let id = api
                    .create_event(
                        &format!("loadgen stock sale {run_id} {}", room.name),
                        &tiers(&[("GA", plan.ga), ("VIP", plan.vip)]),
                        json!({"enabled": true, "admission_per_minute": plan.admission_per_minute,
                               "max_active": plan.max_active, "paused": false, "token_ttl_s": 600,
                               "headroom_pct": room.headroom_pct,
                               "hold_on_admission": room.hold_on_admission}),
                    )
                    .await?;
                let progress = stats::progress(recorder.clone(), plan.max_duration, room.name);
                let result = scenarios::stock_sale::run(&api, id, &plan, room).await?;
                progress.abort();
                eprintln!();
                println!("{}: {}", room.name, serde_json::to_string_pretty(&result)?);
                checks.extend(invariants::check_room(&database_url, &api, id, room.name).await?);
                rooms.push(result);
            }
            window = started.elapsed();
            report["stock_sale"] = serde_json::to_value(&rooms)?;
            report["invariants"] = serde_json::to_value(&checks)?;
            invariants::print(&checks);
        }
        "rehearsal" => {
            let plan = scenarios::rehearsal::Plan {
                pre_queued: args.get("pre-queued", 8000)?,
                lead: Duration::from_secs_f64(args.get("lead", 20.0)?),
                later: args.get("later", 4000)?,
                later_rate: args.get("later-rate", 150.0)?,
                abandon: args.get("abandon", 0.2)?,
                never_book: args.get("never-book", 0.05)?,
                add_vip: args.get("add-vip", 0.1)?,
                ga: args.get("ga", 3000)?,
                vip: args.get("vip", 300)?,
                admission_per_minute: args.get("admission-per-minute", 3000)?,
                max_active: args.get("max-active", 1000)?,
                token_ttl_s: args.get("token-ttl", 120)?,
                max_poll_ms: args.get("max-poll-ms", 20_000)?,
                max_duration: Duration::from_secs_f64(args.get("max-duration", 300.0)?),
            };
            let wanted = args.text("rooms", "gate,rate");
            let mut rooms = Vec::new();
            let mut checks = Vec::new();
            for room in scenarios::rehearsal::rooms(&wanted)? {
                let progress =
                    stats::progress(recorder.clone(), plan.max_duration + plan.lead, room.name);
                let result = scenarios::rehearsal::run(&api, &plan, room, &run_id).await?;
                progress.abort();
                eprintln!();
                println!("{}: {}", room.name, serde_json::to_string_pretty(&result)?);
                checks.extend(
                    invariants::check_room(&database_url, &api, result.event_id, room.name).await?,
                );
                rooms.push(result);
            }
            window = started.elapsed();
            report["rehearsal"] = serde_json::to_value(&rooms)?;
            report["invariants"] = serde_json::to_value(&checks)?;
            invariants::print(&checks);
        }
        "slowed-backend" => {
            let plan = scenarios::slowed::Plan {
                arrival_rate: args.get("arrival-rate", 110.0)?,
                calm: Duration::from_secs_f64(args.get("calm", 30.0)?),
                slowed: Duration::from_secs_f64(args.get("slowed", 60.0)?),
                after: Duration::from_secs_f64(args.get("after", 40.0)?),
                delay_ms: args.get("delay-ms", 60)?,
                admission_per_minute: args.get("admission-per-minute", 6000)?,
                max_active: args.get("max-active", 5000)?,
                target_p95_ms: args.get("target-p95-ms", 500)?,
                max_503_pct: args.get("max-503-pct", 5)?,
                floor_per_minute: args.get("floor-per-minute", 600)?,
                max_poll_ms: args.get("max-poll-ms", 2000)?,
            };
            let mut rooms = Vec::new();
            let mut checks = Vec::new();
            for room in scenarios::slowed::ROOMS {
                let length = plan.calm + plan.slowed + plan.after;
                let progress = stats::progress(recorder.clone(), length, room.name);
                let result =
                    scenarios::slowed::run(&api, &database_url, &plan, room, &run_id).await;
                progress.abort();
                eprintln!();
                let result = match result {
                    Ok(result) => result,
                    Err(error) => {
                        scenarios::slowed::remove_delay(&database_url).await?;
                        return Err(error);
                    }
                };
                println!("{}: {}", room.name, serde_json::to_string_pretty(&result)?);
                checks.extend(
                    invariants::check_room(&database_url, &api, result.event_id, room.name).await?,
                );
                rooms.push(result);
            }
            scenarios::slowed::remove_delay(&database_url).await?;
            window = started.elapsed();
            report["slowed_backend"] = serde_json::to_value(&rooms)?;
            report["invariants"] = serde_json::to_value(&checks)?;
            invariants::print(&checks);
        }
        "original" => {
            let concurrency = args.get("concurrency", 32)?;
            let progress = stats::progress(recorder.clone(), duration, "original");
            let measured = std::time::Instant::now();
            scenarios::baseline::run(
                &database_url,
                concurrency,
                duration,
                args.get("rows", 300_000)?,
                &recorder,
            )
            .await?;
            window = measured.elapsed();
            progress.abort();
            report["concurrency"] = json!(concurrency);
        }
        other => bail!("unknown scenario {other:?}\n\n{HELP}"),
    }
    eprintln!();
    let endpoints = recorder.summary(window);
    report["window_s"] = json!(window.as_secs_f64());
    report["endpoints"] = serde_json::to_value(&endpoints)?;
    if let Some(id) = event {
        report["event_id"] = json!(id);
        // Let in-flight bookings and the reconciler settle before checking.
        tokio::time::sleep(Duration::from_secs(1)).await;
        match invariants::check(&database_url, &api, id).await {
            Ok(checks) => {
                println!("\ninvariants:");
                invariants::print(&checks);
                report["invariants"] = serde_json::to_value(&checks)?;
            }
            Err(e) => eprintln!("invariants not checked: {e:#}"),
        }
    }
    report::print_table(&endpoints);
    if let Some(on_sale) = report.get("on_sale") {
        println!("\non-sale: {}", serde_json::to_string_pretty(on_sale)?);
    }
    report::write(&out, &report, &endpoints, &recorder.samples())?;
    let broken = report["invariants"]
        .as_array()
        .is_some_and(|c| c.iter().any(|c| c["holds"] == false));
    if broken {
        bail!("an invariant is broken");
    }
    Ok(())
}
