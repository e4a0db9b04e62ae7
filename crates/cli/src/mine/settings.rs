//! The settings of `hashrig mine`: its flags and the TOML file (`--config`), one type per
//! section, merged and checked before anything starts.
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
//! price_cmd = "my-tariff --now"  # as --power-price-cmd: prints "0.052" (USD/kWh); run each minute
//!
//! [api]
//! listen = "127.0.0.1:4028"     # as --api: cgminer's API
//! allow = "W:192.168.1.0/24"    # as --api-allow
//! metrics = "127.0.0.1:9184"    # as --metrics: Prometheus
//! metrics_public = false        # as --metrics-public
//! report = "run.html"           # as --report
//! ```
//!
//! A key the file does not know is an error that names it. A flag given on the command line
//! replaces the file's setting (for power, `--watts` or `--power-cmd` replaces the whole
//! `[power]` section).


use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};
use hashrig_stratum::{ClientConfig, Password, PoolConfig, PoolUrl};
use serde::Deserialize;

/// Flags of `hashrig mine`.
#[derive(clap::Args, Clone, Debug)]
pub struct MineArgs {
    #[command(flatten)]
    pub device: crate::backend::DeviceArgs,
    /// Stratum pool URL, `stratum+tcp://HOST:PORT` or `stratum+ssl://HOST:PORT`, or Stratum V2
    /// `stratum2+tcp://HOST:PORT/AUTHORITY_PUBKEY` (add `?channel=standard` for a standard
    /// channel, where the pool builds the merkle root); repeat for failover, first = preferred
    /// (v1 and V2 pools may share one list; the other protocol's live pool is a hot standby).
    #[arg(long = "pool", value_name = "URL")]
    pub pools: Vec<String>,
    /// Worker name for each --pool (one for all, or one per pool).
    #[arg(long = "user", value_name = "USER")]
    pub users: Vec<String>,
    /// Password for each --pool (one for all, or one per pool). Never logged. A password on
    /// the command line shows in `ps`: prefer the environment variable or --pass-file.
    #[arg(long = "pass", value_name = "PASS", env = "HASHRIG_POOL_PASS", hide_env_values = true)]
    pub passes: Vec<String>,
    /// Read the pool password (one for all pools) from the first line of this file.
    #[arg(long, value_name = "PATH", conflicts_with = "passes")]
    pub pass_file: Option<PathBuf>,
    /// --node, --rpc-cookie, --rpc-user, --rpc-pass, --rpc-pass-file, --address, --network,
    /// --blocks-dir: solo mining, the `[node]` section, one type for flags and file.
    #[command(flatten)]
    pub solo: NodeArgs,
    /// A TOML file with the same settings (flags override it).
    #[arg(long, value_name = "PATH")]
    pub config: Option<PathBuf>,
    /// Stop after this many seconds (0 or absent: run until Ctrl-C).
    #[arg(long, value_name = "SECS")]
    pub duration: Option<f64>,
    /// --watts, --power-cmd: the `[power]` section (one type for flags and file).
    #[command(flatten)]
    pub power: crate::metering::PowerArgs,
    /// --status-interval, --no-version-rolling, --suggest-difficulty, --silence-timeout,
    /// --failback-interval, --pool-ca: the `[mine]` section, one type for flags and file.
    #[command(flatten)]
    pub tuning: MineTuning,
    /// --power-price-cmd, --curtail, --curtail-above, --power-price-interval, --price-hold;
    /// defined in curtailing.rs.
    #[command(flatten)]
    pub curtail: crate::curtailing::CurtailArgs,
    #[command(flatten)]
    pub monitor: crate::monitoring::MonitorArgs,
    /// Prices for the live economics (API, metrics, report): --power-price, --btc-price,
    /// --hashprice, --fees-btc, --rent, --power-sale; defined in live_econ.rs.
    #[command(flatten)]
    pub econ: crate::live_econ::MineEconArgs,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    #[serde(default)]
    pool: Vec<FilePool>,
    node: Option<NodeArgs>,
    mine: Option<MineTuning>,
    backend: Option<crate::backend::DeviceArgs>,
    power: Option<crate::metering::PowerArgs>,
    api: Option<crate::monitoring::MonitorArgs>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FilePool {
    url: String,
    user: String,
    #[serde(default)]
    pass: Option<String>,
}

/// Solo mining's flags and the `[node]` section, declared once (the file calls `--node` `url`);
/// a flag replaces the file's value.
#[derive(clap::Args, Clone, Debug, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeArgs {
    /// Solo mining: the node's RPC URL, e.g. http://127.0.0.1:18443.
    #[arg(long, value_name = "URL", conflicts_with = "pools")]
    #[serde(rename = "url", default)]
    pub node: Option<String>,
    /// The node's RPC cookie file.
    #[arg(long, value_name = "PATH")]
    #[serde(default)]
    pub rpc_cookie: Option<PathBuf>,
    /// The node's RPC user (instead of --rpc-cookie).
    #[arg(long, value_name = "USER")]
    #[serde(default)]
    pub rpc_user: Option<String>,
    /// The node's RPC password (with --rpc-user). Never logged. On the command line it shows in
    /// `ps`: prefer the environment variable, --rpc-pass-file or --rpc-cookie.
    #[arg(long, value_name = "PASS", env = "HASHRIG_RPC_PASS", hide_env_values = true)]
    #[serde(default)]
    pub rpc_pass: Option<String>,
    /// Read the node's RPC password from the first line of this file.
    #[arg(long, value_name = "PATH", conflicts_with = "rpc_pass")]
    #[serde(default)]
    pub rpc_pass_file: Option<PathBuf>,
    /// Solo payout address (checked against --network).
    #[arg(long, value_name = "ADDR")]
    #[serde(default)]
    pub address: Option<String>,
    /// mainnet, testnet4, testnet3, signet or regtest.
    #[arg(long, value_name = "NET", value_parser = hashrig_node::parse_network)]
    #[serde(default, deserialize_with = "parse_network_opt")]
    pub network: Option<bitcoin::Network>,
    /// Where found blocks are written (and fsynced) before they are submitted.
    #[arg(long, value_name = "DIR")]
    #[serde(default)]
    pub blocks_dir: Option<PathBuf>,
}

impl NodeArgs {
    /// These flags over `file`'s values, field by field.
    pub fn or(&self, file: NodeArgs) -> NodeArgs {
        NodeArgs {
            node: self.node.clone().or(file.node),
            rpc_cookie: self.rpc_cookie.clone().or(file.rpc_cookie),
            rpc_user: self.rpc_user.clone().or(file.rpc_user),
            rpc_pass: self.rpc_pass.clone().or(file.rpc_pass),
            rpc_pass_file: self.rpc_pass_file.clone().or(file.rpc_pass_file),
            address: self.address.clone().or(file.address),
            network: self.network.or(file.network),
            blocks_dir: self.blocks_dir.clone().or(file.blocks_dir),
        }
    }
}

/// The `[mine]` section and its flags, declared once: each field is a flag (`--status-interval`)
/// and a file key (`status_interval`), and a flag replaces the file's value.
#[derive(clap::Args, Clone, Debug, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MineTuning {
    /// Seconds between status lines (default 5).
    #[arg(long, value_name = "SECS")]
    pub status_interval: Option<f64>,
    /// Ask pools for BIP 310 version rolling, mask 1fffe000 (default true; the flag
    /// --no-version-rolling turns it off).
    #[arg(long = "no-version-rolling", value_name = "", num_args = 0, default_missing_value = "false", action = clap::ArgAction::Set)]
    pub version_rolling: Option<bool>,
    /// Ask pools for this share difficulty (mining.suggest_difficulty; pools may ignore it).
    #[arg(long, value_name = "DIFF")]
    pub suggest_difficulty: Option<f64>,
    /// Treat a pool that sends nothing for this long as dead (default 180).
    #[arg(long, value_name = "SECS")]
    pub silence_timeout: Option<f64>,
    /// How often to try a preferred pool again while on a backup (default 60).
    #[arg(long, value_name = "SECS")]
    pub failback_interval: Option<f64>,
    /// PEM file of extra CA certificates trusted for stratum+ssl:// pools (a pool or proxy
    /// with a private CA), besides the usual web roots.
    #[arg(long, value_name = "PATH")]
    pub pool_ca: Option<PathBuf>,
}

impl MineTuning {
    /// These flags over `file`'s values, field by field.
    pub fn or(&self, file: MineTuning) -> MineTuning {
        MineTuning {
            status_interval: self.status_interval.or(file.status_interval),
            version_rolling: self.version_rolling.or(file.version_rolling),
            suggest_difficulty: self.suggest_difficulty.or(file.suggest_difficulty),
            silence_timeout: self.silence_timeout.or(file.silence_timeout),
            failback_interval: self.failback_interval.or(file.failback_interval),
            pool_ca: self.pool_ca.clone().or(file.pool_ca),
        }
    }
}

/// `[node] network` through the same parser as `--network`.
fn parse_network_opt<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<bitcoin::Network>, D::Error> {
    match Option::<String>::deserialize(d)? {
        None => Ok(None),
        Some(s) => hashrig_node::parse_network(&s).map(Some).map_err(serde::de::Error::custom),
    }
}

/// Where the work comes from, validated.
#[derive(Debug)]
pub enum Source {
    Pools(PoolList),
    Solo(SoloSettings),
}

/// One ordered failover list of pools: Stratum v1, Stratum V2, or both. Each protocol's client
/// gets its pools in the list's order, with their global indices (positions in the list).
#[derive(Debug)]
pub struct PoolList {
    /// Every pool in list order: (URL, user) for the monitor. No password.
    pub listed: Vec<(String, String)>,
    /// The Stratum v1 pools, and their positions in the list.
    pub v1: Option<(ClientConfig, Vec<usize>)>,
    /// The Stratum V2 pools, and their positions in the list.
    pub v2: Option<(hashrig_sv2::ClientConfig, Vec<usize>)>,
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
    /// --power-price-cmd / --curtail: the live power price, and curtailment on it.
    pub curtail: Option<crate::curtailing::CurtailSettings>,
    /// --api, --metrics, --report (with the file's `[api]` under the flags).
    pub monitor: crate::monitoring::MonitorArgs,
    /// Prices for the live economics, when given.
    pub econ: Option<crate::live_econ::Prices>,
}

/// The first line of a password file (the file's contents never reach an error message).
fn secret_file(path: &Path, flag: &str) -> Result<String> {
    let text = std::fs::read_to_string(path).with_context(|| format!("{flag}: cannot read {}", path.display()))?;
    let line = text.lines().next().unwrap_or("").trim_end_matches('\r').to_string();
    if line.is_empty() {
        bail!("{flag}: {} is empty", path.display());
    }
    Ok(line)
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
    parse_config(&text).map_err(|e| anyhow!("config file {} is not valid:{e}", path.display()))
}

/// Parse a config file's text. The error never quotes a value: the toml crate's own message
/// quotes the offending line, and its type errors the value (`pass = 1234`), either of which
/// may be a password. It names the line, the key where it can, and the problem.
fn parse_config(text: &str) -> std::result::Result<FileConfig, String> {
    toml::from_str(text).map_err(|e| {
        let line = e.span().map(|sp| text[..sp.start.min(text.len())].matches('\n').count() + 1);
        let key = e.span().and_then(|sp| {
            let start = text[..sp.start.min(text.len())].rfind('\n').map_or(0, |i| i + 1);
            let k = text[start..].split('=').next()?.trim();
            (!k.is_empty() && k.len() < 64 && k.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')).then(|| k.to_string())
        });
        let at = match (line, key) {
            (Some(l), Some(k)) => format!(" line {l} (`{k}`):"),
            (Some(l), None) => format!(" line {l}:"),
            _ => String::new(),
        };
        format!("{at} {}", without_values(e.message().trim()))
    })
}

/// serde's "invalid type: integer `1234`, expected a string" names the value between
/// backquotes; unknown-field and missing-field messages name keys there, which are kept.
fn without_values(msg: &str) -> String {
    if !msg.starts_with("invalid ") {
        return msg.to_string();
    }
    let mut out = String::new();
    for (i, part) in msg.split('`').enumerate() {
        out.push_str(if i % 2 == 1 { "(value not shown)" } else { part });
    }
    out.replace(" (value not shown)", "").replace("(value not shown)", "")
}

/// Check a config file's text as `hashrig mine --config` would read it (for the fuzzer and
/// tests): `Ok` if it parses, else the error `mine` would print.
pub fn check_config_text(text: &str) -> Result<()> {
    parse_config(text).map(|_| ()).map_err(|e| anyhow!("config is not valid:{e}"))
}

impl MineSettings {
    /// Merge flags over the config file and check everything.
    pub fn resolve(args: &MineArgs) -> Result<MineSettings> {
        let file = match &args.config {
            Some(p) => read_file(p)?,
            None => FileConfig::default(),
        };
        let tuning = args.tuning.or(file.mine.unwrap_or_default());
        let (backend, cpu) = args.device.or(file.backend.unwrap_or_default()).resolve()?;
        let gpu = matches!(backend, crate::backend::BackendSpec::Gpu(_));
        let mut file_power = file.power.unwrap_or_default();
        let price_cmd = file_power.price_cmd.take();
        // A meter on the command line replaces the file's whole [power] meter.
        let power = if args.power.names_a_meter() {
            args.power.choice(gpu, "--watts", "--power-cmd")?
        } else {
            file_power.choice(gpu, "[power] watts", "[power] power_cmd")?
        };
        // The break-even takes the live economics' --hashprice, or --btc-price (and --fees-btc)
        // with the jobs' network difficulty.
        let revenue = match (args.econ.hashprice, args.econ.btc_price) {
            (Some(h), _) => Some(crate::curtailing::Revenue::Hashprice(h)),
            (None, Some(usd)) => Some(crate::curtailing::Revenue::BtcPrice { usd, fees_btc: args.econ.fees_btc.unwrap_or(0.0) }),
            (None, None) => None,
        };
        let curtail = args.curtail.resolve(price_cmd, power.watts.is_some() || power.command.is_some(), revenue)?;
        let monitor = args.monitor.or(file.api.unwrap_or_default());
        let status_interval = secs("--status-interval", tuning.status_interval.unwrap_or(5.0))?;
        let duration = match args.duration {
            Some(d) if d > 0.0 => Some(secs("--duration", d)?),
            _ => None,
        };
        let solo = args.solo.node.is_some() || (args.pools.is_empty() && file.pool.is_empty() && file.node.is_some());
        let source = if solo {
            let node = args.solo.or(file.node.unwrap_or_default());
            let url = node.node.ok_or_else(|| anyhow!("solo mining needs --node URL (or url in [node])"))?;
            let url: hashrig_node::NodeUrl = url.parse()?;
            let auth = match (node.rpc_cookie, node.rpc_user) {
                (Some(c), _) => hashrig_node::Auth::Cookie(c),
                (None, Some(user)) => hashrig_node::Auth::UserPass {
                    user,
                    password: match &node.rpc_pass_file {
                        Some(p) => secret_file(p, "--rpc-pass-file")?,
                        None => node.rpc_pass.ok_or_else(|| anyhow!("--rpc-user needs --rpc-pass (or HASHRIG_RPC_PASS, or --rpc-pass-file)"))?,
                    },
                },
                (None, None) => bail!("solo mining needs --rpc-cookie PATH or --rpc-user/--rpc-pass"),
            };
            let network = node.network.ok_or_else(|| anyhow!("solo mining needs --network (mainnet, testnet4, testnet3, signet, regtest)"))?;
            let address = node.address.filter(|a| !a.is_empty()).ok_or_else(|| anyhow!("solo mining needs --address (the payout address)"))?;
            let payout = hashrig_node::payout_script(&address, network)?;
            let blocks_dir = node.blocks_dir.unwrap_or_else(|| PathBuf::from("hashrig-blocks"));
            Source::Solo(SoloSettings { rpc: hashrig_node::RpcClient::new(url, auth), payout, network, blocks_dir })
        } else {
            // (url, user, password) as given, before the protocol is known
            let mut listed: Vec<(String, String, String)> = Vec::new();
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
                let passes = match &args.pass_file {
                    Some(p) => vec![secret_file(p, "--pass-file")?],
                    None => args.passes.clone(),
                };
                for (i, url) in args.pools.iter().enumerate() {
                    let user = pick(&args.users, i, "--user")?.ok_or_else(|| anyhow!("--pool needs --user"))?;
                    let pass = pick(&passes, i, "--pass")?.unwrap_or_else(|| "x".into());
                    listed.push((url.clone(), user, pass));
                }
            } else {
                for p in file.pool {
                    listed.push((p.url, p.user, p.pass.unwrap_or_else(|| "x".into())));
                }
            }
            if listed.is_empty() {
                bail!("nothing to mine: give --pool URL --user NAME (or --node URL ... for solo), or a --config file");
            }
            let (mut v1_pools, mut v1_at, mut v2_pools, mut v2_at) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
            let mut shown = Vec::new();
            for (i, (url, user, pass)) in listed.into_iter().enumerate() {
                if hashrig_sv2::is_sv2_url(&url) {
                    // SV2 has no password: the channel's user identity is the account.
                    let url: hashrig_sv2::PoolUrl = url.parse()?;
                    shown.push((url.to_string(), user.clone()));
                    v2_pools.push(hashrig_sv2::Sv2Pool { url, user });
                    v2_at.push(i);
                } else {
                    let url: PoolUrl = url.parse()?;
                    shown.push((url.to_string(), user.clone()));
                    v1_pools.push(PoolConfig { url, user, password: Password::new(pass) });
                    v1_at.push(i);
                }
            }
            let silence = tuning.silence_timeout.map(|s| secs("--silence-timeout", s)).transpose()?.map(|d| d.max(Duration::from_millis(100)));
            let v2 = if v2_pools.is_empty() {
                None
            } else {
                let mut c = hashrig_sv2::ClientConfig::with_pools(v2_pools);
                c.version_rolling = tuning.version_rolling.unwrap_or(true);
                if let Some(s) = silence {
                    c.silence_timeout = s;
                }
                if let Some(s) = tuning.failback_interval {
                    c.failback_interval = secs("--failback-interval", s)?.max(Duration::from_millis(100));
                }
                c.retry_delay = c.retry_delay.min(c.failback_interval);
                Some((c, v2_at))
            };
            let v1 = if v1_pools.is_empty() {
                None
            } else {
                let mut c = ClientConfig::new(v1_pools);
                let rolling = tuning.version_rolling.unwrap_or(true);
                c.version_rolling = rolling.then_some(0x1fff_e000);
                if let Some(d) = tuning.suggest_difficulty {
                    if !(d.is_finite() && d > 0.0) {
                        bail!("--suggest-difficulty must be a number above 0, got {d}");
                    }
                    c.suggest_difficulty = Some(d);
                }
                if let Some(s) = silence {
                    c.silence_timeout = s;
                }
                if let Some(s) = tuning.failback_interval {
                    c.failback_interval = secs("--failback-interval", s)?.max(Duration::from_millis(100));
                }
                c.connect_timeout = c.connect_timeout.min(c.silence_timeout.max(Duration::from_secs(1)));
                c.retry_delay = c.retry_delay.min(c.failback_interval);
                if let Some(path) = tuning.pool_ca.clone() {
                    c.pool_ca = Some(hashrig_stratum::PoolCa::from_pem_file(&path)?);
                }
                Some((c, v1_at))
            };
            Source::Pools(PoolList { listed: shown, v1, v2 })
        };
        Ok(MineSettings { source, backend, cpu, power, status_interval, duration, curtail, monitor, econ: args.econ.prices()? })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct T {
        #[command(flatten)]
        tuning: MineTuning,
        #[command(flatten)]
        solo: NodeArgs,
        #[arg(long = "pool")]
        pools: Vec<String>,
    }

    #[test]
    fn the_node_section_and_the_solo_flags_are_one_type() {
        let file: NodeArgs = toml::from_str("url = \"http://127.0.0.1:18443\"\naddress = \"bcrt1qfile\"\nnetwork = \"regtest\"\nrpc_cookie = \"/tmp/c\"").unwrap();
        let flags = T::parse_from(["t", "--address", "bcrt1qflag", "--network", "signet"]).solo;
        let n = flags.or(file);
        assert_eq!(n.node.as_deref(), Some("http://127.0.0.1:18443"));
        assert_eq!((n.address.as_deref(), n.network), (Some("bcrt1qflag"), Some(bitcoin::Network::Signet)));
        assert_eq!(n.rpc_cookie, Some(PathBuf::from("/tmp/c")));
        // The file's network goes through --network's parser.
        let e = toml::from_str::<NodeArgs>("network = \"moonnet\"").unwrap_err().to_string();
        assert!(e.contains("moonnet"), "{e}");
    }

    #[test]
    fn the_mine_section_and_its_flags_are_one_type_and_a_flag_replaces_the_file() {
        let file: MineTuning = toml::from_str("status_interval = 2.5\nversion_rolling = true\nsilence_timeout = 30").unwrap();
        let flags = T::parse_from(["t", "--no-version-rolling", "--silence-timeout", "9"]).tuning;
        assert_eq!(flags.version_rolling, Some(false));
        let m = flags.or(file);
        assert_eq!((m.status_interval, m.version_rolling, m.silence_timeout), (Some(2.5), Some(false), Some(9.0)));
        // Without the flag the file's choice stands (and absent everywhere: unset).
        assert_eq!(T::parse_from(["t"]).tuning.or(toml::from_str("version_rolling = false").unwrap()).version_rolling, Some(false));
        assert_eq!(T::parse_from(["t"]).tuning.version_rolling, None);
        // An unknown key is named.
        let e = toml::from_str::<MineTuning>("status_intervall = 1").unwrap_err().to_string();
        assert!(e.contains("status_intervall"), "{e}");
    }
}
