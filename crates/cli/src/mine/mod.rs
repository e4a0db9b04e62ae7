//! `hashrig mine`: pool mining over Stratum v1 or Stratum V2 (ordered failover list) or solo
//! mining against a node's getblocktemplate, on whatever hashers the caller opened, with a live
//! status line. A Stratum V2 pool is `stratum2+tcp://HOST:PORT/AUTHORITY_PUBKEY` (the key the
//! pool publishes; its certificate must be signed by it), mined on an extended channel, or on a
//! standard channel with `?channel=standard` after the key. v1 and V2 pools may share one list
//! (`hashrig_miner::failover`).
//!
//! The settings (flags, the config file and their checks) are in `settings.rs`; this file runs
//! the miner and prints its status.

use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use bitcoin::hashes::Hash as _;
use hashrig_engine::Hasher;
use hashrig_miner::failover::Failover;
use hashrig_miner::pool::PoolSource;
use hashrig_miner::solo::SoloSource;
use hashrig_miner::sv2::Sv2Source;

use crate::monitoring::PoolControl;
use hashrig_miner::{Fate, JobKey, LedgerSnapshot, Miner, MinerConfig, Observer, SourceEvent, Tick};

mod settings;

pub use settings::*;

/// `hashrig mine`: validate the settings (bad ones exit 2), open the backend, mine.
pub fn run_cmd(args: &MineArgs) -> Result<std::process::ExitCode> {
    let settings = MineSettings::resolve(args).map_err(|e| crate::bad_input(format!("{e:#}")))?;
    let hashers = crate::backend::open(&settings.backend, &settings.cpu)?;
    run(settings, hashers)?;
    Ok(std::process::ExitCode::SUCCESS)
}

/// Run `hashrig mine` on `hashers` until Ctrl-C, API `quit` or `--duration`.
pub fn run(settings: MineSettings, hashers: Vec<Box<dyn Hasher>>) -> Result<()> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .thread_name("hashrig-net")
        .build()
        .context("cannot start the network runtime")?;
    rt.block_on(run_async(settings, hashers))
}

/// ", power 42.5 W (source), 1234 J/TH" for the final line.
fn power_summary(p: Option<&hashrig_power::PowerReport>, hashrate: f64) -> String {
    match p {
        None => ", power unknown (give --watts or --power-cmd)".into(),
        Some(p) => {
            let j = hashrig_hasher::estimate::j_per_th(p.watts, hashrate).map(|j| format!(", {j:.0} J/TH")).unwrap_or_default();
            format!(", power {:.1} W ({}){j}", p.watts, p.source)
        }
    }
}

/// "accepted 3 rejected 1 (Low difficulty share: 1) stale 2 in flight 0": the ledger in a line.
fn ledger_line(l: &LedgerSnapshot) -> String {
    let reasons = l.rejected_by_reason.iter().map(|(r, n)| format!("{r}: {n}")).collect::<Vec<_>>().join(", ");
    let stale = l.stale_by_reason.iter().map(|(r, n)| format!("{r}: {n}")).collect::<Vec<_>>().join(", ");
    format!(
        "accepted {} rejected {}{} stale {}{} in flight {}",
        l.accepted,
        l.rejected,
        if reasons.is_empty() { String::new() } else { format!(" ({reasons})") },
        l.stale,
        if stale.is_empty() { String::new() } else { format!(" ({stale})") },
        l.in_flight,
    )
}

/// The CLI's side of the loop: the status line, the monitor, the power meter.
struct CliObserver {
    mon: crate::monitoring::Monitoring,
    meter: crate::metering::RunMeter,
    solo: bool,
    status_every: Duration,
    next_status: Instant,
    started: Instant,
    last: (Instant, u64),
    /// The pool mined on: its index and label.
    pool: Option<(usize, String)>,
    height: Option<u32>,
    best: f64,
    floor: Option<(f64, f64)>,
    /// --power-price-cmd / --curtail.
    curtail: Option<crate::curtailing::RunCurtail>,
    /// Live economics, when prices were given.
    econ: Option<crate::live_econ::LiveEcon>,
}

impl CliObserver {
    /// The live economics, from the engine's average rate, the meter's watts and the current
    /// job's network difficulty.
    fn live_economics(&mut self, engine: &hashrig_engine::Engine) {
        let Some(e) = &self.econ else { return };
        let elapsed = engine.elapsed().as_secs_f64();
        let rate = if elapsed > 0.0 { engine.hashes() as f64 / elapsed } else { 0.0 };
        self.mon.extras.economics = e.view(rate, self.mon.extras.power.as_ref().map(|p| p.watts));
    }
}

impl Observer for CliObserver {
    fn source_event(&mut self, ev: &SourceEvent) {
        match ev {
            SourceEvent::Connected { conn, label, channel } => {
                self.mon.pool_connected(conn.pool);
                if channel.is_some() {
                    self.mon.pool_channel(conn.pool, channel.map(str::to_string));
                }
                self.pool = Some((conn.pool, if self.solo { label.clone() } else { format!("#{} {label}", conn.pool) }));
            }
            SourceEvent::Standby { conn } => {
                self.mon.pool_standby(conn.pool);
                tracing::info!(pool = conn.pool, "pool up, kept as a hot standby (a pool ranked higher is live)");
                if self.pool.as_ref().is_some_and(|(p, _)| *p == conn.pool) {
                    self.pool = None;
                }
            }
            SourceEvent::Disconnected { conn, reason } => {
                self.mon.pool_disconnected(conn.pool);
                tracing::warn!(pool = conn.pool, reason = %hashrig_miner::ledger::clean_text(reason), "disconnected");
                if self.pool.as_ref().is_some_and(|(p, _)| *p == conn.pool) {
                    self.pool = None;
                }
            }
            SourceEvent::Job(j) => {
                if let Some(e) = &mut self.econ {
                    e.job(j.job.nbits());
                }
                self.mon.pool_job(j.key.conn.pool, hashrig_work::target::difficulty_of_target(&j.share_target));
                if j.height.is_some() {
                    self.height = j.height;
                }
                if let Some(c) = &mut self.curtail {
                    c.job_difficulty(hashrig_work::target::difficulty_from_nbits(j.job.nbits()));
                }
            }
            SourceEvent::Notice(n) => tracing::warn!("{}", hashrig_miner::ledger::clean_text(n)),
            SourceEvent::VersionMask { .. } | SourceEvent::Settled { .. } => {}
        }
    }

    fn share_found(&mut self, share: &hashrig_engine::Share, _job: Option<&JobKey>) {
        self.best = self.best.max(share.difficulty);
        self.mon.share_found(share.device, share.difficulty);
        if self.solo && share.is_block {
            eprintln!("block found: {}", bitcoin::BlockHash::from_byte_array(share.digest));
        }
    }

    fn share_settled(&mut self, _id: hashrig_miner::ShareId, fate: &Fate, s: &hashrig_miner::ledger::InFlight) {
        self.mon.share_settled(s.source, s.device, s.job_difficulty, fate);
        if s.is_block {
            match fate {
                Fate::Accepted => eprintln!("block accepted"),
                Fate::Rejected { reason, .. } => eprintln!("block rejected: {}", hashrig_miner::ledger::clean_text(reason)),
                Fate::Stale(r) => eprintln!("block stale: {r}"),
            }
        }
    }

    fn difficulty_floor(&mut self, asked: f64, used: f64) {
        self.floor = (used > asked).then_some((asked, used));
    }

    fn tick(&mut self, engine: &hashrig_engine::Engine, ledger: &LedgerSnapshot) -> Tick {
        let now = Instant::now();
        tokio::task::block_in_place(|| self.meter.poll_due(now));
        self.mon.extras.power = self.meter.live();
        if let Some(c) = &mut self.curtail {
            c.tick(engine, now, self.meter.recent_watts());
            self.mon.extras.curtail = Some(c.view());
        }
        self.live_economics(engine);
        self.mon.extras.ledger = Some(crate::monitoring::ledger_view(ledger));
        self.mon.update(&engine.stats());
        if now >= self.next_status {
            self.next_status = now + self.status_every;
            let h = engine.hashes();
            let rate = (h - self.last.1) as f64 / now.duration_since(self.last.0).as_secs_f64().max(1e-9);
            self.last = (now, h);
            let floor = self.floor.map_or(String::new(), |(a, u)| format!(" | share difficulty {u:.3e} (pool asked {a:.3e})"));
            let place = if self.solo {
                format!(" | height {}", self.height.map_or("?".into(), |h| h.to_string()))
            } else {
                format!(" | pool {}", self.pool.as_ref().map_or("none (connecting)", |(_, l)| l.as_str()))
            };
            let what = if self.solo {
                let b = &ledger.blocks;
                format!("blocks found {} accepted {} rejected {} stale {} in flight {}", b.found, b.accepted, b.rejected, b.stale, b.in_flight)
            } else {
                ledger_line(ledger)
            };
            let curtail = self.curtail.as_ref().map_or(String::new(), |c| c.status_part());
            eprintln!("[{:>6.0}s] {} | {what} | best {:.3}{floor}{place}{curtail}", self.started.elapsed().as_secs_f64(), crate::fmt_rate(rate), self.best);
        }
        if self.mon.quit_requested() { Tick::Stop } else { Tick::Continue }
    }
}

async fn run_async(settings: MineSettings, hashers: Vec<Box<dyn Hasher>>) -> Result<()> {
    let mon = crate::monitoring::Monitoring::start(&settings.monitor, hashrig_monitor::RunMode::Mine, None)?;
    // The meter may run a command (--power-cmd): keep it off the async workers' hot path.
    let meter = tokio::task::block_in_place(|| crate::metering::RunMeter::start(&crate::backend::power_for(&settings.power, &settings.backend)))?;
    let curtail = settings.curtail.clone().map(crate::curtailing::RunCurtail::start).transpose()?;
    let deadline = settings.duration;
    let stop = async move {
        match deadline {
            Some(d) => tokio::select! { _ = tokio::signal::ctrl_c() => {}, _ = tokio::time::sleep(d) => {} },
            None => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    };
    let mut obs = CliObserver {
        mon,
        meter,
        solo: false,
        status_every: settings.status_interval.max(Duration::from_millis(100)),
        next_status: Instant::now() + settings.status_interval.max(Duration::from_millis(100)),
        started: Instant::now(),
        last: (Instant::now(), 0),
        pool: None,
        height: None,
        best: 0.0,
        floor: None,
        curtail,
        econ: settings.econ.map(crate::live_econ::LiveEcon::new),
    };
    let cfg = MinerConfig::default();
    let outcome = match settings.source {
        Source::Pools(list) => {
            let (urls, users): (Vec<String>, Vec<String>) = list.listed.into_iter().unzip();
            obs.mon.set_pools(&urls, &users);
            match (list.v1, list.v2) {
                (Some((c, _)), None) => {
                    let source = PoolSource::spawn(c);
                    obs.mon.attach_pool_client(PoolControl::V1(source.client().clone()));
                    mine_on(hashers, source, cfg, stop, &mut obs).await?
                }
                (None, Some((c, _))) => {
                    let source = Sv2Source::spawn(c);
                    obs.mon.attach_pool_client(PoolControl::V2(source.client().clone()));
                    mine_on(hashers, source, cfg, stop, &mut obs).await?
                }
                (Some((c1, at1)), Some((c2, at2))) => {
                    let v1 = PoolSource::spawn(c1);
                    let client = v1.client().clone();
                    let switch = client.clone();
                    let v2 = Sv2Source::spawn(c2);
                    let switch2 = v2.client().clone();
                    let source = Failover::new(
                        v1,
                        at1,
                        Some(Box::new(move |p| switch.switch_pool(p))),
                        v2,
                        at2,
                        Some(Box::new(move |p| switch2.switch_pool(p))),
                    )
                    .map_err(|e| crate::bad_input(e.to_string()))?;
                    obs.mon.attach_pool_client(PoolControl::Mixed { v1: client, list: source.handle() });
                    mine_on(hashers, source, cfg, stop, &mut obs).await?
                }
                (None, None) => anyhow::bail!("nothing to mine: the pool list is empty"),
            }
        }
        Source::Solo(s) => {
            let store = hashrig_node::BlockStore::open(&s.blocks_dir)?;
            tracing::info!(network = %s.network, node = %s.rpc.url, blocks = %s.blocks_dir.display(), "solo mining");
            obs.mon.set_pools(&[s.rpc.url.to_string()], &[]);
            obs.solo = true;
            let source = SoloSource::spawn(hashrig_node::SoloConfig {
                rpc: s.rpc,
                payout: s.payout,
                tag: b"/hashrig/".to_vec(),
                store,
                refresh: Duration::from_secs(30),
                retry: Duration::from_secs(2),
            });
            mine_on(hashers, source, cfg, stop, &mut obs).await?
        }
    };
    let CliObserver { mut mon, meter, solo, mut curtail, .. } = obs;
    let es = &outcome.stats;
    let (power, notes) = tokio::task::block_in_place(|| meter.finish());
    if power.is_none() {
        tracing::info!(notes = %notes.join("; "), "no power figure");
    }
    mon.extras.power = power.as_ref().map(crate::monitoring::power_view);
    mon.extras.ledger = Some(crate::monitoring::ledger_view(&outcome.ledger));
    if let Some(c) = &mut curtail {
        c.finish(Instant::now());
        mon.extras.curtail = Some(c.view());
    }
    mon.finish(es)?;
    let l = &outcome.ledger;
    let what = if solo {
        let b = &l.blocks;
        format!("blocks found {} accepted {} rejected {} stale {} in flight {}", b.found, b.accepted, b.rejected, b.stale, b.in_flight)
    } else {
        format!("shares found {}: {}", l.found, ledger_line(l))
    };
    eprintln!(
        "mined {:.1} s: {} hashes ({}), {what}, hardware errors {}{}{}; ledger {}",
        es.elapsed_s,
        es.hashes,
        crate::fmt_rate(es.hashrate),
        es.hw_errors,
        power_summary(power.as_ref(), es.hashrate),
        curtail.as_ref().map_or(String::new(), |c| c.final_part()),
        if outcome.reconciles() { "reconciles" } else { "DOES NOT RECONCILE (a bug: please report it)" },
    );
    Ok(())
}

/// Start the engine on `source` and mine until `stop`.
async fn mine_on<S: hashrig_miner::JobSource>(
    hashers: Vec<Box<dyn Hasher>>,
    source: S,
    cfg: MinerConfig,
    stop: impl std::future::Future<Output = ()>,
    obs: &mut CliObserver,
) -> Result<hashrig_miner::Outcome> {
    let miner = Miner::start(hashers, source, cfg).context("cannot start the engine")?;
    obs.mon.attach_engine(miner.engine());
    for d in miner.engine().devices() {
        tracing::info!(device = %d.name, kernel = %d.kernel, "hasher ready");
    }
    Ok(miner.run(stop, obs).await)
}
