//! A rig view with every part filled: two devices (a CPU and a 12-chip ASIC chain with one
//! weak chip), two pools, power, samples and economics. Numbers are made up but consistent.

#![allow(dead_code, reason = "each test binary uses a different part of this module")]

use std::collections::BTreeMap;

use hashrig_monitor::*;

pub const CHIPS: usize = 12;
pub const CORES: usize = 4;
/// The chip returning a fifth of the others' nonces.
pub const WEAK_CHIP: usize = 7;
pub const SAMPLES: usize = 30;

pub fn rig() -> RunView {
    let chips: Vec<ChipView> = (0..CHIPS)
        .map(|i| {
            let per_core = if i == WEAK_CHIP { 20 } else { 100 + i as u64 };
            ChipView {
                index: i as u16,
                nonces: per_core * CORES as u64,
                hw_errors: if i == WEAK_CHIP { 3 } else { 0 },
                est_hashrate: per_core as f64 * CORES as f64 * 1e9,
                temperature: Some(60.0 + i as f64),
                cores: (0..CORES)
                    .map(|k| CoreView { index: k as u16, nonces: per_core, hw_errors: 0 })
                    .collect(),
            }
        })
        .collect();
    let asic = DeviceView {
        id: 1,
        name: "bm1370 chain on /dev/ttyUSB0".into(),
        kind: hashrig_monitor::DeviceKind::Asic,
        kernel: "bm1370".into(),
        enabled: true,
        hashrate: Rates { avg: 4.5e12, s5: 4.4e12, m1: 4.6e12 },
        nominal_hashrate: Some(5.0e12),
        estimated: true,
        hashes: 2.7e14,
        valid_nonces: chips.iter().map(|c| c.nonces).sum(),
        accepted: 40,
        rejected: 2,
        stale: 1,
        hw_errors: 3,
        difficulty_accepted: 40960.0,
        difficulty_rejected: 2048.0,
        best_share: 1.5e6,
        last_share_unix: Some(1_700_000_060),
        temperatures: vec![Temperature { sensor: "board".into(), celsius: 71.5 }],
        chips,
    };
    let cpu = DeviceView {
        id: 0,
        name: "cpu: 2 threads".into(),
        kind: hashrig_monitor::DeviceKind::Cpu,
        kernel: "sha-ni".into(),
        enabled: true,
        hashrate: Rates { avg: 2.0e7, s5: 1.9e7, m1: 2.1e7 },
        hashes: 1.2e9,
        valid_nonces: 18,
        ..Default::default()
    };
    let mut reasons = BTreeMap::new();
    reasons.insert("duplicate".to_string(), 1);
    reasons.insert("low difficulty \"share\"".to_string(), 1);
    let pools = vec![
        PoolView {
            id: 0,
            url: "stratum+tcp://pool.example:3333".into(),
            user: "tb1qexample.rig1".into(),
            state: PoolState::Alive,
            active: true,
            priority: 0,
            shares: Shares {
                accepted: 40,
                rejected: 2,
                stale: 1,
                reject_reasons: reasons.clone(),
                difficulty_accepted: 40960.0,
                difficulty_rejected: 2048.0,
                difficulty_stale: 1024.0,
            },
            difficulty: 1024.0,
            best_share: 1.5e6,
            last_share_unix: Some(1_700_000_060),
            block_height: Some(100_000),
            channel: None,
        },
        PoolView {
            id: 1,
            url: "stratum+tcp://backup.example:3333".into(),
            user: "tb1qexample.rig1".into(),
            state: PoolState::Dead,
            priority: 1,
            ..Default::default()
        },
    ];
    RunView {
        mode: hashrig_monitor::RunMode::Mine,
        started_unix: 1_700_000_000,
        elapsed_s: 60.0,
        hashrate: Rates { avg: 4.52e12, s5: 4.42e12, m1: 4.62e12 },
        hashrate_ci: Some(Interval { low: 4.3e12, high: 4.7e12 }),
        hashes: 2.712e14,
        shares: Shares {
            accepted: 40,
            rejected: 2,
            stale: 1,
            reject_reasons: reasons,
            difficulty_accepted: 40960.0,
            difficulty_rejected: 2048.0,
            difficulty_stale: 1024.0,
        },
        best_share: 1.5e6,
        blocks_found: 1,
        devices: vec![cpu, asic],
        pools,
        power: Some(PowerView { watts: 95.0, source: "hwmon".into(), energy_j: Some(5700.0) }),
        j_per_th: Some(21.0),
        samples: (0..SAMPLES)
            .map(|i| Sample { t_s: 2.0 * (i + 1) as f64, hashrate: 4.5e12 + ((i % 5) as f64 - 2.0) * 1e11 })
            .collect(),
        economics: Some(Economics {
            currency: "USD".into(),
            network_difficulty: 1.2e14,
            coin_price: 90000.0,
            power_price_kwh: 0.12,
            revenue_per_day: 0.0123,
            cost_per_day: Some(0.2736),
            break_even_power_price_kwh: Some(0.0054),
            // 4.52 TH/s at 95 W: 2.28 kWh a day; 0.0123 / 0.00452 PH/s = 2.72 USD/PH/day.
            hashrate_hs: 4.52e12,
            watts: Some(95.0),
            hashprice_per_ph_day: Some(2.72),
            profit_per_day: Some(-0.2613),
            break_even_hashprice_per_ph_day: Some(60.53),
            // Rented at 0.05 USD/hour: 1.20 a day, 0.9264 after the power.
            alternatives: vec![Alternative { name: "rent".into(), income_per_day: 1.2, profit_per_day: 0.9264 }],
            best: Some("rent".into()),
            best_by_per_day: Some(0.9264),
        }),
        protocol_errors: [("malformed line".to_string(), 2)].into(),
        ledger: Some(LedgerView {
            found: 12,
            accepted: 9,
            rejected: 1,
            stale: 1,
            in_flight: 1,
            reconciles: true,
            rejected_by_kind: [("low_difficulty".to_string(), 1)].into(),
            stale_by_reason: [("job_replaced".to_string(), 1)].into(),
            ..Default::default()
        }),
        curtail: None,
    }
}
