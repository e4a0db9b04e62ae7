//! The hashing thread: the current job hashed for real over the whole nonce space, each result
//! handed to the chip that owns its nonce, and nonces that meet a chip's ticket reported.

use super::*;

/// Nonces scanned per step of the hash thread.
pub(super) const CHUNK: u64 = 1 << 16;

/// Versions swept side by side before the next nonce chunk, so rolled versions (and with them
/// every small core) show up early.
pub(super) const VERSION_BLOCK: u64 = 16;

pub(super) fn hash_loop(shared: Arc<Shared>) {
    let scanner = Scanner::best();
    let mut current: Option<Arc<ActiveJob>> = None;
    let mut done: u64 = 0;
    let mut step: u64 = 0;
    let started = Instant::now();
    let mut total: u64 = 0;
    let mut found = Vec::new();
    while !shared.shutdown.load(Ordering::Acquire) {
        let latest = lock(&shared.job).clone();
        let Some(job) = latest else {
            std::thread::sleep(Duration::from_millis(10));
            continue;
        };
        if current.as_ref().map(|c| c.generation) != Some(job.generation) {
            current = Some(Arc::clone(&job));
            done = 0;
            step = 0;
        }
        let versions = job.versions().max(1);
        let chunks_per_space = (1u64 << 32) / CHUNK;
        let block = VERSION_BLOCK.min(versions);
        let total_steps = versions.div_ceil(block) * block * chunks_per_space;
        let over_budget = shared.budget.is_some_and(|b| done >= b);
        if shared.silent.load(Ordering::Acquire) || over_budget || step >= total_steps {
            if over_budget && done < u64::MAX {
                shared.counters.budget_exhausted.fetch_add(1, Ordering::Relaxed);
                done = u64::MAX;
            }
            std::thread::sleep(Duration::from_millis(10));
            continue;
        }
        // step -> (version block, chunk, version inside the block)
        let per_block = block * chunks_per_space;
        let b = step / per_block;
        let within = step % per_block;
        let chunk = (job.start_chunk + within / block) % chunks_per_space;
        let k = b * block + within % block;
        step += 1;
        if k >= versions {
            continue;
        }
        let report_bits = {
            let st = lock(&shared.state);
            st.chips.iter().filter(|c| c.alive).map(|c| c.report_zero_bits()).min()
        };
        let Some(min_bits) = report_bits else {
            std::thread::sleep(Duration::from_millis(10));
            continue;
        };
        let (scan, version) = match &job.kind {
            ActiveKind::Midstates(v) => (v[k as usize], 0),
            ActiveKind::Header { header, mask } => {
                let version = rolled_version(u32::from_le_bytes([header[0], header[1], header[2], header[3]]), *mask, k as u32);
                let mut h = *header;
                h[0..4].copy_from_slice(&version.to_le_bytes());
                (ScanJob::new(&h), version)
            }
        };
        let range = NonceRange::new((chunk * CHUNK) as u32, CHUNK).expect("chunk lies inside the nonce space");
        found.clear();
        let n = scanner.scan(&scan, range, &target_for_zero_bits(min_bits), &mut found);
        done = done.saturating_add(n);
        total += n;
        shared.counters.hashes.fetch_add(n, Ordering::Relaxed);
        for &nonce in &found {
            let digest = scan.digest(nonce);
            report(&shared, &job, k, version, nonce, &digest);
        }
        if let Some(limit) = shared.max_hashrate {
            let should_take = Duration::from_secs_f64(total as f64 / limit.max(1.0));
            let elapsed = started.elapsed();
            if should_take > elapsed {
                std::thread::sleep(should_take - elapsed);
            }
        }
    }
}

/// The target met by hashes with at least `bits` leading zero bits (as Bitcoin reads them).
pub fn target_for_zero_bits(bits: u8) -> Target {
    let mut le = [0xffu8; 32];
    let bits = usize::from(bits);
    for i in 0..bits {
        let bit = 255 - i;
        le[bit / 8] &= !(1 << (bit % 8));
    }
    Target::from_le_bytes(le)
}

pub(super) fn report(shared: &Shared, job: &ActiveJob, k: u64, version: u32, nonce: u32, digest: &[u8; 32]) {
    let chip = shared.chip;
    let zeros = hashrig_sha256d::leading_zero_bits(digest);
    let nonce_h = nonce.swap_bytes();
    let field = ((nonce_h >> 17) & 0xff) as u8;
    let core = (nonce_h >> 25) as u8;
    let mut frames: Vec<(Vec<u8>, bool)> = Vec::new();
    {
        let mut st = lock(&shared.state);
        // Owner: the live chips with the largest address not above the field (wrapping).
        let owner_addr = st
            .chips
            .iter()
            .filter(|c| c.alive && c.address <= field)
            .map(|c| c.address)
            .max()
            .or_else(|| st.chips.iter().filter(|c| c.alive).map(|c| c.address).max());
        let Some(owner_addr) = owner_addr else { return };
        let late_rate = lock(&shared.faults).late_nonce_rate;
        for c in st.chips.iter().filter(|c| c.alive && c.address == owner_addr) {
            if zeros < u32::from(c.report_zero_bits()) {
                continue;
            }
            let (sub, version_bits, byte6) = match chip {
                ChipType::Bm1397 => (k as u8, None, k as u8),
                _ => {
                    let field16 = ((version >> 13) & 0xffff) as u16;
                    let sub = (u32::from(field16) % chip.small_cores_per_core()) as u8;
                    let excess = zeros.saturating_sub(32 + u32::from(c.ticket.zero_bits()));
                    (sub, c.long_responses.then_some(field16), (excess * 2).min(255) as u8)
                }
            };
            let mut reported = nonce;
            if c.bad_cores && core.is_multiple_of(2) {
                // A bad core: the counter bits are wrong, the core and chip fields are not.
                reported ^= 1 << 16;
                shared.counters.wrong_nonces.fetch_add(1, Ordering::Relaxed);
            }
            let r = Response::Nonce(NonceResponse {
                nonce: reported,
                byte6,
                id_byte: chip.response_byte7(job.wire_id, sub),
                version_bits,
            });
            frames.push((r.encode().as_bytes().to_vec(), true));
        }
        let mut rng = lock(&shared.rng);
        frames.retain(|(f, _)| {
            if rng.chance(late_rate) {
                st.held.push(f.clone());
                false
            } else {
                true
            }
        });
    }
    for (f, is_nonce) in frames {
        // A newer job makes the chip drop what it was doing.
        if shared.job_generation.load(Ordering::Acquire) != job.generation {
            return;
        }
        send(shared, &f, is_nonce);
    }
}
