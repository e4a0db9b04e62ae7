//! `hashrig econ` run as a real binary: the worked example, a table of hand-computed cases,
//! `--json`, `--from` a saved bench, and every kind of bad input (exit 2, naming the flag).

use assert_cmd::Command;
use serde_json::Value;

fn hashrig() -> Command {
    Command::cargo_bin("hashrig").expect("the hashrig binary is built")
}

fn econ_json(args: &[&str]) -> Value {
    let out = hashrig().arg("econ").args(args).arg("--json").output().unwrap();
    assert!(out.status.success(), "econ {args:?} failed: {}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).expect("econ --json prints one JSON object")
}

fn econ_text(args: &[&str]) -> String {
    let out = hashrig().arg("econ").args(args).output().unwrap();
    assert!(out.status.success(), "econ {args:?} failed: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap()
}

fn f(v: &Value, path: &str) -> f64 {
    let mut at = v;
    for key in path.split('.') {
        at = &at[key];
    }
    at.as_f64().unwrap_or_else(|| panic!("{path} is not a number in {v}"))
}

/// `got` equals `want` to `digits` significant figures.
fn sig_eq(got: f64, want: f64, digits: i32) -> bool {
    if want == 0.0 {
        return got.abs() < 1e-12;
    }
    let scale = 10f64.powi(digits - 1 - want.abs().log10().floor() as i32);
    (got * scale).round() == (want * scale).round()
}

#[test]
fn worked_example_19_j_per_th_at_38_usd_per_ph_day_breaks_even_at_0_0833_usd_per_kwh() {
    // Per TH/s (--efficiency alone): 0.001 PH/s * 38 USD/PH/day = 0.038 USD/day;
    // 19 W * 24 h = 0.456 kWh/day; 0.038 / 0.456 = 0.08333 USD/kWh.
    let v = econ_json(&["--efficiency", "19", "--hashprice", "38", "--power-price", "0.05"]);
    assert_eq!(v["per_ths"], true);
    assert!(sig_eq(f(&v, "mining.revenue_usd_day"), 0.038, 4), "{v}");
    assert!(sig_eq(f(&v, "energy_kwh_day"), 0.456, 4), "{v}");
    assert!(sig_eq(f(&v, "break_even_power_price_usd_kwh"), 0.08333, 4), "{v}");
    // And the text says so, units on each figure.
    let text = econ_text(&["--efficiency", "19", "--hashprice", "38", "--power-price", "0.05"]);
    assert!(text.contains("per TH/s"), "{text}");
    assert!(text.contains("revenue 0.03800 USD/day"), "{text}");
    assert!(text.contains("0.4560 kWh/day"), "{text}");
    assert!(text.contains("power price 0.08333 USD/kWh"), "{text}");
}

/// One hand-computed case: the flags, then (JSON field, value by hand) pairs, each checked to
/// 4 significant figures, and the winner.
struct Case {
    name: &'static str,
    args: &'static [&'static str],
    expect: &'static [(&'static str, f64)],
    best: &'static str,
}

const CASES: &[Case] = &[
    Case {
        // The worked example at 0.05 USD/kWh: cost 0.456 * 0.05 = 0.0228 USD/day, profit
        // 0.038 - 0.0228 = 0.0152; hashprice floor 0.0228 / 0.001 PH/s = 22.8 USD/PH/day.
        name: "19 J/TH per TH/s at 38 USD/PH/day, 0.05 USD/kWh",
        args: &["--efficiency", "19", "--hashprice", "38", "--power-price", "0.05"],
        expect: &[
            ("mining.revenue_usd_day", 0.038),
            ("mining.power_cost_usd_day", 0.0228),
            ("mining.profit_usd_day", 0.0152),
            ("break_even_power_price_usd_kwh", 0.08333),
            ("break_even_hashprice_usd_ph_day", 22.8),
            ("best_by_usd_day", 0.0152),
        ],
        best: "mining",
    },
    Case {
        // S19 XP Hydro class, 255 TH/s at 5304 W: 5304 / 255 = 20.8 J/TH.
        // Revenue 0.255 PH/s * 38 = 9.69 USD/day. Energy 5.304 kW * 24 h = 127.296 kWh/day.
        // Cost at 0.06: 7.63776 USD/day; profit 9.69 - 7.63776 = 2.05224 USD/day.
        // Break-even 9.69 / 127.296 = 0.07612 USD/kWh; hashprice floor 7.63776 / 0.255 = 29.952.
        // Selling the power at 0.08: 127.296 * 0.08 = 10.18368 USD/day, minus the 7.63776 paid
        // for it = 2.54592; that beats mining by 2.54592 - 2.05224 = 0.49368 USD/day.
        name: "S19 XP Hydro class, 0.06 USD/kWh, power sells for 0.08",
        args: &["--hashrate", "255T", "--watts", "5304", "--hashprice", "38", "--power-price", "0.06", "--power-sale", "0.08"],
        expect: &[
            ("j_per_th", 20.8),
            ("energy_kwh_day", 127.296),
            ("mining.revenue_usd_day", 9.69),
            ("mining.power_cost_usd_day", 7.63776),
            ("mining.profit_usd_day", 2.05224),
            ("break_even_power_price_usd_kwh", 0.07612),
            ("break_even_hashprice_usd_ph_day", 29.952),
            ("sell_power.revenue_usd_day", 10.18368),
            ("sell_power.profit_usd_day", 2.54592),
            ("sell_power.over_mining_usd_day", 0.49368),
            ("best_by_usd_day", 0.49368),
        ],
        best: "sell_power",
    },
    Case {
        // The same machine at 0.04 USD/kWh (TH/s written with its full unit): cost 127.296 *
        // 0.04 = 5.09184, profit 9.69 - 5.09184 = 4.59816 USD/day; hashprice floor
        // 5.09184 / 0.255 = 19.968. Selling at 0.05 nets 127.296 * 0.01 = 1.27296, so mining
        // wins by 4.59816 - 1.27296 = 3.3252 USD/day.
        name: "S19 XP Hydro class, 0.04 USD/kWh, power sells for 0.05",
        args: &["--hashrate", "255TH/s", "--watts", "5304", "--hashprice", "38", "--power-price", "0.04", "--power-sale", "0.05"],
        expect: &[
            ("mining.profit_usd_day", 4.59816),
            ("break_even_hashprice_usd_ph_day", 19.968),
            ("sell_power.profit_usd_day", 1.27296),
            ("best_by_usd_day", 3.3252),
        ],
        best: "mining",
    },
    Case {
        // An H100: 7.34 GH/s (the CUDA figure in crates/hasher-gpu/REFERENCE.md), 700 W (its rated
        // board power, what a rented card draws; hashing drew about 415 W).
        // Revenue 7.34e-6 PH/s * 38 = 2.7892e-4 USD/day. Energy 0.7 kW * 24 h = 16.8 kWh/day,
        // 1.344 USD/day at 0.08. Mining profit 2.7892e-4 - 1.344 = -1.343721 USD/day.
        // Break-even 2.7892e-4 / 16.8 = 1.660e-5 USD/kWh; floor 1.344 / 7.34e-6 = 183,106 USD/PH/day.
        // Rent at 2 USD/hour: 48 USD/day (48 / 16.8 = 2.857 USD/kWh), 46.656 after power.
        // Selling the power at 0.10: 1.68 USD/day, 0.336 after power.
        // Rent wins over selling by 46.656 - 0.336 = 46.32 USD/day.
        name: "H100 rented at 2 USD/hour against selling its power",
        args: &["--hashrate", "7.34G", "--watts", "700", "--hashprice", "38", "--power-price", "0.08", "--rent", "2.00", "--power-sale", "0.10"],
        expect: &[
            ("mining.revenue_usd_day", 2.7892e-4),
            ("mining.profit_usd_day", -1.343721),
            ("break_even_power_price_usd_kwh", 1.660e-5),
            ("break_even_hashprice_usd_ph_day", 183_106.0),
            ("rent.revenue_usd_day", 48.0),
            ("rent.revenue_usd_kwh", 2.857),
            ("rent.profit_usd_day", 46.656),
            ("sell_power.revenue_usd_day", 1.68),
            ("sell_power.profit_usd_day", 0.336),
            ("best_by_usd_day", 46.32),
        ],
        best: "rent",
    },
    Case {
        // Difficulty and coin price: 1.5e14, 100,000 USD/BTC, 3.125 + 0.025 BTC a block.
        // Hashprice: 1e15 * 86400 / (1.5e14 * 2^32) = 576000 / 4294967296 = 1.3411e-4 blocks per
        // PH/s per day; * 3.15 BTC * 100,000 USD = 42.24 USD/PH/day.
        // 255 TH/s: 0.255 * 42.2448 = 10.77 USD/day; power 7.63776 at 0.06; profit 3.135;
        // break-even 10.7724 / 127.296 = 0.08462 USD/kWh.
        name: "S19 XP Hydro class from difficulty 1.5e14 and 100,000 USD/BTC with fees",
        args: &[
            "--hashrate", "255T", "--watts", "5304", "--difficulty", "1.5e14", "--btc-price", "100000", "--fees-btc", "0.025", "--power-price",
            "0.06",
        ],
        expect: &[
            ("hashprice_usd_ph_day", 42.24),
            ("mining.revenue_usd_day", 10.77),
            ("mining.profit_usd_day", 3.135),
            ("break_even_power_price_usd_kwh", 0.08462),
            ("network.difficulty", 1.5e14),
            ("network.subsidy_btc", 3.125),
            ("network.fees_btc", 0.025),
        ],
        best: "mining",
    },
    Case {
        // --watts with --efficiency: the hashrate follows, 5304 / 20.8 = 255 TH/s, so the same
        // figures as --hashrate 255T --watts 5304 (revenue 9.69 USD/day at 38 USD/PH/day).
        // At 0.10 USD/kWh it loses 12.7296 - 9.69 = 3.0396 USD/day: switching off is best.
        name: "watts and efficiency give the hashrate; a loss means off",
        args: &["--watts", "5304", "--efficiency", "20.8", "--hashprice", "38", "--power-price", "0.10"],
        expect: &[("hashrate_hs", 255e12), ("mining.revenue_usd_day", 9.69), ("mining.profit_usd_day", -3.0396), ("best_by_usd_day", 3.0396)],
        best: "off",
    },
];

#[test]
fn hand_computed_cases_agree_to_four_significant_figures() {
    for case in CASES {
        let v = econ_json(case.args);
        for (path, want) in case.expect {
            let got = f(&v, path);
            assert!(sig_eq(got, *want, 4), "{}: {path} = {got}, by hand {want}\n{v}", case.name);
        }
        assert_eq!(v["best"], case.best, "{}: {v}", case.name);
    }
}

#[test]
fn json_has_every_figure_with_its_unit_in_the_name() {
    let v = econ_json(&["--hashrate", "255T", "--watts", "5304", "--hashprice", "38", "--power-price", "0.06", "--rent", "1.5", "--power-sale", "0.08"]);
    for field in [
        "per_ths",
        "machine_source",
        "hashprice_source",
        "network",
        "hashrate_hs",
        "power_w",
        "j_per_th",
        "energy_kwh_day",
        "hashprice_usd_ph_day",
        "power_price_usd_kwh",
        "rent_usd_hour",
        "power_sale_usd_kwh",
        "mining",
        "break_even_power_price_usd_kwh",
        "break_even_hashprice_usd_ph_day",
        "rent",
        "sell_power",
        "best",
        "runner_up",
        "best_by_usd_day",
    ] {
        assert!(v.get(field).is_some(), "missing {field}: {v}");
    }
    for use_ in ["mining", "rent", "sell_power"] {
        for field in ["revenue_usd_day", "revenue_usd_kwh", "power_cost_usd_day", "profit_usd_day", "profit_usd_kwh", "over_mining_usd_day"] {
            assert!(v[use_][field].is_number(), "missing {use_}.{field}: {v}");
        }
    }
    assert_eq!(v["hashprice_source"], "given");
    assert!(v["network"].is_null());
    assert_eq!(v["machine_source"], "declared: --hashrate, --watts");
    // Without alternatives they are null, and the runner-up is switching off.
    let v = econ_json(&["--hashrate", "255T", "--watts", "5304", "--hashprice", "38", "--power-price", "0.06"]);
    assert!(v["rent"].is_null() && v["sell_power"].is_null() && v["rent_usd_hour"].is_null(), "{v}");
    assert_eq!(v["runner_up"], "off");
}

#[test]
fn text_names_the_unit_of_every_figure() {
    let text = econ_text(&["--hashrate", "7.34G", "--watts", "700", "--hashprice", "38", "--power-price", "0.08", "--rent", "2", "--power-sale", "0.10"]);
    for want in [
        "7.34 GH/s at 700.0 W",
        "J/TH",
        "16.80 kWh/day",
        "38 USD/PH/day",
        "power price  0.08 USD/kWh",
        "revenue 0.0002789 USD/day - power 1.344 USD/day = profit -1.344 USD/day",
        "power price 1.660e-5 USD/kWh",
        "hashprice 183106 USD/PH/day",
        "rent         2 USD/hour = 48.00 USD/day (2.857 USD/kWh)",
        "profit 46.66 USD/day",
        "sell power   0.1 USD/kWh x 16.80 kWh/day = 1.680 USD/day",
        "best         rent, by 46.32 USD/day over sell power",
    ] {
        assert!(text.contains(want), "expected {want:?} in\n{text}");
    }
    // Every line with a figure carries a unit.
    for line in text.lines() {
        if line.chars().any(|c| c.is_ascii_digit()) {
            assert!(["USD", "W", "kWh", "H/s", "J/TH"].iter().any(|u| line.contains(u)), "no unit on: {line}");
        }
    }
}

#[test]
fn from_reads_a_saved_bench_and_takes_its_power_or_the_one_given() {
    let dir = tempfile::tempdir().unwrap();
    // A bench of 100 TH/s at 2000 W (20 J/TH), in the shape `hashrig bench --json` writes.
    let with_power = dir.path().join("bench.json");
    std::fs::write(
        &with_power,
        r#"{"backend":"emu:bm1370x4","kernel":"bm1370","threads":null,"hashes":1000000000000000,"seconds":10.0,
           "hashrate":1e14,"hashrate_ci95":[9.9e13,1.01e14],"power_w":2000.0,"power_source":"command: meter","energy_j":20000.0,
           "j_per_th":20.0,"hw_errors":0,"shares":3,"economics":null,"power_notes":[]}"#,
    )
    .unwrap();
    let from = with_power.to_str().unwrap();
    // 0.1 PH/s * 40 = 4 USD/day; 2 kW * 24 h = 48 kWh/day, 2.4 USD/day at 0.05; profit 1.6;
    // break-even 4 / 48 = 0.08333 USD/kWh.
    let v = econ_json(&["--from", from, "--hashprice", "40", "--power-price", "0.05"]);
    assert!(sig_eq(f(&v, "hashrate_hs"), 1e14, 6) && sig_eq(f(&v, "power_w"), 2000.0, 6), "{v}");
    assert!(sig_eq(f(&v, "mining.profit_usd_day"), 1.6, 4), "{v}");
    assert!(sig_eq(f(&v, "break_even_power_price_usd_kwh"), 0.08333, 4), "{v}");
    let source = v["machine_source"].as_str().unwrap();
    assert!(source.contains("bench.json") && source.contains("emu:bm1370x4") && source.contains("command: meter"), "{source}");
    // --watts replaces the bench's power: 3 kW is 72 kWh/day, 3.6 USD/day; profit 0.4.
    let v = econ_json(&["--from", from, "--watts", "3000", "--hashprice", "40", "--power-price", "0.05"]);
    assert!(sig_eq(f(&v, "mining.profit_usd_day"), 0.4, 4), "{v}");
    assert!(v["machine_source"].as_str().unwrap().contains("--watts"), "{v}");

    // A bench without a meter: power_w null. It needs --watts or --efficiency.
    let no_power = dir.path().join("nopower.json");
    std::fs::write(&no_power, r#"{"backend":"cpu","hashrate":2.5e7,"power_w":null,"power_source":"unknown","j_per_th":null}"#).unwrap();
    let no_power = no_power.to_str().unwrap();
    let out = hashrig().args(["econ", "--from", no_power, "--hashprice", "40", "--power-price", "0.05"]).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("--from") && stderr.contains("no power figure") && stderr.contains("--watts"), "{stderr}");
    // With --efficiency the watts follow: 25 MH/s at 2e6 J/TH = 50 W.
    let v = econ_json(&["--from", no_power, "--efficiency", "2e6", "--hashprice", "40", "--power-price", "0.05"]);
    assert!(sig_eq(f(&v, "power_w"), 50.0, 6), "{v}");
}

#[test]
fn from_reads_what_hashrig_bench_json_really_writes() {
    let dir = tempfile::tempdir().unwrap();
    let out = hashrig().args(["bench", "--duration", "0.5", "--threads", "1", "--watts", "30", "--json"]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let bench: Value = serde_json::from_slice(&out.stdout).unwrap();
    let path = dir.path().join("bench.json");
    std::fs::write(&path, &out.stdout).unwrap();
    let v = econ_json(&["--from", path.to_str().unwrap(), "--hashprice", "40", "--power-price", "0.05"]);
    assert_eq!(f(&v, "hashrate_hs"), f(&bench, "hashrate"));
    assert_eq!(f(&v, "power_w"), 30.0);
    // A CPU at 30 W earns far less than its power costs (0.72 kWh/day, 0.036 USD/day).
    assert!(sig_eq(f(&v, "mining.power_cost_usd_day"), 0.036, 4), "{v}");
    assert_eq!(v["best"], "off");
}

#[test]
fn bad_input_exits_2_naming_the_flag_and_the_problem() {
    let dir = tempfile::tempdir().unwrap();
    let not_json = dir.path().join("notes.txt");
    std::fs::write(&not_json, "hashrate: lots").unwrap();
    let not_bench = dir.path().join("other.json");
    std::fs::write(&not_bench, r#"{"hashes": 5}"#).unwrap();
    let not_json = not_json.to_str().unwrap().to_owned();
    let not_bench = not_bench.to_str().unwrap().to_owned();
    let missing = dir.path().join("missing.json").to_str().unwrap().to_owned();

    const M: [&str; 4] = ["--hashrate", "255T", "--watts", "5304"];
    const P: [&str; 4] = ["--hashprice", "38", "--power-price", "0.05"];
    let with = |extra: &[&str]| -> Vec<String> { M.iter().chain(extra).map(|s| s.to_string()).collect() };
    let machine = |m: &[&str]| -> Vec<String> { m.iter().chain(P.iter()).map(|s| s.to_string()).collect() };
    let cases: Vec<(Vec<String>, Vec<&str>)> = vec![
        // Negative and non-numeric prices.
        (with(&["--hashprice", "38", "--power-price", "-0.05"]), vec!["--power-price", "negative"]),
        (with(&["--hashprice=-38", "--power-price", "0.05"]), vec!["--hashprice", "negative"]),
        (with(&["--hashprice", "38", "--power-price", "cheap"]), vec!["--power-price", "`cheap` is not a number"]),
        (with(&["--hashprice", "$38", "--power-price", "0.05"]), vec!["--hashprice", "currency"]),
        (with(&["--hashprice", "38", "--power-price", "0,05"]), vec!["--power-price", "dot for decimals"]),
        (with(&["--hashprice", "38", "--power-price", "nan"]), vec!["--power-price", "not a number"]),
        (with(&["--hashprice", "38", "--power-price", "0.05", "--rent", "-2"]), vec!["--rent", "negative"]),
        (with(&["--hashprice", "38", "--power-price", "0.05", "--power-sale", "lots"]), vec!["--power-sale", "not a number"]),
        (with(&["--difficulty", "1e14", "--btc-price", "-5", "--power-price", "0.05"]), vec!["--btc-price", "negative"]),
        (with(&["--difficulty", "0", "--btc-price", "100000", "--power-price", "0.05"]), vec!["--difficulty", "above zero"]),
        (with(&["--difficulty", "1e14", "--btc-price", "100000", "--fees-btc", "x", "--power-price", "0.05"]), vec!["--fees-btc", "not a number"]),
        // A unit given wrong: a bare hashrate at a miner's wattage, a wattage with a suffix.
        (machine(&["--hashrate", "255", "--watts", "5304"]), vec!["--hashrate", "lacks its unit suffix", "255T"]),
        (machine(&["--hashrate", "255T", "--watts", "5.3k"]), vec!["--watts", "plain number", "5300"]),
        (machine(&["--hashrate", "255T", "--watts", "5304W"]), vec!["--watts", "plain number", "5304"]),
        (machine(&["--efficiency", "19J/TH"]), vec!["--efficiency", "plain number", "19"]),
        // Unknown suffixes.
        (machine(&["--hashrate", "255X", "--watts", "5304"]), vec!["--hashrate", "unknown unit suffix `X`"]),
        (machine(&["--hashrate", "255t", "--watts", "5304"]), vec!["--hashrate", "did you mean `T`"]),
        (machine(&["--hashrate", "lots", "--watts", "5304"]), vec!["--hashrate", "not a number"]),
        (machine(&["--hashrate", "0T", "--watts", "5304"]), vec!["--hashrate", "above zero"]),
        (machine(&["--hashrate=-5T", "--watts", "5304"]), vec!["--hashrate", "above zero"]),
        (machine(&["--hashrate", "-5", "--watts", "5304"]), vec!["--hashrate", "above zero"]),
        (machine(&["--hashrate", "255T", "--watts", "0"]), vec!["--watts", "above zero"]),
        (machine(&["--efficiency", "0"]), vec!["--efficiency", "above zero"]),
        // Contradictions.
        (machine(&["--hashrate", "255T", "--watts", "5304", "--efficiency", "19"]), vec!["--efficiency", "--hashrate", "--watts", "two of the three"]),
        (with(&["--hashprice", "38", "--difficulty", "1e14", "--btc-price", "1e5", "--power-price", "0.05"]), vec!["--hashprice", "--difficulty"]),
        (machine(&["--from", &not_bench, "--hashrate", "255T"]), vec!["--from", "--hashrate"]),
        (machine(&["--from", &not_bench, "--watts", "1", "--efficiency", "1"]), vec!["--watts", "--efficiency"]),
        // Missing inputs.
        (machine(&[]), vec!["no machine", "--hashrate", "--efficiency", "--from"]),
        (machine(&["--hashrate", "255T"]), vec!["--hashrate", "--watts"]),
        (machine(&["--watts", "5304"]), vec!["--watts", "--hashrate"]),
        (with(&["--power-price", "0.05"]), vec!["--hashprice", "--difficulty"]),
        (with(&["--hashprice", "38"]), vec!["--power-price"]),
        (with(&["--difficulty", "1e14", "--power-price", "0.05"]), vec!["--difficulty", "--btc-price"]),
        (with(&["--btc-price", "1e5", "--power-price", "0.05"]), vec!["--btc-price", "--difficulty"]),
        (with(&["--fees-btc", "0.1", "--power-price", "0.05"]), vec!["--fees-btc", "--difficulty"]),
        // A --from file that is no bench.
        (machine(&["--from", &missing]), vec!["--from", "cannot read"]),
        (machine(&["--from", &not_json]), vec!["--from", "not JSON"]),
        (machine(&["--from", &not_bench]), vec!["--from", "`hashrate`"]),
    ];
    for (args, wants) in &cases {
        let out = hashrig().arg("econ").args(args).output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(out.stdout.is_empty(), "{args:?}: printed figures anyway");
        for want in wants {
            assert!(stderr.contains(want), "{args:?}: expected {want:?} in {stderr}");
        }
    }
}

#[test]
fn a_bare_hashrate_is_taken_as_h_per_s_when_it_is_plausible_or_marked() {
    // 25 MH/s written out at 30 W is 1.2e6 J/TH: past the line, so the suffix is asked for...
    let out = hashrig().args(["econ", "--hashrate", "25000000", "--watts", "30", "--hashprice", "40", "--power-price", "0.05"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("25000000H"), "{}", String::from_utf8_lossy(&out.stderr));
    // ...and given with H (or M) it is taken as written.
    for rate in ["25000000H", "25M", "25 MH/s"] {
        let v = econ_json(&["--hashrate", rate, "--watts", "30", "--hashprice", "40", "--power-price", "0.05"]);
        assert_eq!(f(&v, "hashrate_hs"), 25e6, "{rate}");
    }
    // A bare rate that makes sense at its wattage passes: 1e14 H/s at 2000 W is 20 J/TH.
    let v = econ_json(&["--hashrate", "1e14", "--watts", "2000", "--hashprice", "40", "--power-price", "0.05"]);
    assert!(sig_eq(f(&v, "j_per_th"), 20.0, 6), "{v}");
}
