//! The run's report: a table on stdout, a JSON file, and a self-contained HTML page with charts.

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
    format!(
        "<!doctype html><html lang=\"en\"><meta charset=\"utf-8\"><title>Load test report</title>\
         <style>body{{font-family:system-ui,sans-serif;max-width:960px;margin:2rem auto;padding:0 1rem}}\
         table{{border-collapse:collapse;width:100%;font-size:.9rem}}td,th{{border-bottom:1px solid #ddd;padding:.3rem;text-align:right}}\
         td:first-child,th:first-child,td:last-child{{text-align:left}}svg{{width:100%;height:auto;background:#fafafa}}\
         pre{{background:#f6f8fa;padding:1rem;overflow:auto}}</style>\
         <h1>Load test report</h1><table><tr><th>endpoint</th><th>requests</th><th>per s</th><th>p50 ms</th><th>p95 ms</th>\
         <th>p99 ms</th><th>p99.9 ms</th><th>max ms</th><th>answers</th></tr>{rows}</table>{charts}\
         <h2>Full report</h2><pre>{}</pre></html>",
        escape(&serde_json::to_string_pretty(report).unwrap_or_default())
    )
}
