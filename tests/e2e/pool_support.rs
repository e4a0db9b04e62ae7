//! Drives `hashrig mine` for the end-to-end tests: the [`Miner`] process wrapper,
//! [`capture_stderr`] and [`wait_for`].
//!
//! The scripted pool itself (ScriptedPool, PoolSpec, ConnPlan, Fault, PoolLog and its
//! independent share checker, the TLS front) lives in hashrig-stratum's test kit
//! (`hashrig_stratum::testkit`, cargo feature `testkit`) and is re-exported here.

use std::io::Read;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub use hashrig_stratum::testkit::*;

/// Drain a child's stderr in the background so it never blocks; returns the text so far.
pub fn capture_stderr(child: &mut std::process::Child) -> Arc<Mutex<String>> {
    let mut err = child.stderr.take().expect("stderr piped");
    let out = Arc::new(Mutex::new(String::new()));
    let o2 = out.clone();
    std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        while let Ok(n) = err.read(&mut buf) {
            if n == 0 {
                break;
            }
            o2.lock().unwrap().push_str(&String::from_utf8_lossy(&buf[..n]));
        }
    });
    out
}

/// Poll `cond` until it holds or `limit` passes.
pub fn wait_for(limit: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let t = Instant::now();
    while t.elapsed() < limit {
        if cond() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    cond()
}

/// A `hashrig mine` child on the CPU backend with stderr piped; killed on drop.
pub struct Miner {
    pub child: std::process::Child,
    pub stderr: Arc<Mutex<String>>,
}

impl Miner {
    pub fn start(args: &[String]) -> Miner {
        let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_hashrig"));
        cmd.arg("mine").args(args).arg("-v");
        cmd.env("RUST_LOG", "info");
        cmd.stdout(std::process::Stdio::null()).stderr(std::process::Stdio::piped());
        let mut child = cmd.spawn().expect("start hashrig mine");
        let stderr = capture_stderr(&mut child);
        Miner { child, stderr }
    }

    pub fn stderr(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    /// Wait for a clean exit (for --duration runs).
    pub fn wait(&mut self, limit: Duration) -> std::process::ExitStatus {
        let t = Instant::now();
        loop {
            if let Some(s) = self.child.try_wait().expect("wait") {
                // Let the stderr reader catch up.
                std::thread::sleep(Duration::from_millis(100));
                return s;
            }
            if t.elapsed() > limit {
                let _ = self.child.kill();
                panic!("hashrig mine did not stop within {limit:?}; stderr:\n{}", self.stderr());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Miner {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
