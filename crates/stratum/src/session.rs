//! The sans-IO Stratum v1 session: lines in, typed events and lines to send out.
//!
//! No sockets and no clocks here: the transport feeds every received line to
//! [`Session::handle_line`], writes every [`Event::Send`] it gets back, and hands found shares
//! to [`Session::submit`]. That makes every message and every reply testable without a network.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::fmt;
use std::sync::Arc;

use bitcoin::block::Version;
use bitcoin::CompactTarget;
use hashrig_work::job::CoinbaseJob;
use serde_json::{json, Value};

use crate::wire::{
    self, ConfigureResult, HexU32, Notify, ProtocolError, Reply, ServerMessage, StratumError, SubscribeResult,
};

/// A pool password. Its `Debug` and `Display` never show it, so it cannot leak into logs.
#[derive(Clone, PartialEq, Eq)]
pub struct Password(String);

impl Password {
    pub fn new(s: impl Into<String>) -> Self {
        Password(s.into())
    }
    /// The secret itself, for the `mining.authorize` request only.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Password {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Password(***)")
    }
}

impl fmt::Display for Password {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

/// How a session introduces itself.
#[derive(Clone, Debug)]
pub struct SessionConfig {
    pub user: String,
    pub password: Password,
    /// Sent in `mining.subscribe` and answered to `client.get_version`.
    pub agent: String,
    /// The version-rolling mask to ask for in `mining.configure`; `None`: do not ask.
    pub version_rolling: Option<u32>,
    /// Sent as `mining.suggest_difficulty` after authorize.
    pub suggest_difficulty: Option<f64>,
    /// Send `mining.extranonce.subscribe` after authorize.
    pub extranonce_subscribe: bool,
}

impl SessionConfig {
    pub fn new(user: impl Into<String>, password: Password) -> Self {
        SessionConfig {
            user: user.into(),
            password,
            agent: concat!("hashrig/", env!("CARGO_PKG_VERSION")).into(),
            version_rolling: Some(0x1fff_e000),
            suggest_difficulty: None,
            extranonce_subscribe: false,
        }
    }
}

/// A job from the pool, ready for header assembly.
#[derive(Clone, Debug, PartialEq)]
pub struct PoolJob {
    /// The pool's job id, echoed in submits.
    pub job_id: String,
    /// Header parts (with this session's extranonce1 and the granted version mask).
    pub job: CoinbaseJob,
    /// Share difficulty for this job (the last `set_difficulty` before its notify).
    pub difficulty: f64,
    /// Older jobs are void: drop their work.
    pub clean: bool,
}

/// A share to submit: what a miner found for one of the session's jobs.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Share {
    pub job_id: String,
    pub extranonce2: Vec<u8>,
    pub ntime: u32,
    pub nonce: u32,
    /// The full header version the nonce was found with (the job's, or a rolled one).
    pub version: u32,
}

/// What the pool said about a share.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ShareOutcome {
    Accepted,
    /// `reason` is the pool's, sanitised ([`crate::wire::sanitize_reason`]): no control or
    /// bidi characters, at most [`crate::wire::MAX_REASON_CHARS`] characters.
    Rejected { reason: String },
}

/// Why a share could not be submitted on this session.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SubmitError {
    #[error("job {0} is unknown or was replaced by a clean job: the share is stale")]
    Stale(String),
    #[error("the share's version {version:#010x} leaves the granted mask {mask:#010x}")]
    VersionOutsideMask { version: u32, mask: u32 },
    #[error("extranonce2 is {got} bytes, the session wants {want}")]
    Extranonce2Size { got: usize, want: usize },
    #[error("not yet subscribed")]
    NotSubscribed,
}

/// Something the transport or the miner must act on.
#[derive(Clone, Debug, PartialEq)]
pub enum Event {
    /// Write this line (it ends with a newline) to the pool.
    Send(String),
    /// A new job. `clean` jobs void all older ones.
    Job(Arc<PoolJob>),
    /// The pool answered a share; `request` is the JSON-RPC id its `mining.submit` went out
    /// with (as returned by [`Session::submit_request`]).
    ShareResult { request: u64, share: Share, outcome: ShareOutcome },
    /// The pool answered authorize.
    Authorized(bool),
    /// The version-rolling mask now in force (`None`: no rolling).
    VersionMask(Option<u32>),
    /// The pool asks us to reconnect (optionally elsewhere, after a wait).
    Reconnect(wire::Reconnect),
    /// A line was refused; it is counted in the stats and logged by the session.
    Protocol(ProtocolError),
}

/// How many distinct reject reasons are counted apart (in [`SessionStats::rejected`] and the
/// client's stats); later new reasons are counted under [`OTHER_REASON`].
pub const MAX_REJECT_REASONS: usize = 16;
/// Where reject reasons beyond [`MAX_REJECT_REASONS`] are counted.
pub const OTHER_REASON: &str = "other";

/// Count one reject under its reason, or under [`OTHER_REASON`] once [`MAX_REJECT_REASONS`]
/// other reasons are counted, so a pool cannot grow the map (or a metric's label set) without
/// bound.
pub fn count_reject(rejected: &mut BTreeMap<String, u64>, reason: &str) {
    let own = rejected.keys().filter(|k| k.as_str() != OTHER_REASON).count();
    let key = if rejected.contains_key(reason) || own < MAX_REJECT_REASONS { reason } else { OTHER_REASON };
    *rejected.entry(key.to_owned()).or_default() += 1;
}

/// Counters a session keeps.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SessionStats {
    pub accepted: u64,
    /// Rejects by the reason the pool gave (sanitised; at most [`MAX_REJECT_REASONS`] of their
    /// own, the rest under [`OTHER_REASON`]).
    pub rejected: BTreeMap<String, u64>,
    /// Shares that could not be submitted because their job was gone.
    pub stale: u64,
    /// Lines refused, by [`ProtocolError::kind`].
    pub protocol_errors: BTreeMap<&'static str, u64>,
}

impl SessionStats {
    pub fn rejected_total(&self) -> u64 {
        self.rejected.values().sum()
    }
}

#[derive(Clone, Debug)]
enum Pending {
    Configure,
    Subscribe,
    Authorize,
    Submit(Share),
    Other,
}

/// How many jobs are kept for late shares when pools never send clean jobs.
const MAX_JOBS: usize = 32;

/// How many abandoned submit ids ([`Session::abandon`]) are remembered to ignore late answers.
pub const MAX_ABANDONED: usize = 4096;

/// One Stratum v1 conversation with one pool.
#[derive(Debug)]
pub struct Session {
    cfg: SessionConfig,
    next_id: u64,
    pending: HashMap<u64, Pending>,
    extranonce: Option<(Vec<u8>, usize)>,
    version_mask: Option<u32>,
    authorized: Option<bool>,
    next_difficulty: f64,
    jobs: VecDeque<Arc<PoolJob>>,
    stats: SessionStats,
    /// Submits given up on, oldest first.
    abandoned: VecDeque<u64>,
}

impl Session {
    pub fn new(cfg: SessionConfig) -> Self {
        Session {
            cfg,
            next_id: 1,
            pending: HashMap::new(),
            extranonce: None,
            version_mask: None,
            authorized: None,
            // Pools that never send set_difficulty mean difficulty 1 (cgminer resets to 1).
            next_difficulty: 1.0,
            jobs: VecDeque::new(),
            stats: SessionStats::default(),
            abandoned: VecDeque::new(),
        }
    }

    fn request(&mut self, method: &str, params: Value, pending: Pending) -> Event {
        let id = self.next_id;
        self.next_id += 1;
        self.pending.insert(id, pending);
        Event::Send(wire::request(id, method, params))
    }

    /// The opening lines: `mining.configure` (when version rolling is wanted, BIP 310 says
    /// first), `mining.subscribe`, `mining.authorize`, sent without waiting for replies.
    pub fn start(&mut self) -> Vec<Event> {
        let mut out = Vec::new();
        if let Some(mask) = self.cfg.version_rolling {
            out.push(self.request(
                "mining.configure",
                json!([["version-rolling"], {"version-rolling.mask": format!("{mask:08x}"), "version-rolling.min-bit-count": 2}]),
                Pending::Configure,
            ));
        }
        let agent = self.cfg.agent.clone();
        out.push(self.request("mining.subscribe", json!([agent]), Pending::Subscribe));
        let auth = json!([self.cfg.user, self.cfg.password.expose()]);
        out.push(self.request("mining.authorize", auth, Pending::Authorize));
        out
    }

    pub fn stats(&self) -> &SessionStats {
        &self.stats
    }

    /// The mask granted by the pool (`None`: no version rolling).
    pub fn version_mask(&self) -> Option<u32> {
        self.version_mask
    }

    pub fn is_authorized(&self) -> bool {
        self.authorized == Some(true)
    }

    /// The current extranonce1 and extranonce2 size, once subscribed.
    pub fn extranonce(&self) -> Option<(&[u8], usize)> {
        self.extranonce.as_ref().map(|(e, n)| (e.as_slice(), *n))
    }

    /// The newest job, if any.
    pub fn current_job(&self) -> Option<&Arc<PoolJob>> {
        self.jobs.back()
    }

    /// The live job with this id.
    pub fn job(&self, job_id: &str) -> Option<&Arc<PoolJob>> {
        self.jobs.iter().rev().find(|j| j.job_id == job_id)
    }

    /// Is a share found for `job` (possibly on an earlier connection) still valid here? True
    /// when this session has a live job with the same id and the very same header parts.
    pub fn accepts_share_for(&self, job: &PoolJob) -> bool {
        self.job(&job.job_id).is_some_and(|live| live.job == job.job)
    }

    /// Take the shares sent but not yet answered (the connection is going away): the caller
    /// resubmits them elsewhere or counts them stale, never drops them.
    pub fn take_unanswered(&mut self) -> Vec<(Share, Option<Arc<PoolJob>>)> {
        let mut ids: Vec<u64> = self.pending.keys().copied().collect();
        ids.sort_unstable();
        let mut out = Vec::new();
        for id in ids {
            if let Some(Pending::Submit(share)) = self.pending.remove(&id) {
                let job = self.job(&share.job_id).cloned();
                out.push((share, job));
            }
        }
        out
    }

    /// Give up waiting for the answer to submit `request` (the transport resolved it as never
    /// answered): a late answer is then ignored, neither a share result nor a protocol error.
    /// The last [`MAX_ABANDONED`] abandoned ids are remembered.
    pub fn abandon(&mut self, request: u64) {
        if matches!(self.pending.get(&request), Some(Pending::Submit(_))) {
            self.pending.remove(&request);
            if self.abandoned.len() >= MAX_ABANDONED {
                self.abandoned.pop_front();
            }
            self.abandoned.push_back(request);
        }
    }

    /// Count a share that was never submitted because its job went away.
    pub fn count_stale(&mut self) {
        self.stats.stale += 1;
    }

    /// Count a line the transport refused before it got here (e.g. too long).
    pub fn count_protocol_error(&mut self, e: &ProtocolError) {
        tracing::warn!(kind = e.kind(), error = %e, "stratum line refused");
        *self.stats.protocol_errors.entry(e.kind()).or_default() += 1;
    }

    /// Build the `mining.submit` line for a share, or say why it cannot be sent (counted as
    /// stale when the job is gone).
    pub fn submit(&mut self, share: Share) -> Result<Event, SubmitError> {
        self.submit_request(share).map(|(_, ev)| ev)
    }

    /// As [`Session::submit`], giving the request id the answer will carry
    /// ([`Event::ShareResult`]'s `request`) and the line to send.
    pub fn submit_request(&mut self, share: Share) -> Result<(u64, Event), SubmitError> {
        let Some((_, en2_size)) = self.extranonce else {
            return Err(SubmitError::NotSubscribed);
        };
        let Some(job) = self.job(&share.job_id).cloned() else {
            self.stats.stale += 1;
            return Err(SubmitError::Stale(share.job_id));
        };
        if share.extranonce2.len() != job.job.extranonce2_size {
            return Err(SubmitError::Extranonce2Size { got: share.extranonce2.len(), want: en2_size });
        }
        let mask = self.version_mask.unwrap_or(0);
        if (share.version ^ job.job.version_bits()) & !mask != 0 {
            return Err(SubmitError::VersionOutsideMask { version: share.version, mask });
        }
        let mut params = vec![
            json!(self.cfg.user),
            json!(share.job_id),
            json!(hex::encode(&share.extranonce2)),
            json!(HexU32(share.ntime).to_string()),
            json!(HexU32(share.nonce).to_string()),
        ];
        if self.version_mask.is_some() {
            // BIP 310: the pool rebuilds (job_version & !mask) | (bits & mask).
            params.push(json!(HexU32(share.version & mask).to_string()));
        }
        let id = self.next_id;
        Ok((id, self.request("mining.submit", Value::Array(params), Pending::Submit(share))))
    }

    /// Feed one line (without its newline) from the pool.
    pub fn handle_line(&mut self, line: &str) -> Vec<Event> {
        let line = line.trim_end_matches(['\r', '\n']);
        if line.trim().is_empty() {
            return Vec::new();
        }
        match wire::parse_line(line) {
            Ok(msg) => self.handle_message(msg),
            Err(e) => {
                self.count_protocol_error(&e);
                vec![Event::Protocol(e)]
            }
        }
    }

    fn handle_message(&mut self, msg: ServerMessage) -> Vec<Event> {
        let mut out = Vec::new();
        match msg {
            ServerMessage::Reply(r) => self.handle_reply(r, &mut out),
            ServerMessage::Notify(n) => self.handle_notify(n, &mut out),
            ServerMessage::SetDifficulty(d) => {
                tracing::debug!(difficulty = d.0, "difficulty for the next job");
                self.next_difficulty = d.0;
            }
            ServerMessage::SetExtranonce(e) => {
                tracing::info!(extranonce1 = %hex::encode(&e.extranonce1), size = e.extranonce2_size, "new extranonce from the next job");
                self.extranonce = Some((e.extranonce1, e.extranonce2_size));
            }
            ServerMessage::SetVersionMask(m) => {
                let granted = self.cfg.version_rolling.map(|asked| asked & m.0);
                tracing::info!(mask = format!("{:08x}", m.0), "pool changed the version mask");
                self.version_mask = granted.filter(|m| *m != 0);
                out.push(Event::VersionMask(self.version_mask));
            }
            ServerMessage::Reconnect(r) => out.push(Event::Reconnect(r)),
            ServerMessage::Ping { id } => out.push(Event::Send(wire::reply(&id, json!("pong"), Value::Null))),
            ServerMessage::GetVersion { id } => {
                out.push(Event::Send(wire::reply(&id, json!(self.cfg.agent), Value::Null)))
            }
            ServerMessage::ShowMessage(m) => tracing::info!(message = %m, "message from the pool"),
            ServerMessage::Unknown { id, method } => {
                tracing::debug!(%method, "unhandled method");
                if !id.is_null() {
                    out.push(Event::Send(wire::reply(&id, Value::Null, json!([20, "unsupported method", null]))));
                }
            }
        }
        out
    }

    fn handle_reply(&mut self, r: Reply, out: &mut Vec<Event>) {
        let Some(p) = self.pending.remove(&r.id) else {
            if let Some(i) = self.abandoned.iter().position(|&a| a == r.id) {
                self.abandoned.remove(i);
                tracing::info!(request = r.id, accepted = r.is_ok(), "late answer to a submit already given up on; ignored");
                return;
            }
            let e = ProtocolError::UnexpectedReply { id: r.id.to_string() };
            self.count_protocol_error(&e);
            out.push(Event::Protocol(e));
            return;
        };
        match p {
            Pending::Configure => {
                let granted = if r.error.is_some() {
                    None
                } else {
                    match ConfigureResult::try_from(&r.result) {
                        Ok(c) => c.version_rolling_mask,
                        Err(e) => {
                            self.count_protocol_error(&e);
                            out.push(Event::Protocol(e));
                            None
                        }
                    }
                };
                // Never more than we asked for, never more than granted.
                let asked = self.cfg.version_rolling.unwrap_or(0);
                self.version_mask = granted.map(|g| g & asked).filter(|m| *m != 0);
                tracing::info!(mask = ?self.version_mask.map(|m| format!("{m:08x}")), "version rolling");
                out.push(Event::VersionMask(self.version_mask));
            }
            Pending::Subscribe => {
                if let Some(err) = &r.error {
                    tracing::warn!(reason = %err.reason(), "subscribe refused");
                    return;
                }
                match SubscribeResult::try_from(&r.result) {
                    Ok(s) => {
                        tracing::info!(extranonce1 = %hex::encode(&s.extranonce1), extranonce2_size = s.extranonce2_size, "subscribed");
                        self.extranonce = Some((s.extranonce1, s.extranonce2_size));
                    }
                    Err(e) => {
                        self.count_protocol_error(&e);
                        out.push(Event::Protocol(e));
                    }
                }
            }
            Pending::Authorize => {
                let ok = r.is_ok();
                self.authorized = Some(ok);
                if ok {
                    tracing::info!(user = %self.cfg.user, "authorized");
                    if let Some(d) = self.cfg.suggest_difficulty {
                        out.push(self.request("mining.suggest_difficulty", json!([d]), Pending::Other));
                    }
                    if self.cfg.extranonce_subscribe {
                        out.push(self.request("mining.extranonce.subscribe", json!([]), Pending::Other));
                    }
                } else {
                    let reason = r.error.as_ref().map(StratumError::reason).unwrap_or_else(|| "refused".into());
                    tracing::warn!(user = %self.cfg.user, %reason, "authorization refused");
                }
                out.push(Event::Authorized(ok));
            }
            Pending::Submit(share) => {
                let outcome = if r.is_ok() {
                    self.stats.accepted += 1;
                    ShareOutcome::Accepted
                } else {
                    let reason = r.error.as_ref().map(StratumError::reason).unwrap_or_else(|| "rejected".into());
                    count_reject(&mut self.stats.rejected, &reason);
                    tracing::warn!(job = %share.job_id, %reason, "share rejected");
                    ShareOutcome::Rejected { reason }
                };
                out.push(Event::ShareResult { request: r.id, share, outcome });
            }
            Pending::Other => {
                if let Some(e) = r.error {
                    tracing::debug!(reason = %e.reason(), "optional request refused");
                }
            }
        }
    }

    fn handle_notify(&mut self, n: Notify, out: &mut Vec<Event>) {
        let Some((extranonce1, extranonce2_size)) = self.extranonce.clone() else {
            let e = ProtocolError::BadValue {
                method: "mining.notify".into(),
                field: "(order)",
                value: "notify before a successful subscribe".into(),
            };
            self.count_protocol_error(&e);
            out.push(Event::Protocol(e));
            return;
        };
        let mask = self.version_mask.unwrap_or(0);
        if n.version.0 & mask != 0 {
            tracing::debug!(version = %n.version, "job version has bits inside the rolling mask");
        }
        // A new previous block voids older jobs even if the pool says otherwise (cgminer).
        let new_block = self.jobs.back().is_some_and(|j| j.job.prev_hash != n.prev_hash.0);
        let clean = n.clean_jobs || new_block;
        let job = Arc::new(PoolJob {
            job_id: n.job_id,
            job: CoinbaseJob {
                prev_hash: n.prev_hash.0,
                coinb1: n.coinb1,
                extranonce1,
                extranonce2_size,
                coinb2: n.coinb2,
                merkle_branch: n.merkle_branch,
                version: Version::from_consensus(n.version.0 as i32),
                version_mask: mask,
                nbits: CompactTarget::from_consensus(n.nbits.0),
                ntime: n.ntime.0,
            },
            difficulty: self.next_difficulty,
            clean,
        });
        if clean {
            self.jobs.clear();
        }
        self.jobs.retain(|j| j.job_id != job.job_id);
        if self.jobs.len() >= MAX_JOBS {
            self.jobs.pop_front();
        }
        self.jobs.push_back(job.clone());
        tracing::debug!(job = %job.job_id, clean, difficulty = job.difficulty, "new job");
        out.push(Event::Job(job));
    }
}
