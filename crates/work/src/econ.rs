//! Mining economics: what a hashrate earns at a network difficulty, what its power costs, the
//! electricity price at which it breaks even, and the hashprice (USD per PH/s per day).
//!
//! Expected blocks per second for hashrate `H` at difficulty `D` are `H / (D * 2^32)`; each block
//! pays the subsidy (3.125 BTC since the April 2024 halving) plus fees. No pool fee, no variance:
//! these are expectations, and the report says so.

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
}
