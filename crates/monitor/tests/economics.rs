//! The live economics of a run: the cgminer API's `summary`, the `/metrics` gauges and the
//! report's profit chart, from a view whose economics the caller filled (tests/common: 4.52 TH/s
//! at 95 W, 0.12 USD/kWh, revenue 0.0123 USD/day, break-even 0.0054 USD/kWh, rent 1.20 USD/day).

mod common;

use hashrig_monitor::cgminer::respond;
use hashrig_monitor::report::render_html;
use hashrig_monitor::{Level, NoActions, RunView};

fn summary(view: &RunView) -> serde_json::Value {
    let mut raw = respond(br#"{"command":"summary"}"#, view, Level::Read, &NoActions);
    raw.pop();
    let v: serde_json::Value = serde_json::from_slice(&raw).unwrap();
    v["SUMMARY"][0].clone()
}

fn near(got: &serde_json::Value, want: f64) -> bool {
    got.as_f64().is_some_and(|g| (g - want).abs() <= 1e-9 * want.abs().max(1.0))
}

#[test]
fn the_api_summary_carries_profit_break_even_and_the_alternative() {
    let s = summary(&common::rig());
    assert_eq!(s["Currency"], "USD", "{s}");
    assert!(near(&s["Revenue Per Day"], 0.0123), "{s}");
    assert!(near(&s["Power Cost Per Day"], 0.2736), "{s}");
    assert!(near(&s["Profit Per Day"], 0.0123 - 0.2736), "{s}");
    assert!(near(&s["Break Even Power Price"], 0.0054), "{s}");
    assert!(near(&s["Break Even Hashprice"], 60.53), "{s}");
    assert!(near(&s["Hashprice"], 2.72), "{s}");
    assert!(near(&s["Rent Profit Per Day"], 1.2 - 0.2736), "{s}");
    assert_eq!(s["Best Use"], "rent", "{s}");

    let mut bare = common::rig();
    bare.economics = None;
    let s = summary(&bare);
    assert!(s.get("Profit Per Day").is_none() && s.get("Break Even Power Price").is_none(), "{s}");
}

#[test]
fn metrics_export_profit_break_even_and_the_alternatives_profit() {
    let text = hashrig_monitor::metrics::render(&common::rig()).unwrap();
    let value = |name: &str| -> f64 {
        // An unlabelled gauge prints as `name{} value`.
        let line = text
            .lines()
            .find(|l| l.starts_with(&format!("{name} ")) || l.starts_with(&format!("{name}{{}} ")))
            .unwrap_or_else(|| panic!("no {name} in\n{text}"));
        line.rsplit(' ').next().unwrap().parse().unwrap()
    };
    assert!((value("hashrig_profit_usd_per_day") - (0.0123 - 0.2736)).abs() < 1e-12, "{text}");
    assert!((value("hashrig_break_even_usd_per_kwh") - 0.0054).abs() < 1e-12);
    assert!((value("hashrig_revenue_usd_per_day") - 0.0123).abs() < 1e-12);
    assert!((value("hashrig_alternative_profit_usd_per_day{use=\"rent\"}") - (1.2 - 0.2736)).abs() < 1e-12);
    assert!((value("hashrig_power_price_usd_per_kwh") - 0.12).abs() < 1e-12);
    assert!(text.contains("# TYPE hashrig_profit_usd_per_day gauge"), "{text}");

    let mut bare = common::rig();
    bare.economics = None;
    let text = hashrig_monitor::metrics::render(&bare).unwrap();
    assert!(!text.contains("profit_usd"), "{text}");
}

/// The vertex counts of the polylines inside `<figure id="id">`.
fn polylines(html: &str, id: &str) -> Vec<usize> {
    let fig = figure(html, id);
    fig.match_indices("<polyline")
        .map(|(p, _)| {
            let pts = &fig[p..];
            let open = pts.find("points=\"").expect("polyline has points") + 8;
            let close = pts[open..].find('"').unwrap();
            pts[open..open + close].split_whitespace().count()
        })
        .collect()
}

fn figure<'a>(html: &'a str, id: &str) -> &'a str {
    let start = html.find(&format!("id=\"{id}\"")).unwrap_or_else(|| panic!("no #{id}"));
    let fig = &html[start..];
    &fig[..fig.find("</figure>").expect("figure closes")]
}

#[test]
fn the_report_charts_profit_against_power_price_with_the_run_and_break_even_marked() {
    let html = render_html(&common::rig()).unwrap();
    let fig = figure(&html, "profit-chart");
    assert!(fig.contains("<svg id=\"profit-chart-svg\""), "{fig}");
    assert!(fig.contains("data-series=\"2\""), "mining and rent");
    // Two lines of 41 points each: mining and the rent (grid and axes have two vertices).
    let long: Vec<usize> = polylines(&html, "profit-chart").into_iter().filter(|&n| n > 2).collect();
    assert_eq!(long, vec![41, 41], "mining and rent, one line each");
    // This run's point and the break-even ring.
    assert_eq!(fig.matches("<circle").count(), 2, "{fig}");
    assert!(fig.contains("data-break-even=\"0.0054\""), "{fig}");
    assert!(fig.contains("data-run-price=\"0.12\""), "{fig}");
    assert!(fig.contains("break-even at 0.005400 USD/kWh"), "{fig}");
    assert!(html.contains("Best use</th><td class=\"l\">rent"), "summary names the best use");

    // Without a power figure there is no chart, and the page says why.
    let mut v = common::rig();
    let e = v.economics.as_mut().unwrap();
    e.watts = None;
    e.break_even_power_price_kwh = None;
    let html = render_html(&v).unwrap();
    assert!(!html.contains("id=\"profit-chart\""));
    assert!(html.contains("No chart: the power draw is unknown"));

    // Mining alone: one line.
    let mut v = common::rig();
    v.economics.as_mut().unwrap().alternatives.clear();
    let html = render_html(&v).unwrap();
    let long: Vec<usize> = polylines(&html, "profit-chart").into_iter().filter(|&n| n > 2).collect();
    assert_eq!(long, vec![41]);
}

#[test]
fn economics_saved_before_the_live_fields_still_read() {
    let old = r#"{"currency":"USD","network_difficulty":1e14,"coin_price":1e5,"power_price_kwh":0.1,
        "revenue_per_day":1.0,"cost_per_day":null,"break_even_power_price_kwh":null}"#;
    let e: hashrig_monitor::Economics = serde_json::from_str(old).unwrap();
    assert_eq!(e.watts, None);
    assert!(e.alternatives.is_empty());
}
