//! Live economics for `bench` and `mine`: the figures of `hashrig econ` (revenue, power cost,
//! profit per day, break-even power price, hashprice floor, the alternative and which use wins)
//! from what the run measures: its hashrate, its power, and the network difficulty of the job it
//! mines (`mine`: the job's nbits, from the pool or the node) or as given (`bench --difficulty`),
//! unless a `--hashprice` is given. The math is `hashrig_work::econ`; this module holds the
//! prices and turns a decision into the monitor's [`hashrig_monitor::Economics`].

use hashrig_work::econ::{BLOCK_SUBSIDY_BTC, Decision, DecisionInputs, decide, hashprice_from_network, parse_amount};

use crate::bad_input;

/// `mine`'s price flags.
#[derive(clap::Args, Clone, Debug, Default)]
pub struct MineEconArgs {
    /// Electricity price, USD per kWh: turns on the live economics (API, metrics, report).
    #[arg(long, value_name = "USD/kWh", value_parser = parse_amount, allow_negative_numbers = true)]
    pub power_price: Option<f64>,
    /// Bitcoin price, USD: with the network difficulty of the current job, gives the hashprice.
    #[arg(long, value_name = "USD", value_parser = parse_amount, allow_negative_numbers = true, conflicts_with = "hashprice")]
    pub btc_price: Option<f64>,
    /// Hashprice, USD per PH/s per day (instead of --btc-price and the job's difficulty).
    #[arg(long, value_name = "USD/PH/day", value_parser = parse_amount, allow_negative_numbers = true)]
    pub hashprice: Option<f64>,
    /// Average fees per block, BTC, added to the 3.125 BTC subsidy (with --btc-price; default 0).
    #[arg(long, value_name = "BTC", value_parser = parse_amount, allow_negative_numbers = true, requires = "btc_price")]
    pub fees_btc: Option<f64>,
    /// The alternative: what the machine rents for, USD per hour (its power still paid by you).
    #[arg(long, value_name = "USD/hour", value_parser = parse_amount, allow_negative_numbers = true)]
    pub rent: Option<f64>,
    /// The alternative: what the power sells for, USD per kWh, with the machine off.
    #[arg(long, value_name = "USD/kWh", value_parser = parse_amount, allow_negative_numbers = true)]
    pub power_sale: Option<f64>,
}

impl MineEconArgs {
    /// The prices, or `None` when no price flag is given; bad input (exit 2) when they do not add up.
    pub fn prices(&self) -> anyhow::Result<Option<Prices>> {
        Prices::from_flags(self.power_price, self.hashprice, self.btc_price, self.fees_btc.unwrap_or(0.0), self.rent, self.power_sale)
    }
}

/// Where the hashprice comes from.
#[derive(Clone, Debug, PartialEq)]
pub enum HashpriceFrom {
    /// `--hashprice`, USD per PH/s per day.
    Given(f64),
    /// From the network difficulty (the job's, or `--difficulty`) and the coin price.
    Network { btc_price_usd: f64, fees_btc: f64 },
}

/// The prices the live figures are worked out at.
#[derive(Clone, Debug, PartialEq)]
pub struct Prices {
    pub power_price_usd_kwh: f64,
    pub hashprice: HashpriceFrom,
    pub rent_usd_hour: Option<f64>,
    pub power_sale_usd_kwh: Option<f64>,
}

/// The figures at one moment.
#[derive(Clone, Debug, PartialEq)]
pub struct Figures {
    /// `hashrig econ`'s decision; `None` while the rate or the power is unknown or zero.
    pub decision: Option<Decision>,
    /// The same for the API, metrics and report.
    pub view: hashrig_monitor::Economics,
}

impl Prices {
    /// Check the price flags: nothing given is `None`; a power price needs a hashprice or a coin
    /// price, and the alternatives need a power price.
    pub fn from_flags(
        power_price: Option<f64>,
        hashprice: Option<f64>,
        btc_price: Option<f64>,
        fees_btc: f64,
        rent: Option<f64>,
        power_sale: Option<f64>,
    ) -> anyhow::Result<Option<Prices>> {
        for (name, v) in [("--power-price", power_price), ("--hashprice", hashprice), ("--btc-price", btc_price), ("--rent", rent), ("--power-sale", power_sale), ("--fees", Some(fees_btc))] {
            if let Some(v) = v
                && !(v.is_finite() && v >= 0.0)
            {
                return Err(bad_input(format!("{name} {v} must be a number >= 0")));
            }
        }
        let Some(power_price) = power_price else {
            if hashprice.is_some() || btc_price.is_some() || rent.is_some() || power_sale.is_some() {
                return Err(bad_input("economics need --power-price USD/kWh (what the machine's electricity costs)"));
            }
            return Ok(None);
        };
        let hashprice = match (hashprice, btc_price) {
            (Some(h), None) => HashpriceFrom::Given(h),
            (None, Some(b)) => HashpriceFrom::Network { btc_price_usd: b, fees_btc },
            (Some(_), Some(_)) => return Err(bad_input("--hashprice and --btc-price both price the hashes: give one of them")),
            (None, None) => {
                return Err(bad_input("economics need a hashprice: give --hashprice USD/PH/day, or --btc-price USD (with the network difficulty)"));
            }
        };
        Ok(Some(Prices { power_price_usd_kwh: power_price, hashprice, rent_usd_hour: rent, power_sale_usd_kwh: power_sale }))
    }

    /// The figures for `hashrate_hs` at `watts` and network `difficulty`. `None` when the
    /// hashprice needs a difficulty and there is none yet (no job).
    pub fn figures(&self, hashrate_hs: f64, watts: Option<f64>, difficulty: Option<f64>) -> Option<Figures> {
        let (hashprice, coin_price) = match self.hashprice {
            HashpriceFrom::Given(h) => (h, 0.0),
            HashpriceFrom::Network { btc_price_usd, fees_btc } => {
                (hashprice_from_network(difficulty?, btc_price_usd, BLOCK_SUBSIDY_BTC, fees_btc).ok()?, btc_price_usd)
            }
        };
        let watts = watts.filter(|w| w.is_finite() && *w > 0.0);
        let decision = watts.and_then(|w| {
            decide(&DecisionInputs {
                hashrate_hs,
                power_w: w,
                hashprice_usd_ph_day: hashprice,
                power_price_usd_kwh: self.power_price_usd_kwh,
                rent_usd_hour: self.rent_usd_hour,
                power_sale_usd_kwh: self.power_sale_usd_kwh,
            })
            .ok()
        });
        let revenue = hashrate_hs.max(0.0) / 1e15 * hashprice;
        let cost = watts.map(|w| w * 24.0 / 1000.0 * self.power_price_usd_kwh);
        let alt = |name: &str, f: &hashrig_work::econ::UseFigures| hashrig_monitor::Alternative {
            name: name.into(),
            income_per_day: f.revenue_usd_day,
            profit_per_day: f.profit_usd_day,
        };
        let view = hashrig_monitor::Economics {
            currency: "USD".into(),
            network_difficulty: difficulty.unwrap_or(0.0),
            coin_price,
            power_price_kwh: self.power_price_usd_kwh,
            revenue_per_day: revenue,
            cost_per_day: cost,
            break_even_power_price_kwh: watts.map(|w| revenue / (w * 24.0 / 1000.0)),
            hashrate_hs,
            watts,
            hashprice_per_ph_day: Some(hashprice),
            profit_per_day: cost.map(|c| revenue - c),
            break_even_hashprice_per_ph_day: decision.as_ref().map(|d| d.break_even_hashprice_usd_ph_day),
            alternatives: decision
                .as_ref()
                .map(|d| d.rent.iter().map(|f| alt("rent", f)).chain(d.sell_power.iter().map(|f| alt("sell power", f))).collect())
                .unwrap_or_default(),
            best: decision.as_ref().map(|d| d.best.label().to_owned()),
            best_by_per_day: decision.as_ref().map(|d| d.best_by_usd_day),
        };
        Some(Figures { decision, view })
    }
}

/// `mine`'s side: the prices and the network difficulty of the latest job.
#[derive(Clone, Debug)]
pub struct LiveEcon {
    prices: Prices,
    difficulty: Option<f64>,
}

impl LiveEcon {
    pub fn new(prices: Prices) -> Self {
        LiveEcon { prices, difficulty: None }
    }

    /// A new job: its nbits give the network difficulty.
    pub fn job(&mut self, nbits: u32) {
        let d = hashrig_work::target::difficulty_from_nbits(nbits);
        if d.is_finite() && d > 0.0 && self.difficulty != Some(d) {
            tracing::info!(network_difficulty = d, "economics: network difficulty from the job's nbits");
            self.difficulty = Some(d);
        }
    }

    /// The figures now, for the monitor (`None` until a job gives a difficulty, where needed).
    pub fn view(&self, hashrate_hs: f64, watts: Option<f64>) -> Option<hashrig_monitor::Economics> {
        self.prices.figures(hashrate_hs, watts, self.difficulty).map(|f| f.view)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_view_carries_the_decisions_figures() {
        // 1 TH/s at 19 W, 38 USD/PH/day, 0.05 USD/kWh: the worked example of issue 16.
        let p = Prices::from_flags(Some(0.05), Some(38.0), None, 0.0, Some(0.01), None).unwrap().unwrap();
        let f = p.figures(1e12, Some(19.0), None).unwrap();
        let d = f.decision.unwrap();
        assert!((f.view.revenue_per_day - 0.038).abs() < 1e-12);
        assert!((f.view.break_even_power_price_kwh.unwrap() - d.break_even_power_price_usd_kwh).abs() < 1e-15);
        assert!((f.view.profit_per_day.unwrap() - 0.0152).abs() < 1e-9);
        assert!((f.view.break_even_hashprice_per_ph_day.unwrap() - 22.8).abs() < 1e-9);
        assert_eq!(f.view.alternatives.len(), 1);
        assert!((f.view.alternatives[0].income_per_day - 0.24).abs() < 1e-12);
        assert_eq!(f.view.best.as_deref(), Some("rent"));
        // No power: revenue only.
        let f = p.figures(1e12, None, None).unwrap();
        assert!(f.decision.is_none() && f.view.profit_per_day.is_none());
    }

    #[test]
    fn a_coin_price_waits_for_a_difficulty() {
        let p = Prices::from_flags(Some(0.1), None, Some(100_000.0), 0.0, None, None).unwrap().unwrap();
        assert!(p.figures(1e12, Some(50.0), None).is_none());
        let mut live = LiveEcon::new(p);
        live.job(0x1d00_ffff);
        let v = live.view(1e12, Some(50.0)).unwrap();
        assert_eq!(v.network_difficulty, 1.0);
        assert!(v.profit_per_day.is_some());
    }

    #[test]
    fn prices_that_do_not_add_up_are_refused() {
        assert!(Prices::from_flags(None, None, None, 0.0, None, None).unwrap().is_none());
        for (pp, hp, bp, rent) in [(Some(0.1), None, None, None), (None, Some(38.0), None, None), (Some(0.1), Some(38.0), Some(1e5), None), (None, None, None, Some(2.0)), (Some(-0.1), Some(38.0), None, None)] {
            assert!(Prices::from_flags(pp, hp, bp, 0.0, rent, None).is_err(), "{pp:?} {hp:?} {bp:?} {rent:?}");
        }
    }
}
