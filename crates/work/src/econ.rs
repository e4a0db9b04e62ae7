//! Mining economics: what a hashrate earns at a network difficulty, what its power costs, the
//! electricity price at which it breaks even, and the hashprice (USD per PH/s per day).
//!
//! Expected blocks per second for hashrate `H` at difficulty `D` are `H / (D * 2^32)`; each block
//! pays the subsidy (3.125 BTC since the April 2024 halving) plus fees. No pool fee, no variance:
//! these are expectations, and the report says so.
//!
//! [`decide`] weighs mining against the other uses of the same machine and power: renting the
//! machine out by the hour, selling the power, or switching off. [`parse_hashrate`] and
//! [`parse_amount`] read the figures a user types (`255T`, `0.05`) and say what is wrong with
//! one that is not a figure.
//!
//! What it is not for: fetching live prices or difficulty, or pausing devices.

/// The block subsidy since the fourth halving (block 840,000, April 2024), in BTC.
pub const BLOCK_SUBSIDY_BTC: f64 = 3.125;

const SECONDS_PER_DAY: f64 = 86_400.0;
const TWO_32: f64 = 4_294_967_296.0;

/// Why economics could not be computed.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum EconError {
    #[error("{what} must be a finite number >= 0, got {value}")]
    Negative { what: &'static str, value: f64 },
    #[error("network difficulty must be above zero, got {0}")]
    Difficulty(f64),
    #[error("{what} must be a finite number above zero, got {value}")]
    NotPositive { what: &'static str, value: f64 },
    /// Typed input that is no number at all (`abc`, `inf`, `$0.05`).
    #[error("`{input}` is not a number{hint}")]
    NotANumber { input: String, hint: &'static str },
    /// Typed input that is a negative number where only zero or more makes sense.
    #[error("`{input}` is negative: give a number >= 0")]
    NegativeInput { input: String },
    /// A unit or suffix after a number where a plain number is wanted (`5.3k`, `5304W`).
    #[error("`{input}` carries a unit or suffix: write a plain number here, such as {suggest}{hint}")]
    UnexpectedSuffix { input: String, suggest: String, hint: &'static str },
    /// A hashrate whose suffix is not an SI prefix (`255X`, `255t`).
    #[error("`{input}` has an unknown unit suffix `{suffix}`: {hint}")]
    UnknownSuffix { input: String, suffix: String, hint: String },
}

/// What the user tells us and what we measured.
#[derive(Clone, Debug, PartialEq)]
pub struct EconInputs {
    /// Hashes per second.
    pub hashrate: f64,
    /// Average power draw in watts, when known (else no cost figures).
    pub watts: Option<f64>,
    /// Network difficulty (difficulty-1 units).
    pub difficulty: f64,
    /// USD per BTC.
    pub btc_price_usd: f64,
    /// USD per kWh.
    pub power_price_usd_kwh: f64,
    /// Average fees per block in BTC (0 if not given).
    pub fees_btc: f64,
    /// Subsidy per block in BTC.
    pub subsidy_btc: f64,
}

/// The figures, per day unless named otherwise.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct Economics {
    pub difficulty: f64,
    pub btc_price_usd: f64,
    pub power_price_usd_kwh: f64,
    pub subsidy_btc: f64,
    pub fees_btc: f64,
    /// Expected BTC per day.
    pub btc_per_day: f64,
    /// Expected revenue, USD per day.
    pub revenue_usd_day: f64,
    /// Power cost, USD per day (null when the power is unknown).
    pub cost_usd_day: Option<f64>,
    /// Revenue minus power cost (null when the power is unknown).
    pub profit_usd_day: Option<f64>,
    /// The electricity price at which revenue equals power cost (null when power is unknown).
    pub break_even_usd_kwh: Option<f64>,
    /// USD per PH/s per day: what any 1 PH/s earns at this difficulty and price.
    pub hashprice_usd_ph_day: f64,
}

fn check(what: &'static str, value: f64) -> Result<f64, EconError> {
    if value.is_finite() && value >= 0.0 { Ok(value) } else { Err(EconError::Negative { what, value }) }
}

/// Compute the figures.
pub fn economics(inp: &EconInputs) -> Result<Economics, EconError> {
    let hashrate = check("hashrate", inp.hashrate)?;
    let btc_price = check("BTC price", inp.btc_price_usd)?;
    let power_price = check("power price", inp.power_price_usd_kwh)?;
    let fees = check("fees", inp.fees_btc)?;
    let subsidy = check("subsidy", inp.subsidy_btc)?;
    let watts = inp.watts.map(|w| check("power", w)).transpose()?;
    if !(inp.difficulty.is_finite() && inp.difficulty > 0.0) {
        return Err(EconError::Difficulty(inp.difficulty));
    }
    let reward = subsidy + fees;
    let per_hash_day = SECONDS_PER_DAY / (inp.difficulty * TWO_32) * reward;
    let btc_per_day = hashrate * per_hash_day;
    let revenue = btc_per_day * btc_price;
    let kwh_day = watts.map(|w| w * 24.0 / 1000.0);
    let cost = kwh_day.map(|k| k * power_price);
    Ok(Economics {
        difficulty: inp.difficulty,
        btc_price_usd: btc_price,
        power_price_usd_kwh: power_price,
        subsidy_btc: subsidy,
        fees_btc: fees,
        btc_per_day,
        revenue_usd_day: revenue,
        cost_usd_day: cost,
        profit_usd_day: cost.map(|c| revenue - c),
        break_even_usd_kwh: kwh_day.and_then(|k| (k > 0.0).then(|| revenue / k)),
        hashprice_usd_ph_day: 1e15 * per_hash_day * btc_price,
    })
}

/// USD per PH/s per day at a network difficulty and coin price, for a block reward of
/// `subsidy_btc + fees_btc`: `1e15 * 86400 / (difficulty * 2^32) * reward * price`.
pub fn hashprice_from_network(difficulty: f64, btc_price_usd: f64, subsidy_btc: f64, fees_btc: f64) -> Result<f64, EconError> {
    let btc_price = check("BTC price", btc_price_usd)?;
    let subsidy = check("subsidy", subsidy_btc)?;
    let fees = check("fees", fees_btc)?;
    if !(difficulty.is_finite() && difficulty > 0.0) {
        return Err(EconError::Difficulty(difficulty));
    }
    Ok(1e15 * SECONDS_PER_DAY / (difficulty * TWO_32) * (subsidy + fees) * btc_price)
}

/// A bare hashrate (no unit) with a declared power above this many J/TH is more likely a
/// missing suffix (`255` for `255T` is 2e13 J/TH at 5304 W) than a machine, so the CLI asks for
/// the suffix past it. CPUs (1e6 to 2e7 J/TH) pass when their rate carries its unit (`25M`).
pub const IMPLAUSIBLE_J_PER_TH: f64 = 1e6;

/// A hashrate as typed.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Hashrate {
    /// Hashes per second.
    pub hs: f64,
    /// Whether it was written with a unit (`255T`, `255TH/s`, `255H`) rather than a bare number.
    pub unit_given: bool,
}

/// SI prefixes a hashrate may carry, exactly as written (`k` is lower case, the rest upper).
const PREFIXES: [(char, f64); 6] = [('k', 1e3), ('M', 1e6), ('G', 1e9), ('T', 1e12), ('P', 1e15), ('E', 1e18)];

/// Split typed input into its longest leading number and the rest (trimmed). A comma anywhere
/// is no number: `0,05` is a decimal comma or `5,304` a thousands separator, and neither is
/// guessed.
fn split_number(input: &str) -> Option<(f64, &str)> {
    let s = input.trim();
    if s.contains(',') {
        return None;
    }
    let mut ends: Vec<usize> = s.char_indices().map(|(i, _)| i).skip(1).collect();
    ends.push(s.len());
    ends.into_iter().rev().find_map(|end| s[..end].parse::<f64>().ok().map(|v| (v, s[end..].trim())))
}

/// The factor of a hashrate unit: an optional SI prefix, then nothing, `H` or `H/s`.
/// `None` when it is no such unit. `Some((1.0, false))` for no unit at all.
fn hashrate_unit(unit: &str) -> Option<(f64, bool)> {
    if unit.is_empty() {
        return Some((1.0, false));
    }
    let (factor, rest) = match PREFIXES.iter().find(|(c, _)| unit.starts_with(*c)) {
        Some(&(c, f)) => (f, &unit[c.len_utf8()..]),
        None => (1.0, unit),
    };
    matches!(rest, "" | "H" | "H/s").then_some((factor, true))
}

fn not_a_number(input: &str) -> EconError {
    let t = input.trim();
    let hint = if t.starts_with('$') || t.ends_with('$') || t.contains("USD") {
        " (leave the currency out: the flag's unit is USD)"
    } else if t.contains(',') {
        " (use a dot for decimals and no thousands separators)"
    } else {
        ""
    };
    EconError::NotANumber { input: input.to_owned(), hint }
}

/// Read a hashrate: a number with an optional SI prefix (`k`, `M`, `G`, `T`, `P`, `E`, case as
/// written) and an optional `H` or `H/s`: `255T`, `255 TH/s`, `7.3G`, `1e12`, `500H`. A bare
/// number is H/s. It must be above zero.
pub fn parse_hashrate(input: &str) -> Result<Hashrate, EconError> {
    let (value, unit) = split_number(input).ok_or_else(|| not_a_number(input))?;
    let Some((factor, unit_given)) = hashrate_unit(unit) else {
        let first = unit.chars().next().unwrap_or(' ');
        let hint = match PREFIXES.iter().find(|(c, _)| c.eq_ignore_ascii_case(&first)) {
            Some((c, _)) => format!("prefixes are case-sensitive; did you mean `{c}`? (k, M, G, T, P, E)"),
            None => "use an SI prefix k, M, G, T, P or E, optionally followed by H or H/s (255T is 255 TH/s)".to_owned(),
        };
        return Err(EconError::UnknownSuffix { input: input.to_owned(), suffix: unit.to_owned(), hint });
    };
    let hs = value * factor;
    if !(hs.is_finite() && hs > 0.0) {
        return Err(EconError::NotPositive { what: "hashrate", value: hs });
    }
    Ok(Hashrate { hs, unit_given })
}

/// Read a plain number that must be finite and >= 0: a price, a difficulty, an efficiency, a
/// wattage. Units and suffixes are refused rather than guessed (`5.3k` says to write `5300`),
/// so every flag takes its figure the same way.
pub fn parse_amount(input: &str) -> Result<f64, EconError> {
    let Some((value, rest)) = split_number(input) else {
        return Err(not_a_number(input));
    };
    if !rest.is_empty() {
        // Say what the figure would be without its suffix, scaled when that is an SI prefix
        // alone or on watts (`5.3k`, `5.3kW`; not `0.05kWh`, where the k belongs to the unit).
        let factor = PREFIXES
            .iter()
            .find(|(c, _)| rest.strip_prefix(*c).is_some_and(|unit| unit.is_empty() || unit == "W"))
            .map_or(1.0, |&(_, f)| f);
        let scaled: f64 = format!("{:.12e}", value * factor).parse().unwrap_or(value * factor);
        let hint = if rest.contains('$') || rest.contains("USD") { "; the flag's unit is USD" } else { "" };
        return Err(EconError::UnexpectedSuffix { input: input.to_owned(), suggest: format!("{scaled}"), hint });
    }
    if !value.is_finite() {
        return Err(not_a_number(input));
    }
    if value < 0.0 {
        return Err(EconError::NegativeInput { input: input.to_owned() });
    }
    Ok(value)
}

/// One machine, its prices, and the alternatives to mining with it.
#[derive(Clone, Debug, PartialEq)]
pub struct DecisionInputs {
    /// Hashes per second.
    pub hashrate_hs: f64,
    /// Power draw in watts, the same whichever use the machine is put to.
    pub power_w: f64,
    /// USD per PH/s per day.
    pub hashprice_usd_ph_day: f64,
    /// What the power costs, USD per kWh.
    pub power_price_usd_kwh: f64,
    /// What the machine rents for, USD per hour (the owner still pays for its power).
    pub rent_usd_hour: Option<f64>,
    /// What the power sells for, USD per kWh, when the machine is off and the power is sold on.
    pub power_sale_usd_kwh: Option<f64>,
}

/// What the machine and its power can be used for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Use {
    Mining,
    Rent,
    SellPower,
    /// Nothing drawn, nothing earned: what a use has to beat.
    Off,
}

impl Use {
    /// For people: "mining", "rent", "sell power", "off".
    pub fn label(self) -> &'static str {
        match self {
            Use::Mining => "mining",
            Use::Rent => "rent",
            Use::SellPower => "sell power",
            Use::Off => "off",
        }
    }
}

/// What one use brings in a day, before and after the power it takes.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct UseFigures {
    /// Income before power, USD per day.
    pub revenue_usd_day: f64,
    /// The same per kWh the machine draws: what a kWh earns in this use.
    pub revenue_usd_kwh: f64,
    /// The power bought at the power price, USD per day.
    pub power_cost_usd_day: f64,
    /// Revenue minus power cost, USD per day.
    pub profit_usd_day: f64,
    /// The same per kWh.
    pub profit_usd_kwh: f64,
    /// This use's profit minus mining's, USD per day (0 for mining itself).
    pub over_mining_usd_day: f64,
}

/// The figures a miner decides by, per day unless named otherwise.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct Decision {
    pub hashrate_hs: f64,
    pub power_w: f64,
    pub j_per_th: f64,
    pub energy_kwh_day: f64,
    pub hashprice_usd_ph_day: f64,
    pub power_price_usd_kwh: f64,
    pub rent_usd_hour: Option<f64>,
    pub power_sale_usd_kwh: Option<f64>,
    pub mining: UseFigures,
    /// The power price at which mining's revenue equals its power cost.
    pub break_even_power_price_usd_kwh: f64,
    /// The hashprice below which mining stops paying at this power price.
    pub break_even_hashprice_usd_ph_day: f64,
    pub rent: Option<UseFigures>,
    pub sell_power: Option<UseFigures>,
    /// The use with the highest profit per day (ties go to the first of mining, rent, sell
    /// power, off).
    pub best: Use,
    /// The next best use.
    pub runner_up: Use,
    /// How much more the best use makes than the runner-up, USD per day.
    pub best_by_usd_day: f64,
}

/// Weigh mining against renting the machine, selling its power, and switching off.
///
/// Every use draws the same power (`power_w`) bought at the power price, except off: renting
/// pays `24 * rent` a day, selling pays the sale price for each kWh the machine would have drawn.
/// So mining beats selling power exactly when the break-even price is above the sale price.
pub fn decide(inp: &DecisionInputs) -> Result<Decision, EconError> {
    let positive = |what, v: f64| if v.is_finite() && v > 0.0 { Ok(v) } else { Err(EconError::NotPositive { what, value: v }) };
    let hashrate = positive("hashrate", inp.hashrate_hs)?;
    let watts = positive("power", inp.power_w)?;
    let hashprice = check("hashprice", inp.hashprice_usd_ph_day)?;
    let price = check("power price", inp.power_price_usd_kwh)?;
    let rent = inp.rent_usd_hour.map(|r| check("rent", r)).transpose()?;
    let sale = inp.power_sale_usd_kwh.map(|p| check("power sale price", p)).transpose()?;

    let kwh = watts * 24.0 / 1000.0;
    let cost = kwh * price;
    let figures = |revenue: f64, mining_profit: f64| UseFigures {
        revenue_usd_day: revenue,
        revenue_usd_kwh: revenue / kwh,
        power_cost_usd_day: cost,
        profit_usd_day: revenue - cost,
        profit_usd_kwh: (revenue - cost) / kwh,
        over_mining_usd_day: (revenue - cost) - mining_profit,
    };
    let mining_revenue = hashrate / 1e15 * hashprice;
    let mining_profit = mining_revenue - cost;
    let mining = figures(mining_revenue, mining_profit);
    let rent = rent.map(|r| figures(24.0 * r, mining_profit));
    let sell_power = sale.map(|s| figures(kwh * s, mining_profit));

    let mut ranked: Vec<(Use, f64)> = vec![(Use::Mining, mining.profit_usd_day)];
    ranked.extend(rent.as_ref().map(|f| (Use::Rent, f.profit_usd_day)));
    ranked.extend(sell_power.as_ref().map(|f| (Use::SellPower, f.profit_usd_day)));
    ranked.push((Use::Off, 0.0));
    // Stable: ties keep the order above.
    ranked.sort_by(|a, b| b.1.total_cmp(&a.1));

    Ok(Decision {
        hashrate_hs: hashrate,
        power_w: watts,
        j_per_th: hashrig_hasher::estimate::j_per_th(watts, hashrate).unwrap_or(f64::NAN),
        energy_kwh_day: kwh,
        hashprice_usd_ph_day: hashprice,
        power_price_usd_kwh: price,
        rent_usd_hour: inp.rent_usd_hour,
        power_sale_usd_kwh: inp.power_sale_usd_kwh,
        break_even_power_price_usd_kwh: mining_revenue / kwh,
        break_even_hashprice_usd_ph_day: cost / (hashrate / 1e15),
        mining,
        rent,
        sell_power,
        best: ranked[0].0,
        runner_up: ranked[1].0,
        best_by_usd_day: ranked[0].1 - ranked[1].1,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn inputs() -> EconInputs {
        EconInputs {
            hashrate: 100e12,
            watts: Some(3000.0),
            difficulty: 100e12,
            btc_price_usd: 100_000.0,
            power_price_usd_kwh: 0.05,
            fees_btc: 0.0,
            subsidy_btc: BLOCK_SUBSIDY_BTC,
        }
    }

    #[test]
    fn a_100_th_miner_at_difficulty_100t_earns_its_share_of_blocks() {
        let e = economics(&inputs()).unwrap();
        // 100e12 H/s over 86400 s over (100e12 * 2^32) hashes per block = 86400 / 2^32 blocks.
        let blocks = 86_400.0 / 4_294_967_296.0;
        assert!((e.btc_per_day - blocks * 3.125).abs() < 1e-15);
        assert!((e.revenue_usd_day - blocks * 3.125 * 100_000.0).abs() < 1e-9);
        // 3 kW for 24 h = 72 kWh at 5 cents.
        assert!((e.cost_usd_day.unwrap() - 3.6).abs() < 1e-12);
        assert!((e.break_even_usd_kwh.unwrap() - e.revenue_usd_day / 72.0).abs() < 1e-12);
        // Hashprice is revenue per PH/s: this miner is 0.1 PH/s.
        assert!((e.hashprice_usd_ph_day - e.revenue_usd_day * 10.0).abs() < 1e-9);
    }

    #[test]
    fn fees_add_to_the_subsidy() {
        let base = economics(&inputs()).unwrap();
        let with_fees = economics(&EconInputs { fees_btc: 3.125, ..inputs() }).unwrap();
        assert!((with_fees.revenue_usd_day / base.revenue_usd_day - 2.0).abs() < 1e-12);
    }

    #[test]
    fn unknown_power_gives_no_cost_and_no_break_even() {
        let e = economics(&EconInputs { watts: None, ..inputs() }).unwrap();
        assert_eq!(e.cost_usd_day, None);
        assert_eq!(e.break_even_usd_kwh, None);
        assert!(e.revenue_usd_day > 0.0);
    }

    #[test]
    fn bad_inputs_are_refused() {
        assert_eq!(economics(&EconInputs { difficulty: 0.0, ..inputs() }), Err(EconError::Difficulty(0.0)));
        assert!(matches!(economics(&EconInputs { btc_price_usd: -1.0, ..inputs() }), Err(EconError::Negative { .. })));
    }

    /// Relative closeness: `got` within `rel` of `want`.
    fn near(got: f64, want: f64, rel: f64) -> bool {
        (got - want).abs() <= rel * want.abs().max(1e-300)
    }

    fn decision(hashrate_hs: f64, power_w: f64, hashprice: f64, price: f64) -> DecisionInputs {
        DecisionInputs { hashrate_hs, power_w, hashprice_usd_ph_day: hashprice, power_price_usd_kwh: price, rent_usd_hour: None, power_sale_usd_kwh: None }
    }

    #[test]
    fn the_worked_example_19_j_per_th_at_38_usd_per_ph_day_breaks_even_at_8_33_cents() {
        // Per TH/s: 1e12 H/s at 19 J/TH draws 19 W.
        // Revenue: 38 USD per PH/s per day * 0.001 PH/s = 0.038 USD/day.
        // Energy: 19 W * 24 h = 456 Wh = 0.456 kWh/day.
        // Break-even: 0.038 / 0.456 = 0.083333... USD/kWh.
        // At 0.05 USD/kWh: cost 0.456 * 0.05 = 0.0228, profit 0.0152 USD/day; mining stops
        // paying below 0.0228 USD/day / 0.001 PH/s = 22.8 USD/PH/day.
        let d = decide(&decision(1e12, 19.0, 38.0, 0.05)).unwrap();
        assert!(near(d.mining.revenue_usd_day, 0.038, 1e-12), "{d:?}");
        assert!(near(d.energy_kwh_day, 0.456, 1e-12));
        assert!(near(d.break_even_power_price_usd_kwh, 0.0833, 5e-4), "{}", d.break_even_power_price_usd_kwh);
        assert!(near(d.break_even_power_price_usd_kwh, 0.038 / 0.456, 1e-12));
        assert!(near(d.mining.power_cost_usd_day, 0.0228, 1e-12));
        assert!(near(d.mining.profit_usd_day, 0.0152, 1e-9));
        assert!(near(d.break_even_hashprice_usd_ph_day, 22.8, 1e-12));
        assert!(near(d.j_per_th, 19.0, 1e-12));
        // What a kWh earns when it hashes is the break-even price itself.
        assert!(near(d.mining.revenue_usd_kwh, d.break_even_power_price_usd_kwh, 1e-15));
        assert_eq!((d.best, d.runner_up), (Use::Mining, Use::Off));
        assert!(near(d.best_by_usd_day, 0.0152, 1e-9));
    }

    #[test]
    fn an_s19_xp_hydro_class_machine_at_6_cents_loses_to_selling_the_power_at_8() {
        // 255 TH/s = 0.255 PH/s; 5304 W; 5304 / 255 = 20.8 J/TH.
        // Revenue: 0.255 * 38 = 9.69 USD/day. Energy: 5.304 kW * 24 h = 127.296 kWh/day.
        // Cost at 0.06: 127.296 * 0.06 = 7.63776; profit 9.69 - 7.63776 = 2.05224 USD/day.
        // Break-even: 9.69 / 127.296 = 0.0761218 USD/kWh; hashprice floor 7.63776 / 0.255 = 29.952.
        // Selling at 0.08: 127.296 * 0.08 = 10.18368 a day, 127.296 * 0.02 = 2.54592 after the
        // power bought at 0.06; it beats mining by 2.54592 - 2.05224 = 0.49368 USD/day (the same
        // as 127.296 * (0.08 - 0.0761218), the sale price above break-even).
        let d = decide(&DecisionInputs { power_sale_usd_kwh: Some(0.08), ..decision(255e12, 5304.0, 38.0, 0.06) }).unwrap();
        assert!(near(d.j_per_th, 20.8, 1e-12));
        assert!(near(d.mining.revenue_usd_day, 9.69, 1e-12));
        assert!(near(d.energy_kwh_day, 127.296, 1e-12));
        assert!(near(d.mining.power_cost_usd_day, 7.63776, 1e-12));
        assert!(near(d.mining.profit_usd_day, 2.05224, 1e-9));
        assert!(near(d.break_even_power_price_usd_kwh, 0.0761218, 1e-6));
        assert!(near(d.break_even_hashprice_usd_ph_day, 29.952, 1e-12));
        let sell = d.sell_power.as_ref().unwrap();
        assert!(near(sell.revenue_usd_day, 10.18368, 1e-12));
        assert!(near(sell.revenue_usd_kwh, 0.08, 1e-12));
        assert!(near(sell.profit_usd_day, 2.54592, 1e-9));
        assert!(near(sell.over_mining_usd_day, 0.49368, 1e-9));
        assert_eq!((d.best, d.runner_up), (Use::SellPower, Use::Mining));
        assert!(near(d.best_by_usd_day, 0.49368, 1e-9));
        assert!(d.rent.is_none());
    }

    #[test]
    fn an_h100_rented_at_2_usd_an_hour_beats_hashing_and_selling_its_power() {
        // 7.34 GH/s (the CUDA figure in crates/hasher-gpu/REFERENCE.md) at 700 W,
        // the card's rated board power, as an AI tenant would draw it (hashing drew about 415 W). Revenue at 38 USD/PH/day:
        // 7.34e-6 PH/s * 38 = 2.7892e-4 USD/day. Energy: 0.7 kW * 24 h = 16.8 kWh/day; at 0.08
        // USD/kWh, 1.344 USD/day. Mining: -1.34372108 USD/day; break-even 2.7892e-4 / 16.8 =
        // 1.66024e-5 USD/kWh; hashprice floor 1.344 / 7.34e-6 = 183,106.27 USD/PH/day.
        // Rent: 2 * 24 = 48 USD/day (48 / 16.8 = 2.857143 USD/kWh), 46.656 after power.
        // Selling at 0.10: 1.68 USD/day, 0.336 after power. Rent wins by 46.656 - 0.336 = 46.32.
        let d = decide(&DecisionInputs { rent_usd_hour: Some(2.0), power_sale_usd_kwh: Some(0.10), ..decision(7.34e9, 700.0, 38.0, 0.08) }).unwrap();
        assert!(near(d.mining.revenue_usd_day, 2.7892e-4, 1e-12));
        assert!(near(d.mining.profit_usd_day, -1.34372108, 1e-9));
        assert!(near(d.break_even_power_price_usd_kwh, 1.66024e-5, 1e-5));
        assert!(near(d.break_even_hashprice_usd_ph_day, 183_106.27, 1e-7));
        let rent = d.rent.as_ref().unwrap();
        assert!(near(rent.revenue_usd_day, 48.0, 1e-12));
        assert!(near(rent.revenue_usd_kwh, 2.857143, 1e-6));
        assert!(near(rent.profit_usd_day, 46.656, 1e-12));
        assert!(near(rent.over_mining_usd_day, 46.656 + 1.34372108, 1e-9));
        let sell = d.sell_power.as_ref().unwrap();
        assert!(near(sell.profit_usd_day, 0.336, 1e-9));
        assert_eq!((d.best, d.runner_up), (Use::Rent, Use::SellPower));
        assert!(near(d.best_by_usd_day, 46.32, 1e-9));
    }

    #[test]
    fn hashprice_from_difficulty_and_coin_price() {
        // Difficulty 1.5e14, 100,000 USD/BTC, 3.125 + 0.025 BTC a block:
        // 1e15 * 86400 / (1.5e14 * 2^32) = 576000 / 4294967296 = 1.341104507e-4 blocks per PH/s
        // per day; * 3.15 BTC * 100,000 USD = 42.2448 USD/PH/day.
        // A 255 TH/s, 5304 W machine: 0.255 * 42.2448 = 10.7724 USD/day; at 0.06 USD/kWh
        // 7.63776 of power, profit 3.1347; break-even 10.7724 / 127.296 = 0.084625 USD/kWh.
        let hp = hashprice_from_network(1.5e14, 100_000.0, BLOCK_SUBSIDY_BTC, 0.025).unwrap();
        assert!(near(hp, 42.2448, 1e-5), "{hp}");
        let d = decide(&decision(255e12, 5304.0, hp, 0.06)).unwrap();
        assert!(near(d.mining.revenue_usd_day, 10.7724, 1e-5));
        assert!(near(d.mining.profit_usd_day, 3.1347, 1e-4));
        assert!(near(d.break_even_power_price_usd_kwh, 0.084625, 1e-5));
        // The same figure as the bench's economics for the same inputs.
        let e = economics(&EconInputs { difficulty: 1.5e14, fees_btc: 0.025, hashrate: 255e12, ..inputs() }).unwrap();
        assert!(near(e.hashprice_usd_ph_day, hp, 1e-12));
        assert!(near(e.revenue_usd_day, d.mining.revenue_usd_day, 1e-12));
        assert_eq!(hashprice_from_network(0.0, 1.0, 3.125, 0.0), Err(EconError::Difficulty(0.0)));
        assert!(matches!(hashprice_from_network(1e14, -1.0, 3.125, 0.0), Err(EconError::Negative { .. })));
    }

    #[test]
    fn a_losing_machine_with_no_alternative_is_best_switched_off() {
        let d = decide(&decision(1e12, 19.0, 38.0, 0.10)).unwrap();
        assert!(d.mining.profit_usd_day < 0.0);
        assert_eq!((d.best, d.runner_up), (Use::Off, Use::Mining));
        assert!(near(d.best_by_usd_day, 0.0456 - 0.038, 1e-9));
    }

    #[test]
    fn decide_refuses_zero_power_and_hashrate_and_negative_prices() {
        assert!(matches!(decide(&decision(0.0, 19.0, 38.0, 0.05)), Err(EconError::NotPositive { what: "hashrate", .. })));
        assert!(matches!(decide(&decision(1e12, 0.0, 38.0, 0.05)), Err(EconError::NotPositive { what: "power", .. })));
        assert!(matches!(decide(&decision(1e12, 19.0, -1.0, 0.05)), Err(EconError::Negative { .. })));
        assert!(matches!(decide(&DecisionInputs { rent_usd_hour: Some(f64::NAN), ..decision(1e12, 19.0, 38.0, 0.05) }), Err(EconError::Negative { .. })));
    }

    #[test]
    fn hashrates_read_with_si_prefixes_as_written() {
        let hs = |s: &str| parse_hashrate(s).unwrap();
        assert_eq!(hs("255T"), Hashrate { hs: 255e12, unit_given: true });
        assert_eq!(hs("255"), Hashrate { hs: 255.0, unit_given: false });
        assert_eq!(hs("1e12"), Hashrate { hs: 1e12, unit_given: false });
        assert_eq!(hs("500H").hs, 500.0);
        assert!(hs("500H").unit_given);
        assert_eq!(hs("7.34G").hs, 7.34e9);
        assert_eq!(hs("255 TH/s").hs, 255e12);
        assert_eq!(hs("255TH").hs, 255e12);
        assert_eq!(hs("2.5k").hs, 2500.0);
        assert_eq!(hs("15M").hs, 15e6);
        assert_eq!(hs("1.2P").hs, 1.2e15);
        // `E` is exa after a number, not an exponent with no digits.
        assert_eq!(hs("2E").hs, 2e18);
        assert_eq!(hs("1e3T").hs, 1e15);
    }

    #[test]
    fn bad_hashrates_say_what_is_wrong() {
        let err = |s: &str| parse_hashrate(s).unwrap_err().to_string();
        assert!(err("255X").contains("unknown unit suffix `X`"), "{}", err("255X"));
        assert!(err("255t").contains("did you mean `T`"), "{}", err("255t"));
        assert!(err("3K").contains("did you mean `k`"), "{}", err("3K"));
        assert!(err("255T/s").contains("unknown unit suffix"), "{}", err("255T/s"));
        assert!(err("fast").contains("not a number"));
        assert!(err("0T").contains("above zero"));
        assert!(err("-5T").contains("above zero"));
        assert!(err("inf").contains("above zero"));
    }

    #[test]
    fn amounts_are_plain_numbers_at_or_above_zero() {
        assert_eq!(parse_amount("0.05"), Ok(0.05));
        assert_eq!(parse_amount(" 38 "), Ok(38.0));
        assert_eq!(parse_amount("1.5e14"), Ok(1.5e14));
        assert_eq!(parse_amount("0"), Ok(0.0));
        let err = |s: &str| parse_amount(s).unwrap_err().to_string();
        assert_eq!(err("-0.05"), "`-0.05` is negative: give a number >= 0");
        assert!(err("abc").contains("`abc` is not a number"));
        assert!(err("$0.05").contains("leave the currency out"), "{}", err("$0.05"));
        assert!(err("0,05").contains("use a dot"), "{}", err("0,05"));
        assert!(err("nan").contains("not a number"));
        assert!(err("inf").contains("not a number"));
        assert!(err("").contains("not a number"));
        // A suffix is refused, and the message gives the plain figure it would have meant.
        assert!(err("5.3k").contains("write a plain number here, such as 5300"), "{}", err("5.3k"));
        assert!(err("5304W").contains("such as 5304"), "{}", err("5304W"));
        assert!(err("5.3kW").contains("such as 5300"), "{}", err("5.3kW"));
        assert!(err("0.05kWh").contains("such as 0.05"), "{}", err("0.05kWh"));
        assert!(err("0.05/kWh").contains("such as 0.05"), "{}", err("0.05/kWh"));
    }
}
