//! One live session: the pool's jobs (future and live), targets and prefixes, shares out and
//! their answers back, Reconnect and CloseChannel.

use super::*;

/// Try `pools` in order (the ones ranked above the pool mined on, best first; or the one a
/// switch asks for): the first that opens a channel.
async fn probe_pools(cfg: ClientConfig, pools: Vec<usize>) -> Option<(usize, Opened)> {
    for pool in pools {
        let Some(p) = cfg.pools.get(pool) else { continue };
        match open(&cfg, &p.url, &p.user, p.url.port).await {
            Ok(opened) => return Some((pool, opened)),
            Err(e) => tracing::debug!(pool, error = %e, "failback: pool still unavailable"),
        }
    }
    None
}

/// A job message of either channel kind, with what the channel knew when it came.
#[derive(Clone, Debug)]
pub(super) enum JobMsg {
    /// With the extranonce prefix it is built on.
    Extended(NewExtendedMiningJobOwned, Vec<u8>),
    Standard(NewMiningJobOwned),
}

impl JobMsg {
    fn job_id(&self) -> u32 {
        match self {
            JobMsg::Extended(m, _) => m.job_id,
            JobMsg::Standard(m) => m.job_id,
        }
    }

    fn version(&self) -> u32 {
        match self {
            JobMsg::Extended(m, _) => m.version,
            JobMsg::Standard(m) => m.version,
        }
    }
}

/// One job as the channel knows it.
#[derive(Clone, Debug)]
pub(super) struct LiveJob {
    version: u32,
    mask: u32,
}

/// One connection's channel state.
pub(super) struct Session {
    pool: usize,
    conn: u64,
    host: String,
    w: Writer,
    channel: ChannelInfo,
    target: Target,
    future: BTreeMap<u32, JobMsg>,
    live: BTreeMap<u32, LiveJob>,
    /// prev hash (internal order), nbits, min_ntime of the current tip.
    tip: Option<([u8; 32], u32, u32)>,
    seq: u32,
    pending: BTreeMap<u32, (u64, Instant)>,
}

impl Session {
    pub(super) fn new(pool: usize, conn: u64, host: String, w: Writer, channel: ChannelInfo, target: Target) -> Self {
        Session { pool, conn, host, w, channel, target, future: BTreeMap::new(), live: BTreeMap::new(), tip: None, seq: 0, pending: BTreeMap::new() }
    }

    pub(super) async fn run(&mut self, c: &mut Client, mut rx: Reader) -> End {
        let mut tick = tokio::time::interval(Duration::from_millis(250));
        let mut heard = Instant::now();
        // Failback: on any pool but the first, try the ones above it now and then.
        let every = c.cfg.failback_interval.max(Duration::from_millis(100));
        let mut failback = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
        failback.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut probe: Option<std::pin::Pin<Box<dyn std::future::Future<Output = Option<(usize, Opened)>> + Send>>> = None;
        // The probe under way is for a switch asked for (not failback).
        let mut switching = false;
        let end = loop {
            if let Some((deadline, _)) = &c.stopping
                && (self.pending.is_empty() || Instant::now() >= *deadline)
            {
                break End::Stopped;
            }
            tokio::select! {
                m = rx.recv() => {
                    heard = Instant::now();
                    match m {
                        None => break End::Lost("the connection's reader stopped".into()),
                        Some(Inbound::Closed(e)) => break End::Lost(e.to_string()),
                        Some(Inbound::Unknown { msg_type, ext_type, len }) => {
                            c.status().protocol_errors += 1;
                            tracing::warn!(msg_type, ext_type, len, "unknown SV2 message type: ignored");
                            c.emit(ClientEvent::Notice(format!("pool {}: unknown message type {msg_type:#04x} (extension {ext_type:#06x}, {len} bytes) ignored", self.pool)));
                        }
                        Some(Inbound::Message(m)) => if let Some(end) = self.on_message(c, m).await { break end },
                    }
                }
                cmd = c.cmds.recv() => match cmd {
                    None => break End::Stopped,
                    Some(Cmd::Submit(s)) => if let Some(end) = self.submit(c, s).await { break end },
                    Some(Cmd::Switch(to)) => {
                        c.prefer(to);
                        if to != self.pool && c.stopping.is_none() {
                            // Open a channel there first; this pool is left only once it works.
                            probe = Some(Box::pin(probe_pools(c.cfg.clone(), vec![to])));
                            switching = true;
                        }
                    }
                    Some(Cmd::Shutdown { limit, done }) => c.stopping = Some((Instant::now() + limit, done)),
                },
                _ = tick.tick() => {
                    self.expire(c);
                    if heard.elapsed() > c.cfg.silence_timeout {
                        break End::Lost(format!("the pool sent nothing for {:?}", c.cfg.silence_timeout));
                    }
                }
                _ = failback.tick(), if c.rank(self.pool) > 0 && probe.is_none() && c.stopping.is_none() => {
                    let above = c.order[..c.rank(self.pool).min(c.order.len())].to_vec();
                    probe = Some(Box::pin(probe_pools(c.cfg.clone(), above)));
                    switching = false;
                }
                better = async { probe.as_mut().expect("guarded").await }, if probe.is_some() => {
                    probe = None;
                    if let Some((pool, opened)) = better {
                        break End::Failback(pool, Box::new(opened), switching);
                    }
                }
            }
        };
        if matches!(end, End::Failback(..)) {
            self.drain(c, &mut rx).await;
        }
        // Whatever is unanswered now never will be.
        let reason = match end {
            End::Stopped => StaleReason::Shutdown,
            _ => StaleReason::ConnectionLost,
        };
        if matches!(end, End::Stopped) {
            // In flight at the end of the run: left in flight (the ledger says so), not stale.
            self.pending.clear();
        }
        for (_, (id, _)) in std::mem::take(&mut self.pending) {
            c.emit(ClientEvent::ShareStale { id, reason });
        }
        end
    }

    /// Before leaving a working pool for a better one: wait (at most 5 s, or the answer
    /// deadline) for the answers to the shares on their way, still sending shares of this
    /// connection's jobs (they are valid here), and taking nothing else from the pool.
    async fn drain(&mut self, c: &mut Client, rx: &mut Reader) {
        let deadline = tokio::time::Instant::now() + c.cfg.answer_timeout.min(Duration::from_secs(5));
        while !self.pending.is_empty() && c.stopping.is_none() {
            tokio::select! {
                m = rx.recv() => match m {
                    Some(Inbound::Message(m @ AnyMessageOwned::Mining(MiningOwned::SubmitSharesSuccess(_) | MiningOwned::SubmitSharesError(_)))) => {
                        let _ = self.on_message(c, m).await;
                    }
                    Some(Inbound::Message(_) | Inbound::Unknown { .. }) => {}
                    None | Some(Inbound::Closed(_)) => return,
                },
                cmd = c.cmds.recv() => match cmd {
                    Some(Cmd::Submit(s)) => if self.submit(c, s).await.is_some() { return },
                    Some(Cmd::Switch(to)) => c.prefer(to),
                    Some(Cmd::Shutdown { limit, done }) => c.stopping = Some((Instant::now() + limit, done)),
                    None => return,
                },
                _ = tokio::time::sleep_until(deadline) => return,
            }
        }
    }

    fn expire(&mut self, c: &mut Client) {
        let limit = c.cfg.answer_timeout;
        let late: Vec<u32> = self.pending.iter().filter(|(_, (_, at))| at.elapsed() > limit).map(|(s, _)| *s).collect();
        for s in late {
            if let Some((id, _)) = self.pending.remove(&s) {
                c.emit(ClientEvent::ShareStale { id, reason: StaleReason::NoAnswer });
            }
        }
    }

    async fn submit(&mut self, c: &mut Client, s: ShareSubmit) -> Option<End> {
        if s.pool != self.pool || s.conn != self.conn {
            c.emit(ClientEvent::ShareStale { id: s.id, reason: StaleReason::ConnectionLost });
            return None;
        }
        let Some(job) = self.live.get(&s.job_id) else {
            c.emit(ClientEvent::ShareStale { id: s.id, reason: StaleReason::JobNotLive });
            return None;
        };
        let extranonce_size = match self.channel.kind {
            ChannelKind::Extended => self.channel.extranonce_size as usize,
            ChannelKind::Standard => 0,
        };
        if s.extranonce.len() != extranonce_size || (s.version ^ job.version) & !job.mask != 0 {
            c.emit(ClientEvent::ShareStale { id: s.id, reason: StaleReason::Invalid });
            return None;
        }
        let seq = self.seq.wrapping_add(1);
        let msg = match self.channel.kind {
            ChannelKind::Extended => {
                let Ok(extranonce) = B032Owned::new(s.extranonce.clone()) else {
                    c.emit(ClientEvent::ShareStale { id: s.id, reason: StaleReason::Invalid });
                    return None;
                };
                MiningOwned::SubmitSharesExtended(SubmitSharesExtendedOwned {
                    channel_id: self.channel.channel_id,
                    sequence_number: seq,
                    job_id: s.job_id,
                    nonce: s.nonce,
                    ntime: s.ntime,
                    version: s.version,
                    extranonce,
                })
            }
            ChannelKind::Standard => MiningOwned::SubmitSharesStandard(SubmitSharesStandard {
                channel_id: self.channel.channel_id,
                sequence_number: seq,
                job_id: s.job_id,
                nonce: s.nonce,
                ntime: s.ntime,
                version: s.version,
            }),
        };
        self.seq = seq;
        match self.w.send(AnyMessageOwned::Mining(msg)).await {
            Ok(()) => {
                self.pending.insert(seq, (s.id, Instant::now()));
                None
            }
            Err(e) => {
                c.emit(ClientEvent::ShareStale { id: s.id, reason: StaleReason::SendFailed });
                Some(End::Lost(format!("writing a share: {e}")))
            }
        }
    }

    fn job_for_engine(&self, msg: &JobMsg, min_ntime: u32) -> Option<HeaderSource> {
        let (prev, nbits, _) = self.tip?;
        let (m, prefix) = match msg {
            JobMsg::Extended(m, prefix) => (m, prefix),
            JobMsg::Standard(m) => {
                // A standard job carries no version-rolling flag: version rolling is what
                // SetupConnection asked for (the reference server lets a standard channel roll
                // the BIP 320 bits).
                let mask = if self.channel.version_rolling { BIP320_MASK } else { 0 };
                return Some(HeaderSource::Standard(StandardJob {
                    version: m.version,
                    prev_hash: prev,
                    // U256 fields are the header's own byte order (the reference validator
                    // puts them into the header as they are).
                    merkle_root: m.merkle_root.to_array(),
                    ntime: min_ntime,
                    nbits,
                    version_mask: mask,
                }));
            }
        };
        let mask = if m.version_rolling_allowed && self.channel.version_rolling { BIP320_MASK } else { 0 };
        Some(HeaderSource::Coinbase(CoinbaseJob {
            prev_hash: BlockHash::from_byte_array(prev),
            coinb1: m.coinbase_tx_prefix.as_bytes().to_vec(),
            extranonce1: prefix.to_vec(),
            extranonce2_size: self.channel.extranonce_size as usize,
            coinb2: m.coinbase_tx_suffix.as_bytes().to_vec(),
            merkle_branch: m.merkle_path.iter().map(|h| TxMerkleNode::from_byte_array(h.to_array())).collect(),
            version: Version::from_consensus(m.version as i32),
            version_mask: mask,
            nbits: CompactTarget::from_consensus(nbits),
            ntime: min_ntime,
        }))
    }

    fn go_live(&mut self, c: &mut Client, m: &JobMsg, target: Target, min_ntime: u32, clean: bool) {
        let job_id = m.job_id();
        let Some(job) = self.job_for_engine(m, min_ntime) else {
            c.status().protocol_errors += 1;
            c.emit(ClientEvent::Notice(format!("pool {}: job {job_id} came before any SetNewPrevHash: ignored", self.pool)));
            return;
        };
        self.live.insert(job_id, LiveJob { version: m.version(), mask: job.version_mask() });
        // A pool that never changes block keeps adding jobs: remember the newest ones.
        while self.live.len() > JOBS_KEPT {
            self.live.pop_first();
        }
        c.emit(ClientEvent::Job { pool: self.pool, conn: self.conn, job: Sv2Job { job_id, job, target, clean } });
    }

    /// A job message: live now (it has a min_ntime) or a future job that goes live with the
    /// SetNewPrevHash that names it.
    fn on_job(&mut self, c: &mut Client, j: JobMsg, min_ntime: Option<u32>) {
        match min_ntime {
            None => {
                self.future.insert(j.job_id(), j);
                while self.future.len() > JOBS_KEPT {
                    self.future.pop_first();
                }
            }
            Some(min_ntime) => {
                let target = self.target;
                self.go_live(c, &j, target, min_ntime, false);
            }
        }
    }

    fn protocol_error(&self, c: &mut Client, what: String) {
        c.status().protocol_errors += 1;
        tracing::warn!(pool = self.pool, "{what}");
        c.emit(ClientEvent::Notice(format!("pool {}: {what}", self.pool)));
    }

    async fn on_message(&mut self, c: &mut Client, m: AnyMessageOwned) -> Option<End> {
        let my = self.channel.channel_id;
        match m {
            AnyMessageOwned::Mining(m) => match m {
                MiningOwned::NewExtendedMiningJob(j) => {
                    if j.channel_id != my || self.channel.kind != ChannelKind::Extended {
                        self.protocol_error(c, format!("an extended job for channel {} (ours is {my}, {}): ignored", j.channel_id, self.channel.kind.as_str()));
                        return None;
                    }
                    let min_ntime = j.min_ntime.clone().into_inner();
                    let prefix = self.channel.extranonce_prefix.clone();
                    self.on_job(c, JobMsg::Extended(j, prefix), min_ntime);
                }
                MiningOwned::NewMiningJob(j) => {
                    if j.channel_id != my || self.channel.kind != ChannelKind::Standard {
                        self.protocol_error(c, format!("a standard job for channel {} (ours is {my}, {}): ignored", j.channel_id, self.channel.kind.as_str()));
                        return None;
                    }
                    let min_ntime = j.min_ntime.clone().into_inner();
                    self.on_job(c, JobMsg::Standard(j), min_ntime);
                }
                MiningOwned::SetNewPrevHash(p) => {
                    if p.channel_id != my {
                        self.protocol_error(c, format!("SetNewPrevHash for channel {} (ours is {my}): ignored", p.channel_id));
                        return None;
                    }
                    self.tip = Some((p.prev_hash.to_array(), p.nbits, p.min_ntime));
                    // Every other job of the channel is void now.
                    self.live.clear();
                    match self.future.remove(&p.job_id) {
                        Some(j) => {
                            self.future.clear();
                            // The target is the channel's when the job goes live (the reference
                            // server binds it at activation).
                            let target = self.target;
                            self.go_live(c, &j, target, p.min_ntime, true);
                        }
                        None => self.protocol_error(c, format!("SetNewPrevHash names job {} which is not a future job here", p.job_id)),
                    }
                }
                MiningOwned::SetTarget(t) => {
                    if t.channel_id == my {
                        let mut b = [0u8; 32];
                        b.copy_from_slice(t.maximum_target.as_bytes());
                        self.target = Target::from_le_bytes(b);
                        tracing::info!(pool = self.pool, target = ?self.target, "SetTarget: for jobs from now on");
                    }
                }
                MiningOwned::SetExtranoncePrefix(p) => {
                    if p.channel_id == my {
                        let prefix = p.extranonce_prefix.as_bytes().to_vec();
                        if self.channel.kind == ChannelKind::Standard {
                            // The pool builds the merkle root with it: nothing changes here but
                            // what the status shows.
                            tracing::info!(pool = self.pool, prefix_len = prefix.len(), "SetExtranoncePrefix on a standard channel");
                            self.channel.extranonce_prefix = prefix;
                            c.status().channels.insert(self.pool, self.channel.clone());
                            return None;
                        }
                        if let Err(e) = check_extranonce(prefix.len(), self.channel.extranonce_size, c.cfg.min_extranonce_size) {
                            return Some(End::Lost(format!("SetExtranoncePrefix refused: {e}")));
                        }
                        tracing::info!(pool = self.pool, prefix_len = prefix.len(), "SetExtranoncePrefix: for jobs from now on");
                        self.channel.extranonce_prefix = prefix;
                        c.status().channels.insert(self.pool, self.channel.clone());
                    }
                }
                MiningOwned::SubmitSharesSuccess(s) => {
                    // A batch: every share up to this sequence number not rejected on its own.
                    let last = s.last_sequence_number;
                    let covered: Vec<u32> = self.pending.range(..=last).map(|(k, _)| *k).collect();
                    if covered.len() as u64 != s.new_submits_accepted_count as u64 {
                        tracing::debug!(covered = covered.len(), counted = s.new_submits_accepted_count, "SubmitShares.Success count differs from the shares it covers here");
                    }
                    for k in covered {
                        if let Some((id, _)) = self.pending.remove(&k) {
                            c.emit(ClientEvent::ShareResult { id, outcome: ShareOutcome::Accepted });
                        }
                    }
                }
                MiningOwned::SubmitSharesError(e) => match self.pending.remove(&e.sequence_number) {
                    Some((id, _)) => c.emit(ClientEvent::ShareResult { id, outcome: ShareOutcome::Rejected { reason: text(e.error_code.as_bytes()) } }),
                    None => self.protocol_error(c, format!("SubmitShares.Error for unknown sequence number {}", e.sequence_number)),
                },
                MiningOwned::CloseChannel(cc) => {
                    return Some(End::Lost(format!("the pool closed the channel: {}", text(cc.reason_code.as_bytes()))));
                }
                MiningOwned::SetGroupChannel(_) => {}
                other => {
                    let name = name(&AnyMessageOwned::Mining(other));
                    self.protocol_error(c, format!("unexpected message {name}: ignored"));
                }
            },
            AnyMessageOwned::Common(CommonMessagesOwned::Reconnect(r)) => {
                let host = text(r.new_host.as_bytes());
                if host.is_empty() || host.eq_ignore_ascii_case(&self.host) {
                    return Some(End::Reconnect(r.new_port));
                }
                self.protocol_error(c, format!("the pool asked to reconnect to another host ({host}:{}): refused, hashrig only follows a pool's own host", r.new_port));
            }
            other => {
                let name = name(&other);
                self.protocol_error(c, format!("unexpected message {name}: ignored"));
            }
        }
        None
    }
}
