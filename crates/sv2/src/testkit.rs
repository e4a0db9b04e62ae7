//! An SV2 test pool for this workspace's tests. Every share is checked by the reference
//! implementation's server-side channel (`channels_sv2::server::extended::
//! ExtendedChannel::validate_share`, or `channels_sv2::server::standard::StandardChannel::
//! validate_share` for a standard channel, where that code also builds the merkle root), whose jobs are built by its own job factory from
//! templates this pool makes up; the pool only counts what that code says. With faults to inject:
//! a close on the next submit, a target change, a new extranonce prefix, an unknown message type,
//! an oversized frame, a Reconnect, a CloseChannel.
//!
//! A connection may open several channels (the reference translator proxy opens one per miner
//! when it does not aggregate them); each has its own jobs, acknowledgements and counts
//! ([`PoolStats::channels`]), and a client's `CloseChannel` credits what it sent, then ends it.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bitcoin::{Amount, ScriptBuf, TxOut};
use stratum_core::binary_sv2::{B032Owned, B064KOwned, B0255Owned, Seq0255Owned, Str0255Owned, U256Owned};
use stratum_core::channels_sv2::extranonce_manager::ExtranonceAllocator;
use stratum_core::channels_sv2::server::extended::ExtendedChannel;
use stratum_core::channels_sv2::server::share_accounting::{ShareValidationError, ShareValidationResult};
use stratum_core::channels_sv2::server::standard::StandardChannel;
use stratum_core::common_messages_sv2::{ReconnectOwned, SetupConnectionSuccess};
use stratum_core::framing_sv2::framing::SerializedFrame;
use stratum_core::mining_sv2::{
    CloseChannelOwned, OpenExtendedMiningChannelSuccessOwned, OpenMiningChannelErrorOwned, OpenStandardMiningChannelSuccessOwned, SetExtranoncePrefixOwned, SetNewPrevHashOwned,
    SetTargetOwned, SubmitSharesErrorOwned, SubmitSharesSuccess,
};
use stratum_core::parsers_sv2::{AnyMessageOwned, CommonMessagesOwned, MiningOwned};
use stratum_core::template_distribution_sv2::{NewTemplateOwned, SetNewPrevHashOwned as TdpSetNewPrevHash};
use tokio::net::TcpListener;
use tokio::sync::broadcast;

use crate::conn::{self, Inbound, Writer};
use crate::url::{decode_authority_key, encode_authority_key};
use crate::Error;

/// The authority key pair of the reference implementation's codec example (codec_sv2 7.0.0,
/// examples/encrypted.rs): a key pair whose text form the reference code wrote, not us.
pub const AUTHORITY_PUBLIC: &str = "9auqWEzQDVyd2oe1JVGFLMLHZtCo2FFqZwtKA5gd9xbuEu7PH72";
pub const AUTHORITY_SECRET: &str = "mkDLTBBRxdBv998612qipDYoTK3YUrqLe8uWw7gu3iXbSrn2n";

/// Another valid authority key (secp256k1's generator, x-only): the "wrong key" of the tests.
pub fn other_authority_key() -> String {
    let mut g = [0u8; 32];
    let hex = "79be667ef9dcbbac55a06295ce870b07029bfcdb2dce28d959f2815b16f81798";
    for (i, b) in g.iter_mut().enumerate() {
        *b = u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).expect("hex");
    }
    encode_authority_key(&g)
}

/// Test pool settings.
#[derive(Clone, Debug)]
pub struct TestPoolConfig {
    /// Extranonce bytes granted to roll (a request for more is refused, as a pool would).
    pub rollable_extranonce: u16,
    /// The channel target (little-endian), before any `SetTarget`.
    pub target: [u8; 32],
    /// Shares per `SubmitShares.Success` at most; a partial batch is acknowledged after `ack_flush`.
    pub batch_size: u32,
    pub ack_flush: Duration,
    /// A new (non-future) job this often, on the same previous block.
    pub job_interval: Option<Duration>,
    /// A new previous block this often (a future job and SetNewPrevHash).
    pub block_interval: Option<Duration>,
    /// Shifts the certificate's validity window (seconds; negative: issued in the past).
    pub cert_clock_offset: i64,
    pub cert_validity: Duration,
    /// The network target in compact form (hard enough that test shares are not blocks).
    pub nbits: u32,
    /// Extra coinbase outputs (OP_RETURN, 92 bytes each) in every template: 700 make a coinbase
    /// of about 64 KB, near the most a job's coinbase suffix carries.
    pub coinbase_padding: usize,
    /// Made-up transactions' hashes in the merkle path (a real block has about 12 levels).
    pub merkle_path_len: u8,
}

impl Default for TestPoolConfig {
    fn default() -> Self {
        TestPoolConfig {
            rollable_extranonce: 4,
            // difficulty 1/4000 with its low bytes not round: exactness shows
            target: exact_target(4000),
            batch_size: 4,
            ack_flush: Duration::from_millis(100),
            job_interval: Some(Duration::from_secs(2)),
            block_interval: None,
            cert_clock_offset: 0,
            cert_validity: Duration::from_secs(3600),
            nbits: 0x1b04_04cb,
            coinbase_padding: 0,
            merkle_path_len: 2,
        }
    }
}

/// The difficulty-1 target times `mul`, then its low 16 bytes set to a pattern that no
/// difficulty-to-target rounding reproduces (little-endian).
pub fn exact_target(mul: u64) -> [u8; 32] {
    // difficulty-1 target: 0x00000000ffff0000...; times mul, done in u128 halves
    // the top 16 bytes of the big-endian number: 0x00000000_ffff0000_00000000_00000000
    let hi: u128 = 0xffffu128 << 80;
    let hi = hi.checked_mul(mul as u128).expect("target fits");
    let mut be = [0u8; 32];
    be[..16].copy_from_slice(&hi.to_be_bytes());
    be[16..].copy_from_slice(&0x0123_4567_89ab_cdef_fedc_ba98_7654_3210u128.to_be_bytes());
    be.reverse();
    be
}

/// Channels one connection may have open at once (the reference translator opens one per
/// miner when it does not aggregate them).
pub const MAX_CHANNELS_PER_CONNECTION: usize = 64;

/// One channel: what it was and what the pool counted on it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ChannelStats {
    /// The connection it was opened on (0 for the pool's first connection).
    pub connection: u64,
    pub channel_id: u32,
    /// The user identity it was opened with.
    pub user_identity: String,
    pub standard: bool,
    /// Shares `validate_share` accepted on it.
    pub valid: u64,
    /// Of those, covered by a `SubmitShares.Success` that was written.
    pub credited: u64,
    pub rejected: u64,
    /// The client closed it (`CloseChannel`).
    pub closed: bool,
}

/// What the pool saw and credited, all connections together.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PoolStats {
    pub connections: u64,
    pub channels_opened: u64,
    /// Shares `validate_share` accepted (valid or block).
    pub valid: u64,
    /// Valid shares covered by a `SubmitShares.Success` that was written: what the pool credits.
    pub credited: u64,
    /// Rejections by error code.
    pub rejected: BTreeMap<String, u64>,
    /// Shares received and not checked (the connection closed on them, as a fault).
    pub dropped: u64,
    /// SetupConnection flags of each connection, in order.
    pub setup_flags: Vec<u32>,
    /// Requested `min_extranonce_size` of each extended channel open.
    pub min_extranonce_asked: Vec<u16>,
    /// Standard channels opened (also counted in `channels_opened`).
    pub standard_channels: u64,
    /// Handshakes or setups that failed (say why).
    pub errors: Vec<String>,
    /// When each share arrived (decrypted and parsed), by sequence number: for the submit
    /// latency bench.
    pub arrivals: Vec<(u32, std::time::Instant)>,
    /// Every channel opened, in order, with its own counts (they add up to `valid`,
    /// `credited` and the rejections on open channels).
    pub channels: Vec<ChannelStats>,
}

/// A fault to inject into every live connection.
#[derive(Clone, Debug)]
pub enum Fault {
    /// Close the connection when the next share arrives, without answering it.
    CloseOnNextSubmit,
    /// SetTarget to this (little-endian), then a new job (the target applies to it).
    SetTarget([u8; 32]),
    /// A new extranonce prefix, then a new job.
    SetExtranoncePrefix,
    /// A frame of a message type no parser knows.
    UnknownMessage,
    /// A frame of this many payload bytes (of an unknown type).
    OversizedFrame(usize),
    /// A new job on the same previous block.
    NewJob,
    /// A new previous block.
    NewBlock,
    Reconnect { host: String, port: u16 },
    CloseChannel,
}

struct Shared {
    stats: Mutex<PoolStats>,
    cfg: TestPoolConfig,
    public: [u8; 32],
    secret: [u8; 32],
    faults: broadcast::Sender<Fault>,
}

/// A running test pool (stops when dropped).
#[derive(Debug)]
pub struct TestPool {
    addr: SocketAddr,
    shared: Arc<Shared>,
    task: tokio::task::JoinHandle<()>,
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shared").finish_non_exhaustive()
    }
}

impl Drop for TestPool {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl TestPool {
    /// Listen on 127.0.0.1 (a free port) on the current runtime.
    pub async fn start(cfg: TestPoolConfig) -> std::io::Result<TestPool> {
        Self::start_on("127.0.0.1:0", cfg).await
    }

    pub async fn start_on(addr: &str, cfg: TestPoolConfig) -> std::io::Result<TestPool> {
        let listener = TcpListener::bind(addr).await?;
        let addr = listener.local_addr()?;
        let public = decode_authority_key(AUTHORITY_PUBLIC).expect("the reference key decodes");
        let secret_bytes = bitcoin::base58::decode_check(AUTHORITY_SECRET).expect("the reference secret decodes");
        let mut secret = [0u8; 32];
        secret.copy_from_slice(&secret_bytes);
        let (faults, _) = broadcast::channel(64);
        let shared = Arc::new(Shared { stats: Mutex::new(PoolStats::default()), cfg, public, secret, faults });
        let sh = shared.clone();
        let task = tokio::spawn(async move {
            let mut next_conn = 0u64;
            while let Ok((stream, _)) = listener.accept().await {
                sh.stats().connections += 1;
                let (sh2, id) = (sh.clone(), next_conn);
                next_conn += 1;
                let faults = sh.faults.subscribe();
                tokio::spawn(async move {
                    if let Err(e) = serve(stream, sh2.clone(), faults, id).await {
                        tracing::debug!(error = %e, "test pool connection ended");
                        sh2.stats().errors.push(e.to_string());
                    }
                });
            }
        });
        Ok(TestPool { addr, shared, task })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `stratum2+tcp://127.0.0.1:PORT/KEY` with the pool's real authority key.
    pub fn url(&self) -> String {
        format!("stratum2+tcp://{}/{}", self.addr, AUTHORITY_PUBLIC)
    }

    pub fn stats(&self) -> PoolStats {
        self.shared.stats().clone()
    }

    /// The `i`th share arrival (sequence number, when), without copying the rest of the stats.
    pub fn arrival(&self, i: usize) -> Option<(u32, std::time::Instant)> {
        self.shared.stats().arrivals.get(i).copied()
    }

    /// Shares arrived so far.
    pub fn arrivals(&self) -> usize {
        self.shared.stats().arrivals.len()
    }

    /// Inject a fault into every live connection.
    pub fn inject(&self, f: Fault) {
        let _ = self.shared.faults.send(f);
    }
}

impl Shared {
    fn stats(&self) -> std::sync::MutexGuard<'_, PoolStats> {
        self.stats.lock().unwrap_or_else(|e| e.into_inner())
    }
}

fn now() -> u32 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs() as u32).unwrap_or(0)
}

/// The coinbase output the pool pays to (a P2WPKH script, as in channels_sv2's tests).
fn reward_outputs() -> Vec<TxOut> {
    let mut script = vec![0u8, 20];
    script.extend_from_slice(&[0xeb, 0xe1, 0xb7, 0xdc, 0xc2, 0x93, 0xcc, 0xaa, 0x0e, 0xe7, 0x43, 0xa8, 0x6f, 0x89, 0xdf, 0x82, 0x58, 0xc2, 0x08, 0xfc]);
    vec![TxOut { value: Amount::from_sat(5_000_000_000), script_pubkey: ScriptBuf::from(script) }]
}

/// The reference server-side channel a connection opened.
enum Chan {
    Extended(ExtendedChannel),
    Standard(StandardChannel),
}

impl Chan {
    fn channel_id(&self) -> u32 {
        match self {
            Chan::Extended(c) => c.get_channel_id(),
            Chan::Standard(c) => c.get_channel_id(),
        }
    }

    fn set_target(&mut self, t: bitcoin::Target) -> Result<(), Error> {
        match self {
            Chan::Extended(c) => c.set_target(t).map_err(|e| Error::Protocol(format!("set_target: {e:?}"))),
            Chan::Standard(c) => c.set_target(t).map_err(|e| Error::Protocol(format!("set_target: {e:?}"))),
        }
    }

    fn on_new_template(&mut self, t: NewTemplateOwned) -> Result<(), Error> {
        match self {
            Chan::Extended(c) => c.on_new_template(t, reward_outputs()).map_err(|e| Error::Protocol(format!("on_new_template: {e:?}"))),
            Chan::Standard(c) => c.on_new_template(t, reward_outputs()).map_err(|e| Error::Protocol(format!("on_new_template: {e:?}"))),
        }
    }

    /// The active job's message.
    fn active_job(&self) -> MiningOwned {
        match self {
            Chan::Extended(c) => MiningOwned::NewExtendedMiningJob(c.get_active_job().expect("a non-future job is active").get_job_message().clone()),
            Chan::Standard(c) => MiningOwned::NewMiningJob(c.get_active_job().expect("a non-future job is active").get_job_message().clone()),
        }
    }

    /// The future job made from template `template_id`: its id and message.
    fn future_job(&self, template_id: u64) -> (u32, MiningOwned) {
        match self {
            Chan::Extended(c) => {
                let id = c.get_future_job_id_from_template_id(template_id).expect("the future job");
                (id, MiningOwned::NewExtendedMiningJob(c.get_future_job(id).expect("the future job").get_job_message().clone()))
            }
            Chan::Standard(c) => {
                let id = c.get_future_job_id_from_template_id(template_id).expect("the future job");
                (id, MiningOwned::NewMiningJob(c.get_future_job(id).expect("the future job").get_job_message().clone()))
            }
        }
    }

    fn on_set_new_prev_hash(&mut self, p: TdpSetNewPrevHash) -> Result<(), Error> {
        match self {
            Chan::Extended(c) => c.on_set_new_prev_hash(p).map_err(|e| Error::Protocol(format!("on_set_new_prev_hash: {e:?}"))),
            Chan::Standard(c) => c.on_set_new_prev_hash(p).map_err(|e| Error::Protocol(format!("on_set_new_prev_hash: {e:?}"))),
        }
    }
}

/// A channel open on a connection, with its shares not yet acknowledged.
struct Open {
    chan: Chan,
    /// Valid shares not yet acknowledged, and the last valid sequence number.
    unacked: u32,
    last_seq: u32,
    /// Its entry in [`PoolStats::channels`].
    stats: usize,
}

struct Conn {
    w: Writer,
    sh: Arc<Shared>,
    /// The connection's number in [`PoolStats::channels`] (0 for the first).
    conn_index: u64,
    /// Open channels by id, in the order they opened (ids count up from 1).
    channels: BTreeMap<u32, Open>,
    next_channel_id: u32,
    allocator: ExtranonceAllocator,
    template_id: u64,
    block: u8,
    close_on_submit: bool,
    /// After an oversized frame: shares are counted dropped, nothing is answered.
    dead: bool,
}

impl Conn {
    fn template(&mut self, future: bool) -> NewTemplateOwned {
        self.template_id += 1;
        let t = self.template_id;
        // the witness commitment output of channels_sv2's test vectors
        let mut outputs = vec![
            0, 0, 0, 0, 0, 0, 0, 0, 38, 106, 36, 170, 33, 169, 237, 226, 246, 28, 63, 113, 209, 222, 253, 63, 169, 153, 223, 163, 105,
            83, 117, 92, 105, 6, 137, 121, 153, 98, 180, 139, 235, 216, 54, 151, 78, 140, 249,
        ];
        let padding = self.sh.cfg.coinbase_padding;
        for i in 0..padding {
            // 0 sats, OP_RETURN OP_PUSHDATA1 80 <80 bytes>
            outputs.extend_from_slice(&[0u8; 8]);
            outputs.extend_from_slice(&[83, 0x6a, 0x4c, 80]);
            outputs.extend(std::iter::repeat_n(i as u8, 80));
        }
        let path: Vec<U256Owned> = (0..self.sh.cfg.merkle_path_len).map(|i| U256Owned::from([0x11u8.wrapping_mul(i + 1); 32])).collect();
        NewTemplateOwned {
            template_id: t,
            future_template: future,
            version: 0x2000_0000,
            coinbase_tx_version: 2,
            // BIP 34 height push, then a byte that makes each template's coinbase differ
            coinbase_prefix: B0255Owned::new(vec![0x03, 0x10, 0x27, 0x00, t as u8]).expect("short"),
            coinbase_tx_input_sequence: 0xffff_ffff,
            coinbase_tx_value_remaining: 5_000_000_000,
            coinbase_tx_outputs_count: 1 + padding as u32,
            coinbase_tx_outputs: B064KOwned::new(outputs).expect("short"),
            coinbase_tx_locktime: 0,
            // made-up transactions, so the merkle path is not empty
            merkle_path: Seq0255Owned::new(path).expect("at most 255"),
        }
    }

    async fn send(&mut self, m: AnyMessageOwned) -> Result<(), Error> {
        self.w.send(m).await
    }

    fn ids(&self) -> Vec<u32> {
        self.channels.keys().copied().collect()
    }

    /// A new (live) job on every open channel, on the same previous block.
    async fn new_job(&mut self) -> Result<(), Error> {
        if self.channels.is_empty() {
            self.template(false);
        }
        for id in self.ids() {
            let t = self.template(false);
            let ch = &mut self.channels.get_mut(&id).expect("open").chan;
            ch.on_new_template(t)?;
            let job = ch.active_job();
            self.send(AnyMessageOwned::Mining(job)).await?;
        }
        Ok(())
    }

    /// A new previous block on every open channel.
    async fn new_block(&mut self) -> Result<(), Error> {
        self.block = self.block.wrapping_add(1);
        if self.channels.is_empty() {
            self.template(true);
        }
        for id in self.ids() {
            self.block_on(id).await?;
        }
        Ok(())
    }

    /// A future job and the `SetNewPrevHash` of the current previous block, on channel `id`.
    async fn block_on(&mut self, id: u32) -> Result<(), Error> {
        let t = self.template(true);
        let template_id = t.template_id;
        let block = self.block;
        let nbits = self.sh.cfg.nbits;
        let ch = &mut self.channels.get_mut(&id).expect("open").chan;
        ch.on_new_template(t)?;
        let (job_id, job) = ch.future_job(template_id);
        let mut prev = [0x5au8; 32];
        prev[0] = block;
        prev[31] = 0; // looks like a block hash (leading zeros in display order)
        let ntime = now();
        let network = bitcoin::Target::from_compact(bitcoin::CompactTarget::from_consensus(nbits)).to_le_bytes();
        ch.on_set_new_prev_hash(TdpSetNewPrevHash {
            template_id,
            prev_hash: U256Owned::from(prev),
            header_timestamp: ntime,
            n_bits: nbits,
            target: U256Owned::from(network),
        })?;
        self.send(AnyMessageOwned::Mining(job)).await?;
        self.send(AnyMessageOwned::Mining(MiningOwned::SetNewPrevHash(SetNewPrevHashOwned { channel_id: id, job_id, prev_hash: U256Owned::from(prev), min_ntime: ntime, nbits })))
            .await
    }

    /// A channel just opened: its first job. The first channel of a connection starts a new
    /// previous block; a later one joins the block the others are on (so opening a channel
    /// voids no other channel's work).
    async fn opened(&mut self, chan: Chan, user: String) -> Result<(), Error> {
        let id = chan.channel_id();
        let first = self.channels.is_empty();
        let standard = matches!(chan, Chan::Standard(_));
        let stats = {
            let mut st = self.sh.stats();
            st.channels_opened += 1;
            if standard {
                st.standard_channels += 1;
            }
            st.channels.push(ChannelStats { connection: self.conn_index, channel_id: id, user_identity: user, standard, ..Default::default() });
            st.channels.len() - 1
        };
        self.channels.insert(id, Open { chan, unacked: 0, last_seq: 0, stats });
        if first {
            self.block = self.block.wrapping_add(1);
        }
        self.block_on(id).await
    }

    /// Acknowledge every channel's valid shares not yet acknowledged.
    async fn ack(&mut self) -> Result<(), Error> {
        for id in self.ids() {
            self.ack_channel(id).await?;
        }
        Ok(())
    }

    async fn ack_channel(&mut self, id: u32) -> Result<(), Error> {
        let Some(open) = self.channels.get_mut(&id) else { return Ok(()) };
        if open.unacked == 0 {
            return Ok(());
        }
        let (n, stats) = (open.unacked, open.stats);
        let msg = SubmitSharesSuccess { channel_id: id, last_sequence_number: open.last_seq, new_submits_accepted_count: n, new_shares_sum: n as u64 };
        open.unacked = 0;
        self.send(AnyMessageOwned::Mining(MiningOwned::SubmitSharesSuccess(msg))).await?;
        let mut st = self.sh.stats();
        st.credited += n as u64;
        st.channels[stats].credited += n as u64;
        Ok(())
    }

    /// The next channel id, and `OpenMiningChannel.Error` for `request_id` if this connection
    /// has no room for another channel.
    async fn next_id(&mut self, request_id: u32) -> Result<Option<u32>, Error> {
        if self.channels.len() >= MAX_CHANNELS_PER_CONNECTION {
            self.send(AnyMessageOwned::Mining(MiningOwned::OpenMiningChannelError(OpenMiningChannelErrorOwned {
                request_id,
                error_code: Str0255Owned::new(b"max-channels-reached".to_vec()).expect("short"),
            })))
            .await?;
            return Ok(None);
        }
        let id = self.next_channel_id;
        self.next_channel_id += 1;
        Ok(Some(id))
    }

    async fn on_message(&mut self, m: AnyMessageOwned) -> Result<bool, Error> {
        match m {
            AnyMessageOwned::Mining(MiningOwned::OpenExtendedMiningChannel(o)) => {
                self.sh.stats().min_extranonce_asked.push(o.min_extranonce_size);
                let cfg = self.sh.cfg.clone();
                if o.min_extranonce_size > cfg.rollable_extranonce {
                    self.send(AnyMessageOwned::Mining(MiningOwned::OpenMiningChannelError(OpenMiningChannelErrorOwned {
                        request_id: o.request_id,
                        error_code: Str0255Owned::new(b"min-extranonce-size-too-large".to_vec()).expect("short"),
                    })))
                    .await?;
                    return Ok(true);
                }
                let Some(channel_id) = self.next_id(o.request_id).await? else { return Ok(true) };
                let prefix = self.allocator.allocate_extended(o.min_extranonce_size as usize).map_err(|e| Error::Protocol(format!("allocate: {e:?}")))?;
                let mut max = [0u8; 32];
                max.copy_from_slice(o.max_target.as_bytes());
                let max_target = bitcoin::Target::from_le_bytes(max);
                let user = String::from_utf8_lossy(o.user_identity.as_bytes()).into_owned();
                let mut ch = ExtendedChannel::new_for_pool(
                    channel_id,
                    user.clone(),
                    prefix,
                    max_target,
                    o.nominal_hash_rate.max(1.0),
                    true,
                    cfg.rollable_extranonce,
                    cfg.batch_size as usize,
                    10.0,
                    "hashrig-test".into(),
                    None,
                )
                .map_err(|e| Error::Protocol(format!("new_for_pool: {e:?}")))?;
                let target = bitcoin::Target::from_le_bytes(cfg.target).min(max_target);
                ch.set_target(target).map_err(|e| Error::Protocol(format!("set_target: {e:?}")))?;
                let ok = OpenExtendedMiningChannelSuccessOwned {
                    request_id: o.request_id,
                    channel_id,
                    target: U256Owned::from(target.to_le_bytes()),
                    extranonce_size: cfg.rollable_extranonce,
                    extranonce_prefix: B032Owned::new(ch.get_extranonce_prefix().to_vec()).expect("<= 32"),
                    group_channel_id: 0,
                };
                self.send(AnyMessageOwned::Mining(MiningOwned::OpenExtendedMiningChannelSuccess(ok))).await?;
                self.opened(Chan::Extended(ch), user).await?;
            }
            AnyMessageOwned::Mining(MiningOwned::OpenStandardMiningChannel(o)) => {
                let cfg = self.sh.cfg.clone();
                let Some(channel_id) = self.next_id(o.request_id).await? else { return Ok(true) };
                let prefix = self.allocator.allocate_standard().map_err(|e| Error::Protocol(format!("allocate: {e:?}")))?;
                let mut max = [0u8; 32];
                max.copy_from_slice(o.max_target.as_bytes());
                let max_target = bitcoin::Target::from_le_bytes(max);
                let user = String::from_utf8_lossy(o.user_identity.as_bytes()).into_owned();
                let mut ch = StandardChannel::new_for_pool(
                    channel_id,
                    user.clone(),
                    prefix,
                    max_target,
                    o.nominal_hash_rate.max(1.0),
                    cfg.batch_size as usize,
                    10.0,
                    "hashrig-test".into(),
                    None,
                )
                .map_err(|e| Error::Protocol(format!("new_for_pool: {e:?}")))?;
                let target = bitcoin::Target::from_le_bytes(cfg.target).min(max_target);
                ch.set_target(target).map_err(|e| Error::Protocol(format!("set_target: {e:?}")))?;
                let ok = OpenStandardMiningChannelSuccessOwned {
                    request_id: o.request_id,
                    channel_id,
                    target: U256Owned::from(target.to_le_bytes()),
                    extranonce_prefix: B032Owned::new(ch.get_extranonce_prefix().to_vec()).expect("<= 32"),
                    group_channel_id: 0,
                };
                self.send(AnyMessageOwned::Mining(MiningOwned::OpenStandardMiningChannelSuccess(ok))).await?;
                self.opened(Chan::Standard(ch), user).await?;
            }
            AnyMessageOwned::Mining(MiningOwned::SubmitSharesStandard(s)) => {
                let (channel_id, seq) = (s.channel_id, s.sequence_number);
                if let Some(go_on) = self.arrived(seq).await? {
                    return Ok(go_on);
                }
                let result = match self.channels.get_mut(&channel_id).map(|o| &mut o.chan) {
                    Some(Chan::Standard(ch)) => ch.validate_share(s),
                    Some(Chan::Extended(_)) => return Err(Error::Protocol(format!("SubmitSharesStandard on extended channel {channel_id}"))),
                    None => return self.unknown_channel(channel_id, seq).await,
                };
                self.on_validated(channel_id, seq, result).await?;
            }
            AnyMessageOwned::Mining(MiningOwned::SubmitSharesExtended(s)) => {
                let (channel_id, seq) = (s.channel_id, s.sequence_number);
                if let Some(go_on) = self.arrived(seq).await? {
                    return Ok(go_on);
                }
                let result = match self.channels.get_mut(&channel_id).map(|o| &mut o.chan) {
                    Some(Chan::Extended(ch)) => ch.validate_share(s),
                    Some(Chan::Standard(_)) => return Err(Error::Protocol(format!("SubmitSharesExtended on standard channel {channel_id}"))),
                    None => return self.unknown_channel(channel_id, seq).await,
                };
                self.on_validated(channel_id, seq, result).await?;
            }
            AnyMessageOwned::Mining(MiningOwned::CloseChannel(c)) => {
                // The client is done with it: what it sent before is checked and credited
                // (acknowledged, as a pool pays for valid work), then the channel is gone.
                self.ack_channel(c.channel_id).await?;
                if let Some(open) = self.channels.remove(&c.channel_id) {
                    self.sh.stats().channels[open.stats].closed = true;
                }
            }
            AnyMessageOwned::Mining(MiningOwned::UpdateChannel(_)) => {}
            other => tracing::debug!(message = %other, "test pool: message ignored"),
        }
        Ok(true)
    }

    /// Stamp a share's arrival. `Some(go_on)` when it is not to be checked: the connection is
    /// dead (go on, answering nothing), or closes on it as a fault (what came before is
    /// answered first).
    async fn arrived(&mut self, seq: u32) -> Result<Option<bool>, Error> {
        self.sh.stats().arrivals.push((seq, std::time::Instant::now()));
        if self.dead {
            self.sh.stats().dropped += 1;
            return Ok(Some(true));
        }
        if self.close_on_submit {
            self.sh.stats().dropped += 1;
            self.ack().await?;
            return Ok(Some(false));
        }
        Ok(None)
    }

    /// A share for a channel this connection does not have open: refused, as a pool does.
    async fn unknown_channel(&mut self, channel_id: u32, seq: u32) -> Result<bool, Error> {
        *self.sh.stats().rejected.entry("invalid-channel-id".into()).or_default() += 1;
        self.send(AnyMessageOwned::Mining(MiningOwned::SubmitSharesError(SubmitSharesErrorOwned {
            channel_id,
            sequence_number: seq,
            error_code: Str0255Owned::new(b"invalid-channel-id".to_vec()).expect("short"),
        })))
        .await?;
        Ok(true)
    }

    /// Count and answer what the reference validator said about share `seq` of channel `id`.
    async fn on_validated(&mut self, id: u32, seq: u32, result: Result<ShareValidationResult, ShareValidationError>) -> Result<(), Error> {
        let open = self.channels.get_mut(&id).expect("validated on an open channel");
        match result {
            Ok(ShareValidationResult::Valid(_)) | Ok(ShareValidationResult::BlockFound(..)) => {
                open.unacked += 1;
                open.last_seq = seq;
                let full = open.unacked >= self.sh.cfg.batch_size;
                {
                    let mut st = self.sh.stats();
                    st.valid += 1;
                    st.channels[open.stats].valid += 1;
                }
                if full {
                    self.ack_channel(id).await?;
                }
            }
            Err(e) => {
                let code = match e {
                    ShareValidationError::Invalid(c)
                    | ShareValidationError::Stale(c)
                    | ShareValidationError::InvalidJobId(c)
                    | ShareValidationError::DoesNotMeetTarget(c)
                    | ShareValidationError::VersionRollingNotAllowed(c)
                    | ShareValidationError::DuplicateShare(c)
                    | ShareValidationError::BadExtranonceSize(c) => c.to_string(),
                    other => return Err(Error::Protocol(format!("validate_share: {other:?}"))),
                };
                {
                    let mut st = self.sh.stats();
                    *st.rejected.entry(code.clone()).or_default() += 1;
                    st.channels[open.stats].rejected += 1;
                }
                // answers keep their order: acknowledge what came before first
                self.ack_channel(id).await?;
                self.send(AnyMessageOwned::Mining(MiningOwned::SubmitSharesError(SubmitSharesErrorOwned {
                    channel_id: id,
                    sequence_number: seq,
                    error_code: Str0255Owned::new(code.into_bytes()).expect("short"),
                })))
                .await?;
            }
        }
        Ok(())
    }

    async fn on_fault(&mut self, f: Fault) -> Result<bool, Error> {
        match f {
            Fault::CloseOnNextSubmit => self.close_on_submit = true,
            Fault::SetTarget(t) => {
                for id in self.ids() {
                    self.channels.get_mut(&id).expect("open").chan.set_target(bitcoin::Target::from_le_bytes(t))?;
                    self.send(AnyMessageOwned::Mining(MiningOwned::SetTarget(SetTargetOwned { channel_id: id, maximum_target: U256Owned::from(t) }))).await?;
                }
                self.new_job().await?;
            }
            Fault::SetExtranoncePrefix => {
                let rollable = self.sh.cfg.rollable_extranonce as usize;
                for id in self.ids() {
                    let standard = matches!(self.channels[&id].chan, Chan::Standard(_));
                    let prefix = if standard { self.allocator.allocate_standard() } else { self.allocator.allocate_extended(rollable) }
                        .map_err(|e| Error::Protocol(format!("allocate: {e:?}")))?;
                    let bytes = prefix.as_bytes().to_vec();
                    match &mut self.channels.get_mut(&id).expect("open").chan {
                        Chan::Extended(c) => c.set_extranonce_prefix(prefix).map_err(|e| Error::Protocol(format!("set_extranonce_prefix: {e:?}")))?,
                        Chan::Standard(c) => c.set_extranonce_prefix(prefix).map_err(|e| Error::Protocol(format!("set_extranonce_prefix: {e:?}")))?,
                    }
                    self.send(AnyMessageOwned::Mining(MiningOwned::SetExtranoncePrefix(SetExtranoncePrefixOwned {
                        channel_id: id,
                        extranonce_prefix: B032Owned::new(bytes).expect("<= 32"),
                    })))
                    .await?;
                }
                self.new_job().await?;
            }
            Fault::UnknownMessage => self.raw_frame(0x7e, 8).await?,
            Fault::OversizedFrame(n) => {
                // Answer what came before; after garbage like this the connection is done
                // (shares still coming are not checked: their answers would never be read).
                self.ack().await?;
                self.raw_frame(0x7d, n).await?;
                self.dead = true;
            }
            Fault::NewJob => self.new_job().await?,
            Fault::NewBlock => self.new_block().await?,
            Fault::Reconnect { host, port } => {
                self.send(AnyMessageOwned::Common(CommonMessagesOwned::Reconnect(ReconnectOwned {
                    new_host: Str0255Owned::new(host.into_bytes()).expect("short"),
                    new_port: port,
                })))
                .await?
            }
            Fault::CloseChannel => {
                for id in self.ids() {
                    self.ack_channel(id).await?;
                    self.send(AnyMessageOwned::Mining(MiningOwned::CloseChannel(CloseChannelOwned {
                        channel_id: id,
                        reason_code: Str0255Owned::new(b"test-close".to_vec()).expect("short"),
                    })))
                    .await?;
                }
            }
        }
        Ok(true)
    }

    /// A frame with a message type no parser knows, `len` payload bytes.
    async fn raw_frame(&mut self, msg_type: u8, len: usize) -> Result<(), Error> {
        let mut bytes = vec![0u8, 0, msg_type, len as u8, (len >> 8) as u8, (len >> 16) as u8];
        bytes.resize(6 + len, 0xab);
        let frame = SerializedFrame::from_bytes(bytes).map_err(|e| Error::Codec(format!("{e:?}")))?;
        self.w.send_frame(frame).await
    }
}

async fn serve(stream: tokio::net::TcpStream, sh: Arc<Shared>, mut faults: broadcast::Receiver<Fault>, conn_index: u64) -> Result<(), Error> {
    let cfg = sh.cfg.clone();
    let (mut w, mut rx) = conn::respond(stream, sh.public, sh.secret, cfg.cert_validity, cfg.cert_clock_offset).await?;
    let setup = match rx.recv().await {
        Some(Inbound::Message(AnyMessageOwned::Common(CommonMessagesOwned::SetupConnection(s)))) => s,
        Some(Inbound::Closed(e)) => return Err(e),
        other => return Err(Error::Protocol(format!("expected SetupConnection, got {other:?}"))),
    };
    sh.stats().setup_flags.push(setup.flags);
    w.send(AnyMessageOwned::Common(CommonMessagesOwned::SetupConnectionSuccess(SetupConnectionSuccess { used_version: 2, flags: 0 })))
        .await?;
    // one byte of server tag, one of channel index (256 channels), then the rolled part
    let total = 2 + cfg.rollable_extranonce as u8;
    let allocator = ExtranonceAllocator::new(vec![0x68], total, 256).map_err(|e| Error::Protocol(format!("allocator: {e:?}")))?;
    let mut c = Conn {
        w,
        sh: sh.clone(),
        conn_index,
        channels: BTreeMap::new(),
        next_channel_id: 1,
        allocator,
        template_id: 0,
        block: 0,
        close_on_submit: false,
        dead: false,
    };
    let mut flush = tokio::time::interval(cfg.ack_flush);
    let far = Duration::from_secs(86_400 * 365);
    let mut jobs = tokio::time::interval(cfg.job_interval.unwrap_or(far));
    jobs.tick().await;
    let mut blocks = tokio::time::interval(cfg.block_interval.unwrap_or(far));
    blocks.tick().await;
    loop {
        let go_on = tokio::select! {
            m = rx.recv() => match m {
                None => false,
                Some(Inbound::Closed(_)) => false,
                Some(Inbound::Unknown { .. }) => true,
                Some(Inbound::Message(m)) => c.on_message(m).await?,
            },
            f = faults.recv() => match f {
                Ok(f) => c.on_fault(f).await?,
                Err(_) => true,
            },
            _ = flush.tick() => { if !c.dead { c.ack().await? } true }
            _ = jobs.tick() => { if !c.channels.is_empty() && !c.dead { c.new_job().await? } true }
            _ = blocks.tick() => { if !c.channels.is_empty() && !c.dead { c.new_block().await? } true }
        };
        if !go_on {
            c.w.close().await;
            return Ok(());
        }
    }
}

