//! The run's report: a table on stdout, a JSON file, and a self-contained HTML page that leads
//! with its verdict (the ledger and invariants, held or broken), then tables and charts.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

use serde_json::Value;

use crate::stats::{EndpointSummary, Sample};

pub fn print_table(endpoints: &[EndpointSummary]) {
    println!(
        "\n{:<40} {:>9} {:>9} {:>8} {:>8} {:>8} {:>8} {:>8}",
        "endpoint", "requests", "per s", "p50 ms", "p95 ms", "p99 ms", "p99.9", "max ms"
    );
    for e in endpoints {
        println!(
            "{:<40} {:>9} {:>9.0} {:>8.2} {:>8.2} {:>8.2} {:>8.2} {:>8.1}",
            e.endpoint,
            e.requests,
            e.throughput_per_s,
            e.p50_ms,
            e.p95_ms,
            e.p99_ms,
            e.p999_ms,
            e.max_ms
        );
        let outcomes: Vec<String> = e
            .outcomes
            .iter()
            .map(|(k, v)| format!("{k}: {v}"))
            .collect();
        println!("    {}", outcomes.join(", "));
    }
}

/// Writes `<out>.json` and `<out>.html`.
pub fn write(
    out: &Path,
    report: &Value,
    endpoints: &[EndpointSummary],
    samples: &[Sample],
) -> anyhow::Result<()> {
    if let Some(dir) = out.parent() {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::write(
        out.with_extension("json"),
        serde_json::to_string_pretty(report)?,
    )?;
    std::fs::write(out.with_extension("html"), html(report, endpoints, samples))?;
    println!(
        "\nreport: {} and {}",
        out.with_extension("json").display(),
        out.with_extension("html").display()
    );
    Ok(())
}

/// The verdict first: whether the ledger and the invariants held, each promise with what was
/// found, so a reader need not dig the JSON at the bottom for the one thing that matters.
fn verdict(report: &Value) -> String {
    let Some(checks) = report["invariants"].as_array().filter(|c| !c.is_empty()) else {
        return "<section class=\"verdict\"><h2>Verdict: not checked</h2>\
                <p>This scenario ran without an event whose ledger could be checked.</p></section>"
            .into();
    };
    let broken = checks.iter().filter(|c| c["holds"] != true).count();
    let (class, title) = if broken == 0 {
        (
            "held",
            format!("Verdict: every invariant held ({} checks)", checks.len()),
        )
    } else {
        (
            "broken",
            format!(
                "Verdict: BROKEN — {broken} of {} checks failed",
                checks.len()
            ),
        )
    };
    let mut items = String::new();
    for c in checks {
        let held = c["holds"] == true;
        let _ = write!(
            items,
            "<li class=\"{}\">{} {} <small>({})</small></li>",
            if held { "held" } else { "broken" },
            if held { "✓" } else { "✗" },
            escape(c["promise"].as_str().unwrap_or_default()),
            escape(c["detail"].as_str().unwrap_or_default()),
        );
    }
    format!("<section class=\"verdict {class}\"><h2>{title}</h2><ul>{items}</ul></section>")
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// A line chart as inline SVG: one polyline per series of (x, y) points.
fn chart(title: &str, unit: &str, series: &BTreeMap<String, Vec<(f64, f64)>>) -> String {
    const W: f64 = 720.0;
    const H: f64 = 240.0;
    const PAD: f64 = 40.0;
    const COLOURS: [&str; 6] = [
        "#1f6feb", "#d1242f", "#1a7f37", "#9a6700", "#8250df", "#57606a",
    ];
    let points = series.values().flatten();
    let max_x = points.clone().map(|p| p.0).fold(1.0, f64::max);
    let max_y = points.map(|p| p.1).fold(1.0, f64::max) * 1.1;
    let mut svg = format!(
        "<figure><figcaption>{}</figcaption><svg viewBox=\"0 0 {W} {H}\" role=\"img\" aria-label=\"{}\">\
         <line x1=\"{PAD}\" y1=\"{}\" x2=\"{W}\" y2=\"{}\" stroke=\"#999\"/><line x1=\"{PAD}\" y1=\"0\" x2=\"{PAD}\" y2=\"{}\" stroke=\"#999\"/>\
         <text x=\"2\" y=\"12\" font-size=\"10\">{:.0} {unit}</text><text x=\"{}\" y=\"{}\" font-size=\"10\">{:.0} s</text>",
        escape(title),
        escape(title),
        H - PAD,
        H - PAD,
        H - PAD,
        max_y,
        W - 40.0,
        H - PAD + 14.0,
        max_x
    );
    for (i, (name, points)) in series.iter().enumerate() {
        let colour = COLOURS[i % COLOURS.len()];
        let path: Vec<String> = points
            .iter()
            .map(|(x, y)| {
                format!(
                    "{:.1},{:.1}",
                    PAD + x / max_x * (W - PAD),
                    (H - PAD) - y / max_y * (H - PAD)
                )
            })
            .collect();
        let _ = write!(
            svg,
            "<polyline fill=\"none\" stroke=\"{colour}\" stroke-width=\"1.5\" points=\"{}\"/>\
             <text x=\"{}\" y=\"{}\" font-size=\"11\" fill=\"{colour}\">{}</text>",
            path.join(" "),
            PAD + 10.0,
            14.0 + 14.0 * i as f64,
            escape(name)
        );
    }
    svg.push_str("</svg></figure>");
    svg
}

fn html(report: &Value, endpoints: &[EndpointSummary], samples: &[Sample]) -> String {
    let mut throughput = BTreeMap::new();
    let mut latency = BTreeMap::new();
    for e in endpoints {
        throughput.insert(
            e.endpoint.clone(),
            e.series
                .iter()
                .map(|p| (p.second as f64, p.requests as f64))
                .collect(),
        );
        latency.insert(
            e.endpoint.clone(),
            e.series
                .iter()
                .map(|p| (p.second as f64, p.p99_ms))
                .collect(),
        );
    }
    let mut gauges: BTreeMap<String, Vec<(f64, f64)>> = BTreeMap::new();
    for s in samples {
        gauges
            .entry(s.name.clone())
            .or_default()
            .push((s.at_s, s.value));
    }
    let mut rows = String::new();
    for e in endpoints {
        let outcomes: Vec<String> = e
            .outcomes
            .iter()
            .map(|(k, v)| format!("{k}: {v}"))
            .collect();
        let _ = write!(
            rows,
            "<tr><td>{}</td><td>{}</td><td>{:.0}</td><td>{:.2}</td><td>{:.2}</td><td>{:.2}</td><td>{:.2}</td><td>{:.1}</td><td>{}</td></tr>",
            escape(&e.endpoint), e.requests, e.throughput_per_s, e.p50_ms, e.p95_ms, e.p99_ms, e.p999_ms, e.max_ms,
            escape(&outcomes.join(", "))
        );
    }
    let mut charts = chart("Throughput (requests per second)", "req/s", &throughput);
    charts.push_str(&chart("Latency p99 per second", "ms", &latency));
    for (name, points) in &gauges {
        charts.push_str(&chart(
            name,
            "",
            &BTreeMap::from([(name.clone(), points.clone())]),
        ));
    }
    let verdict = verdict(report);
    format!(
        "<!doctype html><html lang=\"en\"><meta charset=\"utf-8\"><title>Load test report</title>\
         <style>body{{font-family:system-ui,sans-serif;max-width:960px;margin:2rem auto;padding:0 1rem}}\
         table{{border-collapse:collapse;width:100%;font-size:.9rem}}td,th{{border-bottom:1px solid #ddd;padding:.3rem;text-align:right}}\
         td:first-child,th:first-child,td:last-child{{text-align:left}}svg{{width:100%;height:auto;background:#fafafa}}\
         pre{{background:#f6f8fa;padding:1rem;overflow:auto}}.held{{color:#1a7f37}}.broken{{color:#d1242f}}\
         .verdict{{border:2px solid;padding:.5rem 1rem;margin:1rem 0}}.verdict li{{margin:.2rem 0}}</style>\
         <h1>Load test report</h1>{verdict}<table><tr><th>endpoint</th><th>requests</th><th>per s</th><th>p50 ms</th><th>p95 ms</th>\
         <th>p99 ms</th><th>p99.9 ms</th><th>max ms</th><th>answers</th></tr>{rows}</table>{charts}\
         <h2>Full report</h2><pre>{}</pre></html>",
        escape(&serde_json::to_string_pretty(report).unwrap_or_default())
    )
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn the_page_leads_with_the_verdict() {
        let held = json!({"invariants": [
            {"promise": "GA: tickets in postgres = capacity - availability", "holds": true, "detail": "ok"}
        ]});
        let page = html(&held, &[], &[]);
        let verdict_at = page
            .find("Verdict: every invariant held (1 checks)")
            .expect("a verdict");
        assert!(
            verdict_at < page.find("<table>").expect("the table"),
            "the verdict comes first"
        );

        let broken = json!({"invariants": [
            {"promise": "a", "holds": true, "detail": ""},
            {"promise": "no number <twice>", "holds": false, "detail": "3 twice"}
        ]});
        let page = html(&broken, &[], &[]);
        assert!(page.contains("Verdict: BROKEN — 1 of 2 checks failed"));
        assert!(
            page.contains("no number &lt;twice&gt;"),
            "promises are escaped"
        );

        assert!(html(&json!({}), &[], &[]).contains("Verdict: not checked"));
    }
}
