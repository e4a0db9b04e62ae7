//! Stratum V2 pools (an ordered failover list, one extended or standard channel at a time) as a
//! [`JobSource`]. The protocol is in `hashrig-sv2`; this maps its events onto the ledger's.

use std::time::Duration;

use hashrig_sv2::client::{ClientConfig, ClientEvent, ClientHandle, ShareOutcome, ShareSubmit};
use tokio::sync::mpsc;

use crate::ledger::{Fate, RejectKind, ShareId, StaleReason};
use crate::source::{ConnKey, JobKey, JobSource, SourceEvent, SourceJob, Submission};

/// The SV2 client behind the [`JobSource`] trait.
#[derive(Debug)]
pub struct Sv2Source {
    client: ClientHandle,
    events: mpsc::UnboundedReceiver<ClientEvent>,
    task: tokio::task::JoinHandle<()>,
}

impl Sv2Source {
    /// Start the client (on the current tokio runtime).
    pub fn spawn(cfg: ClientConfig) -> Sv2Source {
        let (client, events, task) = hashrig_sv2::client::spawn(cfg);
        Sv2Source { client, events, task }
    }

    /// The client, for its status (channels, protocol errors).
    pub fn client(&self) -> &ClientHandle {
        &self.client
    }

    fn convert(ev: ClientEvent) -> SourceEvent {
        let key = |pool: usize, conn: u64| ConnKey { pool, conn };
        match ev {
            ClientEvent::Connected { pool, conn, url, channel } => {
                SourceEvent::Connected {
                conn: key(pool, conn),
                label: format!("{url} ({} channel)", channel.kind.as_str()),
                channel: Some(channel.kind.as_str()),
            }
            }
            ClientEvent::Disconnected { pool, conn, reason } => SourceEvent::Disconnected { conn: key(pool, conn), reason },
            ClientEvent::Job { pool, conn, job } => SourceEvent::Job(SourceJob {
                key: JobKey { conn: key(pool, conn), job: job.job_id.to_string() },
                job: job.job,
                // exact: the pool's target as sent, no difficulty in between
                share_target: job.target,
                clean: job.clean,
                height: None,
            }),
            ClientEvent::ShareResult { id, outcome } => SourceEvent::Settled {
                id: ShareId(id),
                fate: match outcome {
                    ShareOutcome::Accepted => Fate::Accepted,
                    ShareOutcome::Rejected { reason } => reject(&reason),
                },
            },
            ClientEvent::ShareStale { id, reason } => SourceEvent::Settled { id: ShareId(id), fate: Fate::Stale(stale_reason(reason)) },
            ClientEvent::Notice(n) => SourceEvent::Notice(n),
        }
    }
}

/// An SV2 `SubmitShares.Error` code as the ledger sorts rejects. The codes are the spec's
/// (`stale-share`, `duplicate-share`, `difficulty-too-low`, ... sort by their text as v1 reasons
/// do); `invalid-job-id` is the pool no longer knowing the job, v1's "job not found".
fn reject(code: &str) -> Fate {
    match code {
        "invalid-job-id" => Fate::Rejected { kind: RejectKind::StaleJob, reason: code.to_string() },
        _ => Fate::pool_reject(code),
    }
}

fn stale_reason(r: hashrig_sv2::StaleReason) -> StaleReason {
    use hashrig_sv2::StaleReason as S;
    match r {
        S::JobNotLive => StaleReason::JobReplaced,
        S::ConnectionLost => StaleReason::ConnectionLost,
        S::NoAnswer => StaleReason::NoAnswer,
        S::SendFailed => StaleReason::SendFailed,
        S::Shutdown => StaleReason::Shutdown,
        S::Invalid => StaleReason::OutsideJob,
    }
}

impl Drop for Sv2Source {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl JobSource for Sv2Source {
    async fn next_event(&mut self) -> Option<SourceEvent> {
        self.events.recv().await.map(Self::convert)
    }

    fn submit(&mut self, sub: Submission) -> Result<(), StaleReason> {
        let Ok(job_id) = sub.job.job.parse::<u32>() else {
            return Err(StaleReason::OutsideJob);
        };
        let s = ShareSubmit {
            id: sub.id.0,
            pool: sub.job.conn.pool,
            conn: sub.job.conn.conn,
            job_id,
            extranonce: sub.share.extranonce2.clone(),
            nonce: sub.share.nonce,
            ntime: sub.share.ntime,
            version: sub.share.version,
        };
        if self.client.submit(s) { Ok(()) } else { Err(StaleReason::Shutdown) }
    }

    async fn shutdown(&mut self, limit: Duration) -> Vec<SourceEvent> {
        let mut out = Vec::new();
        let client = self.client.clone();
        let done = client.shutdown(limit);
        tokio::pin!(done);
        loop {
            tokio::select! {
                ev = self.events.recv() => match ev {
                    Some(ev) => out.push(Self::convert(ev)),
                    None => break,
                },
                _ = &mut done => {
                    while let Ok(ev) = self.events.try_recv() {
                        out.push(Self::convert(ev));
                    }
                    break;
                }
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sv2_error_codes_sort_into_the_ledgers_reject_kinds() {
        let kind = |c: &str| match reject(c) {
            Fate::Rejected { kind, reason } => {
                assert_eq!(reason, c);
                kind
            }
            other => panic!("{other:?}"),
        };
        assert_eq!(kind("stale-share"), RejectKind::StaleJob);
        assert_eq!(kind("invalid-job-id"), RejectKind::StaleJob);
        assert_eq!(kind("duplicate-share"), RejectKind::Duplicate);
        assert_eq!(kind("difficulty-too-low"), RejectKind::LowDifficulty);
        assert_eq!(kind("invalid-share"), RejectKind::Other);
    }
}
