//! The run report: one self-contained HTML page (no network needed to view it) with a summary,
//! a hashrate-over-time chart, a per-chip health map for each ASIC chain, and the run's JSON
//! embedded as `<script type="application/json" id="run">`.
//!
//! Charts are inline SVG drawn by `plotters` (its SVG backend writes text as `<text>` elements,
//! so no font files are needed). Each chart sits in a `<figure>` whose `data-points` says how
//! many data points it drew, so a test (or a person) can check the picture holds the data.

use std::fmt::Write as _;
use std::path::Path;

use plotters::prelude::*;

use crate::view::{DeviceView, RunView};
use crate::Error;

/// Render the report page for `view`.
pub fn render_html(view: &RunView) -> Result<String, Error> {
    let mut html = String::with_capacity(64 * 1024);
    let title = format!("hashrig {} report", view.mode);
    let _ = write!(
        html,
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>{title}</title><style>{CSS}</style></head><body>\n<h1>{title}</h1>\n"
    );
    summary(&mut html, view);
    devices_table(&mut html, view);
    pools_table(&mut html, view);

    html.push_str("<h2>Hashrate over time</h2>\n");
    if view.samples.is_empty() {
        html.push_str("<p class=\"note\">No hashrate samples were recorded.</p>\n");
    } else {
        let svg = hashrate_chart(view)?;
        let _ = writeln!(
            html,
            "<figure id=\"hashrate-chart\" class=\"chart\" data-points=\"{}\">{svg}\
             <figcaption>Whole-rig hashrate per sample interval; dashed line: run average.</figcaption></figure>",
            view.samples.len()
        );
    }

    if let Some(e) = &view.economics {
        profit_section(&mut html, e)?;
    }

    for d in view.devices.iter().filter(|d| !d.chips.is_empty()) {
        chip_section(&mut html, d)?;
    }

    let json = serde_json::to_string_pretty(view).map_err(Error::Json)?;
    // `<`, `>` and `&` only occur inside JSON strings, where \u escapes mean the same: this
    // keeps `</script>` in a device name from ending the block.
    let json = json.replace('<', "\\u003c").replace('>', "\\u003e").replace('&', "\\u0026");
    let _ = writeln!(html, "<script type=\"application/json\" id=\"run\">{json}</script>");
    html.push_str(SCRIPT);
    html.push_str("</body></html>\n");
    Ok(html)
}

/// Render and write the report to `path`.
pub fn write_report(path: &Path, view: &RunView) -> Result<(), Error> {
    let html = render_html(view)?;
    std::fs::write(path, html).map_err(|source| Error::Write { path: path.to_path_buf(), source })
}

const CSS: &str = "body{font-family:sans-serif;margin:1.5em;color:#222;max-width:1100px}\
table{border-collapse:collapse;margin:.5em 0 1.2em}td,th{border:1px solid #ccc;padding:.25em .6em;text-align:right}\
th{background:#f2f2f2}td.l,th.l{text-align:left}.weak{background:#fdd;font-weight:bold}\
.note{color:#666}figure{margin:0 0 1.5em}figcaption{color:#555;font-size:.9em}";

/// Fills `data-rendered-*` attributes from the laid-out charts (what a headless browser test
/// reads back): the width of each chart's SVG and of the hashrate line as drawn.
const SCRIPT: &str = "<script>(function(){\
document.querySelectorAll('figure.chart').forEach(function(f){\
var s=f.querySelector('svg');if(!s)return;var r=s.getBoundingClientRect();\
f.dataset.renderedWidth=Math.round(r.width);f.dataset.renderedHeight=Math.round(r.height);\
var best=null;f.querySelectorAll('polyline').forEach(function(p){if(!best||p.points.numberOfItems>best.points.numberOfItems)best=p;});\
if(best){f.dataset.lineWidth=Math.round(best.getBBox().width);f.dataset.linePoints=best.points.numberOfItems;}});\
document.body.dataset.reportReady='1';})();</script>\n";

fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '&' => out.push_str("&amp;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// Hashes per second with an SI prefix ("41.20 MH/s", "950 H/s"): the one rate formatter of
/// the report, the status lines and every command's output.
pub fn fmt_rate(hs: f64) -> String {
    let (scale, unit) = rate_unit(hs);
    if scale == 1.0 {
        return format!("{hs:.0} {unit}");
    }
    format!("{:.2} {unit}", hs / scale)
}

fn rate_unit(hs: f64) -> (f64, &'static str) {
    const UNITS: [(f64, &str); 7] =
        [(1e18, "EH/s"), (1e15, "PH/s"), (1e12, "TH/s"), (1e9, "GH/s"), (1e6, "MH/s"), (1e3, "kH/s"), (1.0, "H/s")];
    for (scale, unit) in UNITS {
        if hs.abs() >= scale {
            return (scale, unit);
        }
    }
    (1.0, "H/s")
}

fn row(html: &mut String, name: &str, value: &str) {
    let _ = writeln!(html, "<tr><th class=\"l\">{}</th><td class=\"l\">{}</td></tr>", esc(name), esc(value));
}

fn summary(html: &mut String, v: &RunView) {
    html.push_str("<h2>Summary</h2>\n<table id=\"summary\">\n");
    let kinds: Vec<String> = v.devices.iter().map(|d| format!("{} ({})", d.kind, d.kernel)).collect();
    row(html, "Backend (kernel)", &if kinds.is_empty() { "none".into() } else { kinds.join(", ") });
    row(html, "Duration", &format!("{:.1} s", v.elapsed_s));
    let estimated = v.devices.iter().any(|d| d.estimated);
    let rate = match v.hashrate_ci {
        Some(ci) => format!("{} (95% CI {} - {})", fmt_rate(v.hashrate.avg), fmt_rate(ci.low), fmt_rate(ci.high)),
        None if estimated => format!("{} (estimated from nonces, no interval given)", fmt_rate(v.hashrate.avg)),
        None => format!("{} (exact hash count)", fmt_rate(v.hashrate.avg)),
    };
    row(html, "Hashrate (average)", &rate);
    row(html, "Hashes", &format!("{:.4e}", v.hashes));
    match &v.power {
        Some(p) => row(html, "Power", &format!("{:.1} W (source: {})", p.watts, p.source)),
        None => row(html, "Power", "unknown"),
    }
    match v.j_per_th {
        Some(j) => {
            let src = v.power.as_ref().map(|p| p.source.as_str()).unwrap_or("unknown");
            row(html, "Efficiency", &format!("{j:.1} J/TH (power source: {src})"))
        }
        None => row(html, "Efficiency", "unknown (no power figure)"),
    }
    row(
        html,
        "Hardware errors",
        &format!("{} of {} candidates ({:.3}%)", v.hw_errors(), v.hw_errors() + v.valid_nonces(), v.hw_error_percent()),
    );
    let s = &v.shares;
    row(html, "Shares", &format!("{} accepted, {} rejected, {} stale", s.accepted, s.rejected, s.stale));
    if let Some(l) = &v.ledger {
        let stale: Vec<String> = l.stale_by_reason.iter().map(|(r, n)| format!("{r} {n}")).collect();
        let stale = if stale.is_empty() { String::new() } else { format!(" ({})", stale.join(", ")) };
        row(
            html,
            "Share ledger",
            &format!(
                "{} found: {} accepted, {} rejected, {} stale{stale}, {} in flight; {}",
                l.found,
                l.accepted,
                l.rejected,
                l.stale,
                l.in_flight,
                if l.reconciles { "reconciles" } else { "DOES NOT RECONCILE" }
            ),
        );
    }
    if let Some(c) = &v.curtail {
        let price = c.price_usd_kwh.map_or("unknown".to_string(), |p| format!("{p} USD/kWh"));
        let above = c.threshold_usd_kwh.map_or("none".to_string(), |t| format!("{t:.4} USD/kWh"));
        row(
            html,
            "Curtailment",
            &format!(
                "{:.0} s curtailed ({} times), {:.4} USD of power not bought; price {price}, curtail above {above}, {} failed price readings",
                c.curtailed_s, c.curtailments, c.cost_avoided_usd, c.price_errors
            ),
        );
    }
    row(html, "Best share", &format!("{:.0}", v.best_share));
    row(html, "Blocks found", &v.blocks_found.to_string());
    if let Some(e) = &v.economics {
        let c = &e.currency;
        row(html, "Network difficulty", &format!("{:.4e}", e.network_difficulty));
        row(html, "Prices", &format!("coin {:.2} {c}, power {:.4} {c}/kWh", e.coin_price, e.power_price_kwh));
        row(html, "Revenue / day", &format!("{:.6} {c}", e.revenue_per_day));
        match e.cost_per_day {
            Some(cost) => {
                row(html, "Power cost / day", &format!("{cost:.6} {c}"));
                row(html, "Profit / day", &format!("{:.6} {c}", e.revenue_per_day - cost));
            }
            None => row(html, "Power cost / day", "unknown (no power figure)"),
        }
        if let Some(b) = e.break_even_power_price_kwh {
            row(html, "Break-even power price", &format!("{b:.6} {c}/kWh"));
        }
        if let Some(h) = e.hashprice_per_ph_day {
            row(html, "Hashprice", &format!("{h:.4} {c}/PH/day"));
        }
        if let Some(h) = e.break_even_hashprice_per_ph_day {
            row(html, "Break-even hashprice", &format!("{h:.4} {c}/PH/day (below it mining loses money at this power price)"));
        }
        for a in &e.alternatives {
            row(html, &format!("Alternative: {}", a.name), &format!("{:.6} {c}/day, {:.6} {c}/day after power", a.income_per_day, a.profit_per_day));
        }
        if let Some(b) = &e.best {
            let by = e.best_by_per_day.map_or(String::new(), |x| format!(", by {x:.6} {c}/day over the next"));
            row(html, "Best use", &format!("{b}{by}"));
        }
    }
    html.push_str("</table>\n");
}

fn devices_table(html: &mut String, v: &RunView) {
    if v.devices.is_empty() {
        return;
    }
    html.push_str(
        "<h2>Devices</h2>\n<table id=\"devices\"><tr><th>#</th><th class=\"l\">Name</th><th class=\"l\">Kind</th>\
         <th class=\"l\">Kernel</th><th>Hashrate</th><th>Nominal</th><th>Valid nonces</th><th>HW errors</th>\
         <th>Accepted</th><th>Rejected</th><th>Temp.</th></tr>\n",
    );
    for d in &v.devices {
        let temp = d.temperatures.iter().map(|t| t.celsius).fold(f64::NAN, f64::max);
        let _ = writeln!(
            html,
            "<tr><td>{}</td><td class=\"l\">{}</td><td class=\"l\">{}</td><td class=\"l\">{}</td><td>{}</td><td>{}</td>\
             <td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            d.id,
            esc(&d.name),
            d.kind,
            esc(&d.kernel),
            fmt_rate(d.hashrate.avg),
            d.nominal_hashrate.map(fmt_rate).unwrap_or_else(|| "-".into()),
            d.valid_nonces,
            d.hw_errors,
            d.accepted,
            d.rejected,
            if temp.is_nan() { "-".into() } else { format!("{temp:.1} °C") },
        );
    }
    html.push_str("</table>\n");
}

fn pools_table(html: &mut String, v: &RunView) {
    if v.pools.is_empty() {
        return;
    }
    html.push_str(
        "<h2>Pools</h2>\n<table id=\"pools\"><tr><th>#</th><th class=\"l\">URL</th><th class=\"l\">State</th>\
         <th>Accepted</th><th>Rejected</th><th>Stale</th><th>Difficulty</th></tr>\n",
    );
    for p in &v.pools {
        let _ = writeln!(
            html,
            "<tr><td>{}</td><td class=\"l\">{}</td><td class=\"l\">{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            p.id,
            match &p.channel {
                Some(c) => format!("{} ({} channel)", esc(&p.url), esc(c)),
                None => esc(&p.url),
            },
            p.state.as_str(),
            p.shares.accepted,
            p.shares.rejected,
            p.shares.stale,
            p.difficulty
        );
    }
    html.push_str("</table>\n");
}

fn chart_err<E: std::fmt::Display>(chart: &'static str) -> impl Fn(E) -> Error {
    move |e| Error::Chart { chart, message: e.to_string() }
}

fn hashrate_chart(v: &RunView) -> Result<String, Error> {
    let e = chart_err("hashrate");
    let max = v.samples.iter().map(|s| s.hashrate).fold(v.hashrate.avg, f64::max).max(1.0);
    let (scale, unit) = rate_unit(max);
    let t_end = v.samples.iter().map(|s| s.t_s).fold(v.elapsed_s, f64::max).max(1.0);
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (900, 340)).into_drawing_area();
        root.fill(&WHITE).map_err(&e)?;
        let mut chart = ChartBuilder::on(&root)
            .margin(12)
            .x_label_area_size(40)
            .y_label_area_size(70)
            .build_cartesian_2d(0f64..t_end, 0f64..(max / scale) * 1.1)
            .map_err(&e)?;
        chart
            .configure_mesh()
            .x_desc("seconds since start")
            .y_desc(unit)
            .light_line_style(RGBColor(235, 235, 235))
            .draw()
            .map_err(&e)?;
        chart
            .draw_series(LineSeries::new(v.samples.iter().map(|s| (s.t_s, s.hashrate / scale)), BLUE.stroke_width(2)))
            .map_err(&e)?;
        let avg = v.hashrate.avg / scale;
        chart
            .draw_series(DashedLineSeries::new([(0.0, avg), (t_end, avg)], 6, 4, RGBColor(200, 80, 0).stroke_width(1)))
            .map_err(&e)?;
        root.present().map_err(&e)?;
    }
    Ok(svg)
}

/// Points each line of the profit chart is drawn with.
const PROFIT_POINTS: usize = 41;

fn alt_color(name: &str) -> RGBColor {
    if name == "rent" { RGBColor(30, 150, 60) } else { RGBColor(200, 120, 0) }
}

fn rgb(c: RGBColor) -> String {
    format!("#{:02x}{:02x}{:02x}", c.0, c.1, c.2)
}

/// The profit-against-power-price section: a chart when the power is known, else a note.
fn profit_section(html: &mut String, e: &crate::view::Economics) -> Result<(), Error> {
    html.push_str("<h2>Profit against the electricity price</h2>\n");
    let (Some(kwh), Some(be)) = (e.energy_kwh_day(), e.break_even_power_price_kwh) else {
        html.push_str("<p class=\"note\">No chart: the power draw is unknown (give --watts or --power-cmd).</p>\n");
        return Ok(());
    };
    let c = esc(&e.currency);
    let svg = profit_chart(e, kwh, be)?.replacen("<svg ", "<svg id=\"profit-chart-svg\" ", 1);
    let series = 1 + e.alternatives.len();
    let run_profit = e.mining_profit_at(e.power_price_kwh).unwrap_or(0.0);
    let mut legend = format!("<span style=\"color:{}\">mining</span>", rgb(BLUE));
    for a in &e.alternatives {
        let _ = write!(legend, ", <span style=\"color:{}\">{}</span>", rgb(alt_color(&a.name)), esc(&a.name));
    }
    let _ = writeln!(
        html,
        "<figure id=\"profit-chart\" class=\"chart\" data-points=\"{}\" data-series=\"{series}\" data-run-price=\"{}\" \
         data-run-profit=\"{run_profit}\" data-break-even=\"{be}\">{svg}<figcaption>Profit per day ({c}) against the power \
         price ({c}/kWh): {legend}. Every use draws the same {kwh:.3} kWh a day, so the lines are parallel. Dot: this run \
         at {} {c}/kWh, {run_profit:.6} {c}/day; red ring and dashed line: mining's break-even at {be:.6} {c}/kWh.</figcaption></figure>",
        series * PROFIT_POINTS,
        e.power_price_kwh,
        e.power_price_kwh,
    );
    Ok(())
}

fn profit_chart(e: &crate::view::Economics, kwh: f64, be: f64) -> Result<String, Error> {
    let err = chart_err("profit");
    // Wide enough for this run's price, the break-even and each alternative's own break-even.
    let mut x_max = e.power_price_kwh.max(be);
    for a in &e.alternatives {
        x_max = x_max.max(a.income_per_day / kwh);
    }
    let x_max = if x_max.is_finite() && x_max > 0.0 { x_max * 1.5 } else { 0.1 };
    let xs: Vec<f64> = (0..PROFIT_POINTS).map(|i| x_max * i as f64 / (PROFIT_POINTS - 1) as f64).collect();
    let mut lines: Vec<(Vec<(f64, f64)>, RGBColor)> =
        vec![(xs.iter().map(|&x| (x, e.revenue_per_day - kwh * x)).collect(), BLUE)];
    for a in &e.alternatives {
        lines.push((xs.iter().map(|&x| (x, a.income_per_day - kwh * x)).collect(), alt_color(&a.name)));
    }
    let ys = lines.iter().flat_map(|(l, _)| l.iter().map(|p| p.1)).chain([0.0]);
    let (lo, hi) = ys.fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), y| (lo.min(y), hi.max(y)));
    let pad = ((hi - lo) * 0.08).max(1e-12);
    let run = (e.power_price_kwh, e.revenue_per_day - kwh * e.power_price_kwh);
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (900, 380)).into_drawing_area();
        root.fill(&WHITE).map_err(&err)?;
        let mut chart = ChartBuilder::on(&root)
            .margin(12)
            .x_label_area_size(40)
            .y_label_area_size(80)
            .build_cartesian_2d(0f64..x_max, (lo - pad)..(hi + pad))
            .map_err(&err)?;
        chart
            .configure_mesh()
            .x_desc(format!("power price, {}/kWh", e.currency))
            .y_desc(format!("profit, {}/day", e.currency))
            .light_line_style(RGBColor(235, 235, 235))
            .draw()
            .map_err(&err)?;
        let grey = RGBColor(150, 150, 150);
        chart.draw_series(DashedLineSeries::new([(0.0, 0.0), (x_max, 0.0)], 4, 4, grey.stroke_width(1))).map_err(&err)?;
        chart
            .draw_series(DashedLineSeries::new([(be, lo - pad), (be, hi + pad)], 6, 4, RED.stroke_width(1)))
            .map_err(&err)?;
        for (points, color) in lines {
            chart.draw_series(LineSeries::new(points, color.stroke_width(2))).map_err(&err)?;
        }
        chart.draw_series([Circle::new((be, 0.0), 6, RED.stroke_width(2))]).map_err(&err)?;
        chart.draw_series([Circle::new(run, 5, BLUE.filled())]).map_err(&err)?;
        root.present().map_err(&err)?;
    }
    Ok(svg)
}

/// Green for a core/chip doing its share, through yellow to red for one doing little.
fn health_color(ratio: f64) -> RGBColor {
    let r = ratio.clamp(0.0, 1.0);
    if r >= 0.5 {
        let t = (r - 0.5) * 2.0;
        RGBColor((230.0 - 170.0 * t) as u8, (200.0 - 10.0 * t) as u8, 60)
    } else {
        let t = r * 2.0;
        RGBColor(220, (60.0 + 140.0 * t) as u8, 60)
    }
}

fn median(mut xs: Vec<f64>) -> f64 {
    if xs.is_empty() {
        return 0.0;
    }
    xs.sort_by(f64::total_cmp);
    xs[xs.len() / 2]
}

fn chip_section(html: &mut String, d: &DeviceView) -> Result<(), Error> {
    let weak = d.weak_chips();
    let _ = write!(
        html,
        "<h2>Chip health: device {} ({})</h2>\n<p>{} chips; weak chips (estimated hashrate under half the median, \
         or over 5% hardware errors): <span id=\"weak-chips-{}\">{}</span></p>\n",
        d.id,
        esc(&d.name),
        d.chips.len(),
        d.id,
        if weak.is_empty() {
            "none".to_string()
        } else {
            weak.iter().map(|&i| d.chips[i].index.to_string()).collect::<Vec<_>>().join(", ")
        }
    );
    let (svg, cells) = chip_map(d, &weak)?;
    let _ = writeln!(
        html,
        "<figure id=\"chip-map-{}\" class=\"chart chip-map\" data-points=\"{cells}\">{svg}<figcaption>Columns: chips; \
         rows: cores (top row: the whole chip's estimated hashrate). Colour: nonces relative to the median \
         (green: at or above, red: none); weak chips outlined in red.</figcaption></figure>",
        d.id
    );
    html.push_str(
        "<table class=\"chips\"><tr><th>Chip</th><th>Nonces</th><th>HW errors</th><th>Est. hashrate</th><th>Temp.</th>\
         <th class=\"l\">Nonces per core (core:nonces)</th></tr>\n",
    );
    for (i, c) in d.chips.iter().enumerate() {
        let cls = if weak.contains(&i) { " class=\"weak\"" } else { "" };
        let cores: Vec<String> = c.cores.iter().map(|x| format!("{}:{}", x.index, x.nonces)).collect();
        let _ = writeln!(
            html,
            "<tr{cls}><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td class=\"l\"><details><summary>{} cores</summary>{}</details></td></tr>",
            c.index,
            c.nonces,
            c.hw_errors,
            fmt_rate(c.est_hashrate),
            c.temperature.map(|t| format!("{t:.1} °C")).unwrap_or_else(|| "-".into()),
            cores.len(),
            cores.join(" ")
        );
    }
    html.push_str("</table>\n");
    Ok(())
}

/// The health map: one column per chip; the top row is the chip's estimated hashrate against
/// the median chip, the rows below its cores' nonces against the median core. Returns the SVG
/// and the number of cells drawn.
fn chip_map(d: &DeviceView, weak: &[usize]) -> Result<(String, usize), Error> {
    let e = chart_err("chip health");
    let chips = d.chips.len();
    // Cores sit at their own index (a driver may list only the cores that answered).
    let cores = d.chips.iter().flat_map(|c| c.cores.iter().map(|x| x.index as usize + 1)).max().unwrap_or(0);
    let rows = cores + 1;
    let chip_median = median(d.chips.iter().map(|c| c.est_hashrate).collect()).max(f64::MIN_POSITIVE);
    let core_median =
        median(d.chips.iter().flat_map(|c| c.cores.iter().map(|x| x.nonces as f64)).collect()).max(f64::MIN_POSITIVE);
    let width = (100 + chips * 36).clamp(420, 1400) as u32;
    let height = (90 + rows * 26).clamp(200, 900) as u32;
    let mut svg = String::new();
    let cells;
    {
        let root = SVGBackend::with_string(&mut svg, (width, height)).into_drawing_area();
        root.fill(&WHITE).map_err(&e)?;
        let mut chart = ChartBuilder::on(&root)
            .margin(10)
            .x_label_area_size(35)
            .y_label_area_size(50)
            .build_cartesian_2d(0f64..chips as f64, 0f64..rows as f64)
            .map_err(&e)?;
        chart
            .configure_mesh()
            .disable_mesh()
            .x_desc("chip")
            .y_desc("core (top: chip)")
            .x_label_formatter(&|x| if x.fract() == 0.0 { format!("{}", *x as i64) } else { String::new() })
            .y_label_formatter(&|y| if y.fract() == 0.0 { format!("{}", *y as i64) } else { String::new() })
            .draw()
            .map_err(&e)?;
        let mut rects = Vec::with_capacity(chips * rows);
        for (i, c) in d.chips.iter().enumerate() {
            let x = i as f64;
            let top = rows as f64;
            rects.push(Rectangle::new(
                [(x + 0.05, top - 0.95), (x + 0.95, top - 0.05)],
                health_color(c.est_hashrate / chip_median).filled(),
            ));
            for core in &c.cores {
                let y = (cores - 1 - core.index as usize) as f64;
                rects.push(Rectangle::new(
                    [(x + 0.05, y + 0.05), (x + 0.95, y + 0.95)],
                    health_color(core.nonces as f64 / core_median).filled(),
                ));
            }
        }
        cells = rects.len();
        chart.draw_series(rects).map_err(&e)?;
        chart
            .draw_series(weak.iter().map(|&i| {
                let x = i as f64;
                Rectangle::new([(x, 0.0), (x + 1.0, rows as f64)], RED.stroke_width(2))
            }))
            .map_err(&e)?;
        root.present().map_err(&e)?;
    }
    Ok((svg, cells))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::RunMode;
    use crate::view::{CurtailView, LedgerView};

    #[test]
    fn rate_units_scale() {
        assert_eq!(fmt_rate(1.5e12), "1.50 TH/s");
        assert_eq!(fmt_rate(950.0), "950 H/s");
        assert_eq!(fmt_rate(2.5e18), "2.50 EH/s");
        assert_eq!(fmt_rate(0.0), "0 H/s");
    }

    #[test]
    fn the_ledger_and_curtailment_have_rows_of_their_own() {
        let mut v = RunView { mode: RunMode::Mine, ..Default::default() };
        v.ledger = Some(LedgerView { found: 5, accepted: 3, rejected: 1, stale: 1, in_flight: 0, reconciles: true, ..Default::default() });
        v.curtail = Some(CurtailView { curtailed_s: 42.0, curtailments: 2, cost_avoided_usd: 0.125, price_errors: 1, ..Default::default() });
        let html = render_html(&v).unwrap();
        assert!(html.contains("5 found: 3 accepted, 1 rejected, 1 stale, 0 in flight; reconciles"), "{html}");
        assert!(html.contains("42 s curtailed (2 times), 0.1250 USD of power not bought"), "{html}");
    }

    #[test]
    fn html_escapes_names() {
        assert_eq!(esc("<a href='x'>&"), "&lt;a href=&#39;x&#39;&gt;&amp;");
    }
}
