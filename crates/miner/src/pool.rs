//! Stratum v1 pools (an ordered failover list) as a [`JobSource`].

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use hashrig_stratum::{ClientConfig, ClientEvent, ClientHandle, ConnId, FoundShare, PoolJob, ShareOutcome};
use tokio::sync::mpsc;

use crate::ledger::{Fate, ShareId, StaleReason};
use crate::source::{ConnKey, JobKey, JobSource, SourceEvent, SourceJob, Submission};

/// Jobs remembered for shares still on their way (per run, all connections).
const JOBS_KEPT: usize = 128;

/// The Stratum v1 client behind the [`JobSource`] trait.
#[derive(Debug)]
pub struct PoolSource {
    client: ClientHandle,
    events: mpsc::UnboundedReceiver<ClientEvent>,
    task: tokio::task::JoinHandle<()>,
    jobs: VecDeque<(JobKey, Arc<PoolJob>)>,
}

impl PoolSource {
    /// Start the client (on the current tokio runtime).
    pub fn spawn(cfg: ClientConfig) -> PoolSource {
        let (client, events, task) = hashrig_stratum::client::spawn(cfg);
        PoolSource { client, events, task, jobs: VecDeque::new() }
    }

    /// The client, for `switchpool` and its counters (protocol errors, failover order).
    pub fn client(&self) -> &ClientHandle {
        &self.client
    }

    fn convert(&mut self, ev: ClientEvent) -> Option<SourceEvent> {
        let key = |pool: usize, conn: ConnId| ConnKey { pool, conn: conn.0 };
        Some(match ev {
            ClientEvent::Connected { pool, conn, url, .. } => SourceEvent::Connected { conn: key(pool, conn), label: url, channel: None },
            ClientEvent::Disconnected { pool, conn, reason } => SourceEvent::Disconnected { conn: key(pool, conn), reason },
            ClientEvent::VersionMask { pool, conn, mask } => SourceEvent::VersionMask { conn: key(pool, conn), mask },
            ClientEvent::Job { pool, conn, job } => {
                let share_target = match hashrig_work::target::target_from_difficulty(job.difficulty) {
                    Ok(t) => t,
                    Err(e) => {
                        return Some(SourceEvent::Notice(format!("pool {pool} job {} skipped: difficulty {}: {e}", job.job_id, job.difficulty)));
                    }
                };
                let jk = JobKey { conn: key(pool, conn), job: job.job_id.clone() };
                if self.jobs.len() >= JOBS_KEPT {
                    self.jobs.pop_front();
                }
                self.jobs.push_back((jk.clone(), job.clone()));
                SourceEvent::Job(SourceJob { key: jk, job: hashrig_work::HeaderSource::Coinbase(job.job.clone()), share_target, clean: job.clean, height: None })
            }
            ClientEvent::ShareResult { id, outcome, .. } => SourceEvent::Settled {
                id: ShareId(id),
                fate: match outcome {
                    ShareOutcome::Accepted => Fate::Accepted,
                    ShareOutcome::Rejected { reason } => Fate::pool_reject(&reason),
                },
            },
            ClientEvent::ShareStale { id, reason, .. } => SourceEvent::Settled { id: ShareId(id), fate: Fate::Stale(stale_reason(reason)) },
        })
    }
}

fn stale_reason(r: hashrig_stratum::StaleReason) -> StaleReason {
    use hashrig_stratum::StaleReason as S;
    match r {
        S::JobNotLive => StaleReason::JobReplaced,
        S::ConnectionLost => StaleReason::ConnectionLost,
        S::NoAnswer => StaleReason::NoAnswer,
        S::SendFailed => StaleReason::SendFailed,
        S::QueueFull => StaleReason::QueueFull,
        S::Shutdown => StaleReason::Shutdown,
        S::Invalid => StaleReason::OutsideJob,
    }
}

impl Drop for PoolSource {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl JobSource for PoolSource {
    async fn next_event(&mut self) -> Option<SourceEvent> {
        loop {
            let ev = self.events.recv().await?;
            if let Some(e) = self.convert(ev) {
                return Some(e);
            }
        }
    }

    fn submit(&mut self, sub: Submission) -> Result<(), StaleReason> {
        let Some((_, job)) = self.jobs.iter().rev().find(|(k, _)| *k == sub.job) else {
            return Err(StaleReason::JobReplaced);
        };
        let share = hashrig_stratum::Share {
            job_id: job.job_id.clone(),
            extranonce2: sub.share.extranonce2.clone(),
            ntime: sub.share.ntime,
            nonce: sub.share.nonce,
            version: sub.share.version,
        };
        let found = FoundShare { id: sub.id.0, pool: sub.job.conn.pool, conn: ConnId(sub.job.conn.conn), job: job.clone(), share };
        if self.client.submit(found) { Ok(()) } else { Err(StaleReason::Shutdown) }
    }

    async fn shutdown(&mut self, limit: Duration) -> Vec<SourceEvent> {
        let mut out = Vec::new();
        let client = self.client.clone();
        let done = client.shutdown(limit);
        tokio::pin!(done);
        loop {
            tokio::select! {
                ev = self.events.recv() => match ev {
                    Some(ev) => out.extend(self.convert(ev)),
                    None => break,
                },
                _ = &mut done => {
                    while let Ok(ev) = self.events.try_recv() {
                        out.extend(self.convert(ev));
                    }
                    break;
                }
            }
        }
        out
    }
}
