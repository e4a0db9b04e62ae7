//! The driver's hashrate estimate and the emulator's true rate must cover the same window: the
//! clock (and the true count) start before the first job goes out, not after the write returns.

use std::collections::VecDeque;
use std::io;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use firmware_protocol::emulator::{Emulator, EmulatorConfig};
use hashrig_hasher::{Control, Hasher, NonceRange, Sink, Target, WorkUnit};
use hashrig_hasher_asic::{AsicHasher, ChipType, Port, SerialLink, emulated_config, open_serial};

/// A link whose writes return late once armed: the host thread is held up after the bytes went
/// out (preempted on a busy machine, or a UART drain that waits for the last byte), while the
/// chain already hashes what it got. What the chain sends meanwhile is kept (as a large kernel
/// buffer would), so no nonce is lost to the delay.
struct LateWrites {
    inner: SerialLink,
    armed: Arc<AtomicBool>,
    delay: Duration,
    pending: VecDeque<u8>,
}

impl Port for LateWrites {
    fn read_timeout(&mut self, buf: &mut [u8], timeout: Duration) -> io::Result<usize> {
        if self.pending.is_empty() {
            return self.inner.read_timeout(buf, timeout);
        }
        let n = buf.len().min(self.pending.len());
        for (b, p) in buf.iter_mut().zip(self.pending.drain(..n)) {
            *b = p;
        }
        Ok(n)
    }
    fn write_all_bytes(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.inner.write_all_bytes(bytes)?;
        if self.armed.load(Ordering::Acquire) {
            let until = Instant::now() + self.delay;
            let mut buf = [0u8; 4096];
            while Instant::now() < until {
                let n = self.inner.read_timeout(&mut buf, Duration::from_millis(1))?;
                self.pending.extend(&buf[..n]);
            }
        }
        Ok(())
    }
    fn set_baud(&mut self, baud: u32) -> io::Result<()> {
        self.inner.set_baud(baud)
    }
    fn clear_input(&mut self) -> io::Result<()> {
        self.inner.clear_input()
    }
    fn name(&self) -> String {
        self.inner.name()
    }
}

/// Poisson interval of a mean after `n` events at `z` standard deviations (Wilson-Hilferty).
fn poisson_interval(n: f64, z: f64) -> [f64; 2] {
    let lower = (n * (1.0 - 1.0 / (9.0 * n) - z / (3.0 * n.sqrt())).powi(3)).max(0.0);
    let m = n + 1.0;
    [lower, m * (1.0 - 1.0 / (9.0 * m) + z / (3.0 * m.sqrt())).powi(3)]
}

#[test]
fn the_estimate_and_the_true_rate_cover_the_same_window_from_the_first_job() {
    // 12-bit emulator ticket: thousands of nonces in 2.5 s, so the Poisson noise is ~1-2 %.
    const BITS: u8 = 12;
    let mut ecfg = EmulatorConfig::new(ChipType::Bm1366, 2);
    ecfg.hash_budget_per_job = None;
    let emu = Arc::new(Emulator::spawn(ecfg).expect("emulator starts"));
    let link = open_serial(&emu.path().to_string_lossy()).expect("pty opens");
    let armed = Arc::new(AtomicBool::new(false));
    let mut cfg = emulated_config(ChipType::Bm1366, 2);
    cfg.emulator_ticket_zero_bits = Some(BITS);
    cfg.job_interval = Some(Duration::from_millis(500));
    let mut h = AsicHasher::new(LateWrites { inner: link, armed: armed.clone(), delay: Duration::from_millis(250), pending: VecDeque::new() }, cfg).expect("chain comes up");
    let stats = h.stats();
    let truth = emu.clone();
    stats.set_truth(Arc::new(move || truth.stats().hashes));
    assert_eq!(emu.stats().hashes, 0, "nothing hashed before the first job");

    armed.store(true, Ordering::Release);
    let ctl = Control::new();
    let (sink, _rx) = Sink::channel();
    let t0 = Instant::now();
    let mut i = 0u64;
    while t0.elapsed() < Duration::from_millis(2000) {
        let mut header = [0u8; 80];
        header[0..4].copy_from_slice(&0x2000_0000u32.to_le_bytes());
        header[4..12].copy_from_slice(&(i + 1).to_le_bytes());
        let unit = WorkUnit { id: i, epoch: ctl.epoch(), header, range: NonceRange::FULL, target: Target::MAX, version_mask: 0 };
        h.hash(&unit, &ctl, &sink).expect("hash runs");
        i += 1;
    }
    // Close the window's far end exactly: the chain stops hashing and sending, and one more
    // unit's time reads every nonce still on the way, so the nonces counted are those of the
    // hashes done (the start of the window is what is under test).
    emu.stop_answering();
    let unit = WorkUnit { id: i, epoch: ctl.epoch(), header: [0u8; 80], range: NonceRange::FULL, target: Target::MAX, version_mask: 0 };
    h.hash(&unit, &ctl, &sink).expect("hash runs");
    let s = stats.snapshot();
    let truth = s.emulator_true_hashrate.expect("an emulated chain has a true rate");
    let n = s.estimate.nonces as f64;
    assert!(n > 1000.0, "too few nonces to judge: {n}");
    // The true count over the window, in tickets, must be a plausible mean for the nonces seen:
    // with the clock started late, the nonces of the hashing before it are counted and the
    // hashes are not (about 10 % too many here).
    let per = s.estimate.rate / n;
    let [lo, hi] = poisson_interval(n, 4.417).map(|x| x * per);
    assert!(
        (lo..=hi).contains(&truth),
        "estimate {:.0} H/s from {n} nonces over {:.3} s vs the emulator's true {truth:.0} H/s ({:+.1} %): outside [{lo:.0}, {hi:.0}]",
        s.estimate.rate,
        s.estimate.seconds,
        100.0 * (s.estimate.rate / truth - 1.0)
    );
}
