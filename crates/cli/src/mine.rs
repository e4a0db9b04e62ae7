//! `hashrig mine`: pool mining over Stratum v1 (ordered failover list) or solo mining against a
//! node's getblocktemplate, on whatever hashers the caller opened, with a live status line.
//!
//! The settings come from flags, a TOML file (`--config`), or both (flags win). The file holds
//! the same settings:
//!
//! ```toml
//! [[pool]]                      # repeatable, in failover order
//! url = "stratum+tcp://127.0.0.1:3333"
//! user = "addr.worker"
//! pass = "x"
//!
//! [node]                        # solo mining instead of pools
//! url = "http://127.0.0.1:18443"
//! rpc_cookie = "/home/me/.bitcoin/regtest/.cookie"   # or rpc_user / rpc_pass
//! address = "bcrt1q..."
//! network = "regtest"           # mainnet, testnet4, testnet3, signet, regtest
//! blocks_dir = "hashrig-blocks" # found blocks, fsynced before submission
//!
//! [mine]
//! status_interval = 5           # seconds between status lines
//! version_rolling = true        # ask pools for BIP 310 version rolling (mask 1fffe000)
//! suggest_difficulty = 512      # mining.suggest_difficulty (optional)
//! silence_timeout = 180         # seconds of silence before a pool counts as dead
//! failback_interval = 60        # seconds between tries of a preferred pool
//! pool_ca = "my-pool-ca.pem"    # extra CA certificates for stratum+ssl:// pools (PEM)
//!
//! [backend]
//! spec = "cpu"                  # as --backend: cpu, gpu[:N|:name], asic:PORT[,...], emu:MODEL
//! threads = 4                   # as --threads (cpu backend)
//! kernel = "sha-ni"             # as --kernel (cpu backend)
//!
//! [power]                       # one of the two, as --watts / --power-cmd
//! watts = 120.5                 # declared draw
//! power_cmd = "my-meter --watts" # prints "123.4 W" or a cumulative "5.0 J"; run each second
//!
//! [api]
//! listen = "127.0.0.1:4028"     # as --api: cgminer's API
//! allow = "W:192.168.1.0/24"    # as --api-allow
//! metrics = "127.0.0.1:9184"    # as --metrics: Prometheus
//! metrics_public = false        # as --metrics-public
//! ```
//!
//! A key the file does not know is an error that names it. A flag given on the command line
//! replaces the file's setting (for power, `--watts` or `--power-cmd` replaces the whole
//! `[power]` section).

use std::collections::{HashMap, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use hashrig_engine::{Engine, EngineConfig, Hasher, ShareSink};
use hashrig_stratum::{ClientConfig, ClientEvent, FoundShare, Password, PoolConfig, PoolJob, PoolUrl, ShareOutcome};
use hashrig_work::target::{from_bitcoin, target_from_difficulty};
use hashrig_work::{HeaderSource, Job};
use serde::Deserialize;

/// Flags of `hashrig mine`.
#[derive(clap::Args, Clone, Debug)]
pub struct MineArgs {
    /// Backend: cpu, gpu[:N|:name], asic:PORT[,...], emu:MODEL [default: cpu].
    #[arg(long, value_parser = crate::backend::parse_backend)]
    pub backend: Option<crate::backend::BackendSpec>,
    /// CPU threads (cpu backend).
    #[arg(long)]
    pub threads: Option<usize>,
    /// CPU kernel: sha-ni, sha-ni-sse, avx2, scalar (cpu backend; default: the best this CPU has).
    #[arg(long)]
    pub kernel: Option<String>,
    /// Stratum pool URL, `stratum+tcp://HOST:PORT` or `stratum+ssl://HOST:PORT`; repeat for
    /// failover, first = preferred.
    #[arg(long = "pool", value_name = "URL")]
    pub pools: Vec<String>,
    /// Worker name for each --pool (one for all, or one per pool).
    #[arg(long = "user", value_name = "USER")]
    pub users: Vec<String>,
    /// Password for each --pool (one for all, or one per pool). Never logged.
    #[arg(long = "pass", value_name = "PASS")]
    pub passes: Vec<String>,
    /// PEM file of extra CA certificates trusted for stratum+ssl:// pools (a pool or proxy
    /// with a private CA), besides the usual web roots.
    #[arg(long, value_name = "PATH")]
    pub pool_ca: Option<PathBuf>,
    /// Solo mining: the node's RPC URL, e.g. http://127.0.0.1:18443.
    #[arg(long, value_name = "URL", conflicts_with = "pools")]
    pub node: Option<String>,
    /// The node's RPC cookie file.
    #[arg(long, value_name = "PATH")]
    pub rpc_cookie: Option<PathBuf>,
    /// The node's RPC user (instead of --rpc-cookie).
    #[arg(long, value_name = "USER")]
    pub rpc_user: Option<String>,
    /// The node's RPC password (with --rpc-user). Never logged.
    #[arg(long, value_name = "PASS")]
    pub rpc_pass: Option<String>,
    /// Solo payout address (checked against --network).
    #[arg(long, value_name = "ADDR")]
    pub address: Option<String>,
    /// mainnet, testnet4, testnet3, signet or regtest.
    #[arg(long, value_name = "NET")]
    pub network: Option<String>,
    /// Where found blocks are written (and fsynced) before they are submitted.
    #[arg(long, value_name = "DIR")]
    pub blocks_dir: Option<PathBuf>,
    /// A TOML file with the same settings (flags override it).
    #[arg(long, value_name = "PATH")]
    pub config: Option<PathBuf>,
    /// Seconds between status lines.
    #[arg(long, value_name = "SECS")]
    pub status_interval: Option<f64>,
    /// Stop after this many seconds (0 or absent: run until Ctrl-C).
    #[arg(long, value_name = "SECS")]
    pub duration: Option<f64>,
    /// Do not ask pools for version rolling.
    #[arg(long)]
    pub no_version_rolling: bool,
    /// Ask pools for this share difficulty (mining.suggest_difficulty; pools may ignore it).
    #[arg(long, value_name = "DIFF")]
    pub suggest_difficulty: Option<f64>,
    /// Declare the power draw in watts (when no meter is available).
    #[arg(long, conflicts_with = "power_cmd")]
    pub watts: Option<f64>,
    /// A command printing the power ("123.4 W") or a cumulative energy ("5.0 J"); run each second.
    #[arg(long)]
    pub power_cmd: Option<String>,
    /// Treat a pool that sends nothing for this long as dead (default 180).
    #[arg(long, value_name = "SECS")]
    pub silence_timeout: Option<f64>,
    /// How often to try a preferred pool again while on a backup (default 60).
    #[arg(long, value_name = "SECS")]
    pub failback_interval: Option<f64>,
    #[command(flatten)]
    pub monitor: crate::monitoring::MonitorArgs,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    #[serde(default)]
    pool: Vec<FilePool>,
    node: Option<FileNode>,
    mine: Option<FileMine>,
    backend: Option<FileBackend>,
    power: Option<FilePower>,
    api: Option<FileApi>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileBackend {
    spec: Option<String>,
    threads: Option<usize>,
    kernel: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FilePower {
    watts: Option<f64>,
    power_cmd: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileApi {
    listen: Option<std::net::SocketAddr>,
    allow: Option<String>,
    metrics: Option<std::net::SocketAddr>,
    metrics_public: Option<bool>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FilePool {
    url: String,
    user: String,
    #[serde(default)]
    pass: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileNode {
    url: String,
    rpc_cookie: Option<PathBuf>,
    rpc_user: Option<String>,
    rpc_pass: Option<String>,
    address: String,
    network: Option<String>,
    blocks_dir: Option<PathBuf>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileMine {
    status_interval: Option<f64>,
    version_rolling: Option<bool>,
    suggest_difficulty: Option<f64>,
    silence_timeout: Option<f64>,
    failback_interval: Option<f64>,
    pool_ca: Option<PathBuf>,
}

/// Where the work comes from, validated.
#[derive(Debug)]
pub enum Source {
    Pools(ClientConfig),
    Solo(SoloSettings),
}

#[derive(Debug)]
pub struct SoloSettings {
    pub rpc: hashrig_node::RpcClient,
    pub payout: bitcoin::ScriptBuf,
    pub network: bitcoin::Network,
    pub blocks_dir: PathBuf,
}

/// Everything `mine` needs, validated before anything starts.
#[derive(Debug)]
pub struct MineSettings {
    pub source: Source,
    pub backend: crate::backend::BackendSpec,
    pub cpu: crate::backend::CpuOptions,
    /// --watts / --power-cmd or `[power]`; a detected meter otherwise.
    pub power: hashrig_power::PowerChoice,
    pub status_interval: Duration,
    pub duration: Option<Duration>,
    /// --api, --metrics, --report (with the file's `[api]` under the flags).
    pub monitor: crate::monitoring::MonitorArgs,
}

fn secs(what: &str, v: f64) -> Result<Duration> {
    if !(v.is_finite() && v >= 0.0) {
        bail!("{what} must be a number of seconds >= 0, got {v}");
    }
    Ok(Duration::from_secs_f64(v))
}

/// Read a `--config` file.
fn read_file(path: &Path) -> Result<FileConfig> {
    let text = std::fs::read_to_string(path).with_context(|| format!("cannot read config file {}", path.display()))?;
    // The toml crate's own message quotes the offending line, which may hold a password:
    // name the line number and the problem only.
    toml::from_str(&text).map_err(|e| {
        let line = e.span().map(|sp| text[..sp.start.min(text.len())].matches('\n').count() + 1);
        let at = line.map(|l| format!(" line {l}:")).unwrap_or_default();
        anyhow!("config file {} is not valid:{at} {}", path.display(), e.message().trim())
    })
}

impl MineSettings {
    /// Merge flags over the config file and check everything.
    pub fn resolve(args: &MineArgs) -> Result<MineSettings> {
        let file = match &args.config {
            Some(p) => read_file(p)?,
            None => FileConfig::default(),
        };
        let fm = file.mine.unwrap_or_default();
        let fb = file.backend.unwrap_or_default();
        let backend = match (&args.backend, &fb.spec) {
            (Some(b), _) => b.clone(),
            (None, Some(spec)) => spec.parse().map_err(|e| anyhow!("[backend] spec: {e}"))?,
            (None, None) => crate::backend::BackendSpec::Cpu,
        };
        let cpu = crate::backend::CpuOptions::parse(args.threads.or(fb.threads), args.kernel.as_deref().or(fb.kernel.as_deref()))?;
        cpu.check_backend(&backend)?;
        let gpu = matches!(backend, crate::backend::BackendSpec::Gpu(_));
        let power = if args.watts.is_some() || args.power_cmd.is_some() {
            let p = hashrig_power::PowerChoice { watts: args.watts, command: args.power_cmd.clone(), gpu };
            crate::metering::check_choice(&p, "--watts", "--power-cmd")?;
            p
        } else {
            let fp = file.power.unwrap_or_default();
            let p = hashrig_power::PowerChoice { watts: fp.watts, command: fp.power_cmd, gpu };
            crate::metering::check_choice(&p, "[power] watts", "[power] power_cmd")?;
            p
        };
        let fa = file.api.unwrap_or_default();
        let mut monitor = args.monitor.clone();
        monitor.api = monitor.api.or(fa.listen);
        monitor.api_allow = monitor.api_allow.or(fa.allow);
        monitor.metrics = monitor.metrics.or(fa.metrics);
        monitor.metrics_public |= fa.metrics_public.unwrap_or(false);
        let status_interval = secs("--status-interval", args.status_interval.or(fm.status_interval).unwrap_or(5.0))?;
        let duration = match args.duration {
            Some(d) if d > 0.0 => Some(secs("--duration", d)?),
            _ => None,
        };
        let solo = args.node.is_some() || (args.pools.is_empty() && file.pool.is_empty() && file.node.is_some());
        let source = if solo {
            let fnode = file.node.unwrap_or_default();
            let url = args.node.clone().unwrap_or(fnode.url);
            let url: hashrig_node::NodeUrl = url.parse()?;
            let auth = match (args.rpc_cookie.clone().or(fnode.rpc_cookie), args.rpc_user.clone().or(fnode.rpc_user)) {
                (Some(c), _) => hashrig_node::Auth::Cookie(c),
                (None, Some(user)) => hashrig_node::Auth::UserPass {
                    user,
                    password: args.rpc_pass.clone().or(fnode.rpc_pass).ok_or_else(|| anyhow!("--rpc-user needs --rpc-pass"))?,
                },
                (None, None) => bail!("solo mining needs --rpc-cookie PATH or --rpc-user/--rpc-pass"),
            };
            let network = args.network.clone().or(fnode.network).ok_or_else(|| anyhow!("solo mining needs --network (mainnet, testnet4, testnet3, signet, regtest)"))?;
            let network = hashrig_node::parse_network(&network)?;
            let address = args.address.clone().or(Some(fnode.address).filter(|a| !a.is_empty())).ok_or_else(|| anyhow!("solo mining needs --address (the payout address)"))?;
            let payout = hashrig_node::payout_script(&address, network)?;
            let blocks_dir = args.blocks_dir.clone().or(fnode.blocks_dir).unwrap_or_else(|| PathBuf::from("hashrig-blocks"));
            Source::Solo(SoloSettings { rpc: hashrig_node::RpcClient::new(url, auth), payout, network, blocks_dir })
        } else {
            let mut pools = Vec::new();
            if !args.pools.is_empty() {
                let n = args.pools.len();
                let pick = |v: &[String], i: usize, what: &str| -> Result<Option<String>> {
                    match v.len() {
                        0 => Ok(None),
                        1 => Ok(Some(v[0].clone())),
                        k if k == n => Ok(Some(v[i].clone())),
                        k => bail!("{k} {what} values for {n} pools: give one for all or one per --pool"),
                    }
                };
                for (i, url) in args.pools.iter().enumerate() {
                    let user = pick(&args.users, i, "--user")?.ok_or_else(|| anyhow!("--pool needs --user"))?;
                    let pass = pick(&args.passes, i, "--pass")?.unwrap_or_else(|| "x".into());
                    pools.push(PoolConfig { url: url.parse()?, user, password: Password::new(pass) });
                }
            } else {
                for p in file.pool {
                    let url: PoolUrl = p.url.parse()?;
                    pools.push(PoolConfig { url, user: p.user, password: Password::new(p.pass.unwrap_or_else(|| "x".into())) });
                }
            }
            if pools.is_empty() {
                bail!("nothing to mine: give --pool URL --user NAME (or --node URL ... for solo), or a --config file");
            }
            let mut c = ClientConfig::new(pools);
            let rolling = !args.no_version_rolling && fm.version_rolling.unwrap_or(true);
            c.version_rolling = rolling.then_some(0x1fff_e000);
            if let Some(d) = args.suggest_difficulty.or(fm.suggest_difficulty) {
                if !(d.is_finite() && d > 0.0) {
                    bail!("--suggest-difficulty must be a number above 0, got {d}");
                }
                c.suggest_difficulty = Some(d);
            }
            if let Some(s) = args.silence_timeout.or(fm.silence_timeout) {
                c.silence_timeout = secs("--silence-timeout", s)?.max(Duration::from_millis(100));
            }
            if let Some(s) = args.failback_interval.or(fm.failback_interval) {
                c.failback_interval = secs("--failback-interval", s)?.max(Duration::from_millis(100));
            }
            c.connect_timeout = c.connect_timeout.min(c.silence_timeout.max(Duration::from_secs(1)));
            c.retry_delay = c.retry_delay.min(c.failback_interval);
            if let Some(path) = args.pool_ca.clone().or(fm.pool_ca.clone()) {
                c.pool_ca = Some(hashrig_stratum::PoolCa::from_pem_file(&path)?);
            }
            Source::Pools(c)
        };
        Ok(MineSettings { source, backend, cpu, power, status_interval, duration, monitor })
    }
}

/// What the engine hunts for in solo mode: the network target, but never easier than
/// difficulty 1/4096. Any hash meeting it is a valid block; on regtest (about every second hash
/// is a block) this keeps the hashers from drowning the verifier in millions of candidates.
fn solo_target(work: &hashrig_node::SoloWork) -> hashrig_sha256d::Target {
    let cap = target_from_difficulty(1.0 / 4096.0).map(|t| hashrig_work::target::to_bitcoin(&t));
    match cap {
        Ok(cap) => from_bitcoin(std::cmp::min(work.target(), cap)),
        Err(_) => from_bitcoin(work.target()),
    }
}

/// Engine shares into the async side.
struct TokioSink(tokio::sync::mpsc::UnboundedSender<hashrig_engine::Share>);

impl ShareSink for TokioSink {
    fn submit(&mut self, share: hashrig_engine::Share) {
        // A closed receiver means mining is stopping; the engine has counted the share.
        let _ = self.0.send(share);
    }
}

/// Live figures for the status line.
#[derive(Debug, Default)]
struct Status {
    best: f64,
    pool: Option<String>,
    solo_height: Option<u32>,
    /// Shares whose job had already left the job book: stale, counted here.
    stale_unknown_job: u64,
    blocks_found: u64,
    blocks_accepted: u64,
    blocks_rejected: u64,
}

fn si(rate: f64) -> String {
    let units = [("", 1.0), ("k", 1e3), ("M", 1e6), ("G", 1e9), ("T", 1e12), ("P", 1e15)];
    let (u, d) = units.iter().rev().find(|(_, d)| rate >= *d).copied().unwrap_or(("", 1.0));
    format!("{:.2} {u}H/s", rate / d)
}

/// Remember the jobs shares may still name.
#[derive(Debug)]
struct JobBook<T> {
    jobs: VecDeque<(String, T)>,
}

impl<T> Default for JobBook<T> {
    fn default() -> Self {
        JobBook { jobs: VecDeque::new() }
    }
}

impl<T: Clone> JobBook<T> {
    fn insert(&mut self, id: String, v: T, clean: bool) {
        if clean {
            self.jobs.clear();
        }
        if self.jobs.len() >= 64 {
            self.jobs.pop_front();
        }
        self.jobs.push_back((id, v));
    }
    fn get(&self, id: &str) -> Option<T> {
        self.jobs.iter().rev().find(|(k, _)| k == id).map(|(_, v)| v.clone())
    }
}

/// `hashrig mine`: validate the settings (bad ones exit 2), open the backend, mine.
pub fn run_cmd(args: &MineArgs) -> Result<std::process::ExitCode> {
    let settings = MineSettings::resolve(args).map_err(|e| crate::bad_input(format!("{e:#}")))?;
    let hashers = crate::backend::open(&settings.backend, &settings.cpu)?;
    run(settings, hashers)?;
    Ok(std::process::ExitCode::SUCCESS)
}

/// Run `hashrig mine` on `hashers` until Ctrl-C or `--duration`.
pub fn run(settings: MineSettings, hashers: Vec<Box<dyn Hasher>>) -> Result<()> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .thread_name("hashrig-net")
        .build()
        .context("cannot start the network runtime")?;
    rt.block_on(run_async(settings, hashers))
}

/// The meter's figure over the run, handed to the monitor (report, API, metrics).
fn finish_power(meter: crate::metering::RunMeter, mon: &mut crate::monitoring::Monitoring) -> Option<hashrig_power::PowerReport> {
    let (power, notes) = tokio::task::block_in_place(|| meter.finish());
    if power.is_none() {
        tracing::info!(notes = %notes.join("; "), "no power figure");
    }
    mon.extras.power = power.as_ref().map(crate::monitoring::power_view);
    power
}

/// ", power 42.5 W (source), 1234 J/TH" for the final line.
fn power_summary(p: Option<&hashrig_power::PowerReport>, hashrate: f64) -> String {
    match p {
        None => ", power unknown (give --watts or --power-cmd)".into(),
        Some(p) => {
            let j = if hashrate > 0.0 { format!(", {:.0} J/TH", p.watts / (hashrate / 1e12)) } else { String::new() };
            format!(", power {:.1} W ({}){j}", p.watts, p.source)
        }
    }
}

async fn run_async(settings: MineSettings, hashers: Vec<Box<dyn Hasher>>) -> Result<()> {
    let mut mon = crate::monitoring::Monitoring::start(&settings.monitor, "mine", None)?;
    // The meter may run a command (--power-cmd): keep it off the async workers' hot path.
    let mut meter = tokio::task::block_in_place(|| crate::metering::RunMeter::start(&settings.power))?;
    let mut mon_tick = tokio::time::interval(Duration::from_secs(1));
    let (share_tx, mut share_rx) = tokio::sync::mpsc::unbounded_channel();
    let engine = Engine::start(hashers, TokioSink(share_tx), EngineConfig::default()).context("cannot start the engine")?;
    mon.attach_engine(&engine);
    for d in engine.devices() {
        tracing::info!(device = %d.name, kernel = %d.kernel, "hasher ready");
    }
    let started = Instant::now();
    let deadline = settings.duration.map(|d| tokio::time::Instant::now() + d);
    let mut tick = tokio::time::interval(settings.status_interval.max(Duration::from_millis(100)));
    tick.tick().await;
    let mut status = Status::default();
    let mut last = (Instant::now(), engine.hashes());

    match settings.source {
        Source::Pools(cfg) => {
            let urls: Vec<String> = cfg.pools.iter().map(|p| p.url.to_string()).collect();
            mon.set_pools(&urls, &cfg.pools.iter().map(|p| p.user.clone()).collect::<Vec<_>>());
            let (client, mut events, _task) = hashrig_stratum::client::spawn(cfg);
            mon.attach_pool_client(client.clone());
            let mut book: JobBook<(usize, Arc<PoolJob>)> = JobBook::default();
            loop {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => break,
                    _ = async { match deadline { Some(d) => tokio::time::sleep_until(d).await, None => std::future::pending().await } } => break,
                    ev = events.recv() => match ev {
                        None => bail!("the stratum client stopped"),
                        Some(ClientEvent::Job { pool, job }) => {
                            mon.pool_job(pool, job.difficulty);
                            let target = match target_from_difficulty(job.difficulty) {
                                Ok(t) => t,
                                Err(e) => { tracing::warn!(error = %e, "job skipped"); continue; }
                            };
                            let id = format!("{pool}/{}", job.job_id);
                            book.insert(id.clone(), (pool, job.clone()), job.clean);
                            engine.set_job(Job { id, source: HeaderSource::Coinbase(job.job.clone()), share_target: target, clean: job.clean });
                        }
                        Some(ClientEvent::Connected { pool, url }) => {
                            mon.pool_connected(pool);
                            status.pool = Some(format!("#{pool} {url}"));
                        }
                        Some(ClientEvent::Disconnected { pool, reason }) => {
                            mon.pool_disconnected(pool);
                            tracing::warn!(pool, url = %urls[pool], %reason, "disconnected");
                            status.pool = None;
                        }
                        Some(ClientEvent::ShareResult { pool, share, outcome }) => {
                            mon.share_answered(pool, &share, match &outcome { ShareOutcome::Accepted => None, ShareOutcome::Rejected { reason } => Some(reason.as_str()) });
                            engine.share_result(outcome == ShareOutcome::Accepted);
                        }
                    },
                    s = share_rx.recv() => {
                        let Some(s) = s else { bail!("the engine stopped") };
                        status.best = status.best.max(s.difficulty);
                        mon.share_found(s.device, s.difficulty);
                        match book.get(&s.job_id) {
                            Some((pool, job)) => {
                                tracing::info!(pool, job = %job.job_id, difficulty = format!("{:.3}", s.difficulty), block = s.is_block, "share found");
                                let share = hashrig_stratum::Share { job_id: job.job_id.clone(), extranonce2: s.extranonce2, ntime: s.ntime, nonce: s.nonce, version: s.version };
                                mon.share_submitted(pool, &share, s.device);
                                client.submit(FoundShare { pool, job, share });
                            }
                            None => {
                                status.stale_unknown_job += 1;
                                mon.share_dropped_stale(s.device);
                                tracing::warn!(job = %s.job_id, "share for a job no longer known: stale");
                            }
                        }
                    }
                    _ = mon_tick.tick() => {
                        tokio::task::block_in_place(|| meter.poll_due(Instant::now()));
                        mon.extras.power = meter.live();
                        mon.update(&engine.stats());
                        if mon.quit_requested() { break }
                    }
                    _ = tick.tick() => {
                        let st = client.stats();
                        let now = (Instant::now(), engine.hashes());
                        let rate = (now.1 - last.1) as f64 / now.0.duration_since(last.0).as_secs_f64().max(1e-9);
                        last = now;
                        let rejected = st.rejected.iter().map(|(r, n)| format!("{r}: {n}")).collect::<Vec<_>>().join(", ");
                        eprintln!(
                            "[{:>6.0}s] {} | accepted {} rejected {}{} stale {} | best {:.3} | pool {}",
                            started.elapsed().as_secs_f64(), si(rate), st.accepted, st.rejected_total(),
                            if rejected.is_empty() { String::new() } else { format!(" ({rejected})") },
                            st.stale + status.stale_unknown_job, status.best, status.pool.as_deref().unwrap_or("none (connecting)"),
                        );
                    }
                }
            }
            let st = client.stats();
            let es = engine.stop();
            let power = finish_power(meter, &mut mon);
            mon.finish(&es)?;
            eprintln!(
                "mined {:.1} s: {} hashes ({}), shares accepted {} rejected {} stale {} (engine stale {}), hardware errors {}{}",
                es.elapsed_s, es.hashes, si(es.hashrate), st.accepted, st.rejected_total(), st.stale + status.stale_unknown_job, es.stale, es.hw_errors,
                power_summary(power.as_ref(), es.hashrate)
            );
        }
        Source::Solo(s) => {
            let store = hashrig_node::BlockStore::open(&s.blocks_dir)?;
            tracing::info!(network = %s.network, node = %s.rpc.url, blocks = %s.blocks_dir.display(), "solo mining");
            mon.set_pools(&[s.rpc.url.to_string()], &[]);
            let cfg = hashrig_node::SoloConfig {
                rpc: s.rpc,
                payout: s.payout,
                tag: b"/hashrig/".to_vec(),
                store,
                refresh: Duration::from_secs(30),
                retry: Duration::from_secs(2),
            };
            let (node, mut events, _task) = hashrig_node::solo::spawn(cfg);
            let mut book: JobBook<Arc<hashrig_node::SoloWork>> = JobBook::default();
            let mut seq = 0u64;
            // Only one block per previous block is worth submitting.
            let mut solved: HashMap<bitcoin::BlockHash, ()> = HashMap::new();
            loop {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => break,
                    _ = async { match deadline { Some(d) => tokio::time::sleep_until(d).await, None => std::future::pending().await } } => break,
                    ev = events.recv() => match ev {
                        None => bail!("the solo driver stopped"),
                        Some(hashrig_node::SoloEvent::Work { work, clean }) => {
                            mon.pool_connected(0);
                            seq += 1;
                            let id = format!("solo/{seq}");
                            status.solo_height = Some(work.height);
                            let paused = solved.contains_key(&work.job.prev_hash);
                            book.insert(id.clone(), work.clone(), clean);
                            let target = if paused { hashrig_sha256d::Target([0; 32]) } else { solo_target(&work) };
                            engine.set_job(Job { id, source: HeaderSource::Coinbase(work.job.clone()), share_target: target, clean: true });
                        }
                        Some(hashrig_node::SoloEvent::BlockResult { hash, rejected }) => {
                            mon.share_result(0, rejected.as_deref());
                            engine.share_result(rejected.is_none());
                            match rejected {
                                None => { status.blocks_accepted += 1; eprintln!("block {hash} accepted"); }
                                Some(r) => {
                                    status.blocks_rejected += 1;
                                    eprintln!("block {hash} rejected: {r}");
                                    // Let the next template be mined even on the same previous block.
                                    solved.clear();
                                }
                            }
                        }
                        Some(hashrig_node::SoloEvent::NodeError(e)) => tracing::warn!(error = %e, "node"),
                    },
                    sh = share_rx.recv() => {
                        let Some(sh) = sh else { bail!("the engine stopped") };
                        status.best = status.best.max(sh.difficulty);
                        mon.share_found(sh.device, sh.difficulty);
                        let Some(work) = book.get(&sh.job_id) else { continue };
                        if !sh.is_block || solved.contains_key(&work.job.prev_hash) {
                            continue;
                        }
                        let header: bitcoin::block::Header = bitcoin::consensus::deserialize(&sh.header).context("engine header")?;
                        solved.insert(work.job.prev_hash, ());
                        status.blocks_found += 1;
                        // Stop hashing on this previous block until fresh work arrives.
                        seq += 1;
                        engine.set_job(Job { id: format!("solo/{seq}"), source: HeaderSource::Coinbase(work.job.clone()), share_target: hashrig_sha256d::Target([0; 32]), clean: true });
                        node.submit(hashrig_node::FoundBlock { work, extranonce2: sh.extranonce2, header });
                    }
                    _ = mon_tick.tick() => {
                        tokio::task::block_in_place(|| meter.poll_due(Instant::now()));
                        mon.extras.power = meter.live();
                        mon.update(&engine.stats());
                        if mon.quit_requested() { break }
                    }
                    _ = tick.tick() => {
                        let now = (Instant::now(), engine.hashes());
                        let rate = (now.1 - last.1) as f64 / now.0.duration_since(last.0).as_secs_f64().max(1e-9);
                        last = now;
                        eprintln!(
                            "[{:>6.0}s] {} | blocks found {} accepted {} rejected {} | best {:.3} | height {}",
                            started.elapsed().as_secs_f64(), si(rate), status.blocks_found, status.blocks_accepted,
                            status.blocks_rejected, status.best, status.solo_height.map_or("?".into(), |h| h.to_string()),
                        );
                    }
                }
            }
            let es = engine.stop();
            let power = finish_power(meter, &mut mon);
            mon.finish(&es)?;
            eprintln!(
                "mined {:.1} s: {} hashes ({}), blocks found {} accepted {} rejected {}{}",
                es.elapsed_s, es.hashes, si(es.hashrate), status.blocks_found, status.blocks_accepted, status.blocks_rejected,
                power_summary(power.as_ref(), es.hashrate)
            );
        }
    }
    Ok(())
}
