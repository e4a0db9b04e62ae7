//! One scripted connection: the pool's side of subscribe, authorize, configure and notify,
//! each submit judged against the job it names, and the faults of the connection's plan.

use super::*;

pub(super) fn send(w: &mut TcpStream, v: Value) -> std::io::Result<()> {
    let mut s = v.to_string();
    s.push('\n');
    w.write_all(s.as_bytes())
}

pub(super) fn make_job(spec: &PoolSpec, conn: usize, n: usize, clean: bool, difficulty: f64) -> SentJob {
    let mut params = real_notify_params();
    // A pool that resumes sessions (same extranonce1) hands out the same job ids again.
    let id = if spec.same_extranonce1 { format!("{}j{n}", spec.job_prefix) } else { format!("{}{conn:x}j{n}", spec.job_prefix) };
    params[0] = json!(id);
    // Later jobs differ in ntime, as real pools' updates do.
    let ntime = u32::from_str_radix(params[7].as_str().expect("ntime"), 16).expect("hex ntime") + n as u32;
    params[7] = json!(format!("{ntime:08x}"));
    params[8] = json!(clean);
    SentJob { id, params, difficulty: spec.judge_difficulty.unwrap_or(difficulty) }
}

/// The pool's verdict on one submit.
pub(super) struct Verdict {
    pub(super) valid: bool,
    pub(super) reason: String,
    pub(super) difficulty: f64,
    pub(super) version: u32,
}

pub(super) fn bad(reason: impl Into<String>) -> Verdict {
    Verdict { valid: false, reason: reason.into(), difficulty: 0.0, version: 0 }
}

/// Check a share with nothing but sha2 and the bitcoin crate.
pub(super) fn judge(job: &SentJob, en1: &[u8], en2_size: usize, mask: u32, params: &[Value]) -> Verdict {
    let s = |i: usize| params.get(i).and_then(Value::as_str).unwrap_or("");
    let Ok(en2) = hex::decode(s(2)) else { return bad("extranonce2 not hex") };
    let p = &job.params;
    let h = |i: usize| hex::decode(p[i].as_str().expect("job field")).expect("job hex");
    let coinbase = [&h(2)[..], en1, &en2, &h(3)].concat();
    let mut root = sha256d(&coinbase);
    for b in p[4].as_array().expect("merkle branch") {
        let b = hex::decode(b.as_str().expect("branch")).expect("branch hex");
        root = sha256d(&[&root[..], &b].concat());
    }
    // Stratum sends the previous hash as eight 32-bit words, each byte-swapped.
    let prev: Vec<u8> = h(1).chunks(4).flat_map(|w| w.iter().rev().copied()).collect();
    let word = |i: usize| u32::from_str_radix(p[i].as_str().expect("job word"), 16).expect("job word hex");
    let job_version = word(5);
    let version = match params.get(5).and_then(Value::as_str) {
        Some(vb) => {
            let bits = u32::from_str_radix(vb, 16).unwrap_or(u32::MAX);
            if bits & !mask != 0 {
                return bad(format!("version bits {vb} outside the granted mask {mask:08x}"));
            }
            (job_version & !mask) | (bits & mask)
        }
        None => job_version,
    };
    if s(3).len() != 8 || s(4).len() != 8 || en2.len() != en2_size {
        return Verdict { version, ..bad("bad field length") };
    }
    let (Ok(ntime), Ok(nonce)) = (u32::from_str_radix(s(3), 16), u32::from_str_radix(s(4), 16)) else {
        return Verdict { version, ..bad("ntime or nonce not hex") };
    };
    let mut header = Vec::with_capacity(80);
    header.extend_from_slice(&version.to_le_bytes());
    header.extend_from_slice(&prev);
    header.extend_from_slice(&root);
    header.extend_from_slice(&ntime.to_le_bytes());
    header.extend_from_slice(&word(6).to_le_bytes());
    header.extend_from_slice(&nonce.to_le_bytes());
    let digest = sha256d(&header);
    let hdr: bitcoin::block::Header = bitcoin::consensus::deserialize(&header).expect("80 bytes are a header");
    assert_eq!(hdr.block_hash().to_byte_array(), digest, "sha2 and the bitcoin crate agree on the header hash");
    let difficulty = bitcoin::Target::from_le_bytes(digest).difficulty_float();
    if difficulty + 1e-12 < job.difficulty {
        return Verdict { valid: false, reason: "Low difficulty share".into(), difficulty, version };
    }
    Verdict { valid: true, reason: String::new(), difficulty, version }
}

/// One connection's state.
pub(super) struct Conn<'a> {
    n: usize,
    spec: &'a PoolSpec,
    plan: &'a ConnPlan,
    log: &'a Mutex<PoolLog>,
    w: TcpStream,
    en1: Vec<u8>,
    jobs: Vec<SentJob>,
    mask: u32,
    authorized: bool,
    authorized_at: Option<Instant>,
    job_n: usize,
    last_job: Instant,
    /// Share difficulty for the next job.
    difficulty: f64,
    seen: HashSet<(String, String, String, String, String)>,
    received_shares: usize,
    /// Silent until then (after the handshake); `far` for [`ConnPlan::silent`].
    silent_until: Option<Instant>,
    /// After a `client.reconnect`: no more answers, close at this time.
    closing: Option<Instant>,
    drop_next_submit: bool,
    timed_done: usize,
}

/// Whether serving goes on after a fault.
pub(super) enum Flow {
    Go,
    Close,
}

impl Conn<'_> {
    fn silent(&self) -> bool {
        self.silent_until.is_some_and(|t| Instant::now() < t)
    }

    fn send_job(&mut self, clean: bool) -> std::io::Result<()> {
        let j = make_job(self.spec, self.n, self.job_n, clean, self.difficulty);
        self.job_n += 1;
        send(&mut self.w, json!({"id": null, "method": "mining.notify", "params": j.params}))?;
        if clean {
            self.jobs.clear();
        }
        self.jobs.push(j);
        self.last_job = Instant::now();
        Ok(())
    }

    fn apply(&mut self, f: Fault) -> std::io::Result<Flow> {
        lock(self.log).faults.push(FaultRecord { conn: self.n, kind: f.kind(), at: Instant::now() });
        match f {
            Fault::Disconnect => return Ok(Flow::Close),
            Fault::DisconnectOnNextSubmit => self.drop_next_submit = true,
            // A silence never shortens one under way (its end is what a test times against).
            Fault::Silence(d) => self.silent_until = self.silent_until.max(Some(Instant::now() + d)),
            Fault::Malformed(line) => {
                self.w.write_all(line.as_bytes())?;
                self.w.write_all(b"\n")?;
            }
            Fault::Oversized(len) => {
                let head = r#"{"id":null,"method":"mining.notify","params":["big","#;
                let tail = r#""]}"#;
                let pad = len.saturating_sub(head.len() + tail.len() + 1).max(1);
                let mut line = String::with_capacity(len + 1);
                line.push_str(head);
                line.push('"');
                line.extend(std::iter::repeat_n('0', pad));
                line.push_str(tail);
                line.push('\n');
                self.w.write_all(line.as_bytes())?;
            }
            Fault::CleanJob => self.send_job(true)?,
            Fault::NewJob => self.send_job(false)?,
            Fault::SetDifficulty(d) => {
                self.difficulty = d;
                send(&mut self.w, json!({"id": null, "method": "mining.set_difficulty", "params": [d]}))?;
            }
            Fault::SetVersionMask(m) => {
                self.mask = m;
                send(&mut self.w, json!({"id": null, "method": "mining.set_version_mask", "params": [format!("{m:08x}")]}))?;
            }
            Fault::Reconnect(params) => {
                send(&mut self.w, json!({"id": null, "method": "client.reconnect", "params": params}))?;
                self.closing = Some(Instant::now() + Duration::from_secs(5));
            }
            Fault::ReconnectKeepAnswering(params) => {
                send(&mut self.w, json!({"id": null, "method": "client.reconnect", "params": params}))?;
            }
        }
        Ok(Flow::Go)
    }

    /// Apply the queued and due faults (those that send wait out a silence).
    fn faults(&mut self, queue: &Mutex<VecDeque<Fault>>) -> std::io::Result<Flow> {
        if let Some(at) = self.authorized_at {
            while let Some((after, f)) = self.plan.timed.get(self.timed_done) {
                if at.elapsed() < *after {
                    break;
                }
                self.timed_done += 1;
                lock(queue).push_back(f.clone());
            }
        }
        loop {
            let next = {
                let mut q = lock(queue);
                let silent = self.silent() || self.closing.is_some();
                // Before the handshake ends, and during a silence, only faults that send nothing.
                let pos = q.iter().position(|f| !f.sends() || (self.authorized && !silent));
                pos.and_then(|i| q.remove(i))
            };
            let Some(f) = next else { return Ok(Flow::Go) };
            if let Flow::Close = self.apply(f)? {
                return Ok(Flow::Close);
            }
        }
    }

    fn record(&self, params: &[Value], v: &Verdict, answer: Answer) {
        let s = |i: usize| params.get(i).and_then(Value::as_str).unwrap_or("").to_owned();
        lock(self.log).shares.push(ShareRecord {
            conn: self.n,
            job_id: s(1),
            extranonce2: s(2),
            ntime: s(3),
            nonce: s(4),
            version_bits: params.get(5).and_then(Value::as_str).map(str::to_owned),
            version: v.version,
            valid: v.valid,
            reason: v.reason.clone(),
            difficulty: v.difficulty,
            answered: answer.answered(),
            answer,
            at: Instant::now(),
        });
    }

    /// A `mining.submit`; `Close` when the connection is to be dropped.
    fn submit(&mut self, id: Value, params: &[Value], queue: &Mutex<VecDeque<Fault>>) -> std::io::Result<Flow> {
        self.received_shares += 1;
        for (at, f) in &self.plan.on_share {
            if *at == self.received_shares {
                lock(queue).push_back(f.clone());
            }
        }
        if let Flow::Close = self.faults(queue)? {
            // The share arrived, but the connection closes before it is even judged: it is
            // still a submit received and never answered.
            let v = self.verdict(params);
            self.record(params, &v, Answer::Dropped);
            return Ok(Flow::Close);
        }
        let v = self.verdict(params);
        let drop_now = self.drop_next_submit || self.plan.drop_at_share == Some(self.received_shares);
        if drop_now {
            self.record(params, &v, Answer::Dropped);
            return Ok(Flow::Close);
        }
        if self.closing.is_some() {
            self.record(params, &v, Answer::Closing);
            return Ok(Flow::Go);
        }
        if self.silent() {
            self.record(params, &v, Answer::Silent);
            return Ok(Flow::Go);
        }
        let (line, answer) = if v.valid {
            (json!({"id": id, "result": true, "error": null}), Answer::Accepted)
        } else {
            let code = match v.reason.as_str() {
                "Job not found" => 21,
                "Duplicate share" => 22,
                _ => 23,
            };
            (json!({"id": id, "result": null, "error": [code, v.reason, null]}), Answer::Rejected(v.reason.clone()))
        };
        // Logged before the write: a write that fails means the client went away, and the
        // answer may or may not have reached it; a test sees that as WriteFailed.
        if let Err(e) = send(&mut self.w, line) {
            self.record(params, &v, Answer::WriteFailed);
            return Err(e);
        }
        self.record(params, &v, answer);
        if v.valid && self.plan.reconnect_at_share == Some(self.received_shares) {
            let params = self.plan.reconnect_params.clone().unwrap_or_else(|| json!(["", "", 0]));
            send(&mut self.w, json!({"id": null, "method": "client.reconnect", "params": params}))?;
        }
        Ok(Flow::Go)
    }

    fn verdict(&mut self, params: &[Value]) -> Verdict {
        let s = |i: usize| params.get(i).and_then(Value::as_str).unwrap_or("").to_owned();
        let job_id = s(1);
        let v = match self.jobs.iter().find(|j| j.id == job_id) {
            None => bad("Job not found"),
            Some(j) => judge(j, &self.en1, self.spec.en2_size, self.mask, params),
        };
        let dup = !self.seen.insert((job_id, s(2), s(3), s(4), s(5)));
        if dup && v.valid { Verdict { valid: false, reason: "Duplicate share".into(), ..v } } else { v }
    }
}

pub(super) fn serve(conn: TcpStream, n: usize, spec: &PoolSpec, plan: &ConnPlan, log: &Mutex<PoolLog>, queue: &Mutex<VecDeque<Fault>>) -> std::io::Result<()> {
    if plan.refuse {
        drop(conn);
        return Ok(());
    }
    if plan.mute {
        let mut sink = [0u8; 4096];
        let mut c = conn;
        while matches!(c.read(&mut sink), Ok(n) if n > 0) {}
        return Ok(());
    }
    let en1_num = if spec.same_extranonce1 { spec.en1_base } else { spec.en1_base.wrapping_add(n as u32) };
    let w = conn.try_clone()?;
    conn.set_read_timeout(Some(Duration::from_millis(20)))?;
    let mut c = Conn {
        n,
        spec,
        plan,
        log,
        w,
        en1: en1_num.to_be_bytes().to_vec(),
        jobs: Vec::new(),
        mask: 0,
        authorized: false,
        authorized_at: None,
        job_n: 0,
        last_job: Instant::now(),
        difficulty: spec.difficulty,
        seen: HashSet::new(),
        received_shares: 0,
        silent_until: None,
        closing: None,
        drop_next_submit: false,
        timed_done: 0,
    };
    let result = serve_loop(&mut c, BufReader::new(conn), queue);
    let _ = c.w.shutdown(Shutdown::Both);
    result
}

pub(super) fn serve_loop(c: &mut Conn<'_>, mut r: BufReader<TcpStream>, queue: &Mutex<VecDeque<Fault>>) -> std::io::Result<()> {
    let mut line = String::new();
    loop {
        if let Flow::Close = c.faults(queue)? {
            return Ok(());
        }
        if c.closing.is_some_and(|t| Instant::now() >= t) {
            return Ok(());
        }
        if c.authorized
            && !c.silent()
            && c.closing.is_none()
            && let Some(every) = c.plan.new_job_every
            && c.last_job.elapsed() >= every
        {
            c.send_job(false)?;
        }
        // A partial line stays in `line` across timeouts (read_line appends), so only clear it
        // once a whole line was handled.
        match r.read_line(&mut line) {
            Ok(0) => return Ok(()),
            Ok(_) if !line.ends_with('\n') => continue,
            Ok(_) => {}
            Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => continue,
            Err(e) => return Err(e),
        }
        let text = std::mem::take(&mut line);
        let Ok(msg) = serde_json::from_str::<Value>(text.trim()) else { continue };
        if c.spec.keep_lines {
            lock(c.log).lines.push(text.trim().to_owned());
        }
        let id = msg["id"].clone();
        let params = msg["params"].as_array().cloned().unwrap_or_default();
        let quiet = c.silent() || c.closing.is_some();
        match msg["method"].as_str().unwrap_or("") {
            "mining.configure" => {
                lock(c.log).configures.push(msg["params"].clone());
                let result = match c.spec.grant_mask {
                    Some(m) => {
                        c.mask = m;
                        json!({"version-rolling": true, "version-rolling.mask": format!("{m:08x}")})
                    }
                    None => json!({"version-rolling": false}),
                };
                send(&mut c.w, json!({"id": id, "result": result, "error": null}))?;
            }
            "mining.subscribe" => {
                lock(c.log).subscribes += 1;
                let result = json!([[["mining.set_difficulty", "d1"], ["mining.notify", "n1"]], hex::encode(&c.en1), c.spec.en2_size]);
                send(&mut c.w, json!({"id": id, "result": result, "error": null}))?;
            }
            "mining.authorize" => {
                send(&mut c.w, json!({"id": id, "result": true, "error": null}))?;
                for g in &c.plan.garbage {
                    c.w.write_all(g.as_bytes())?;
                    c.w.write_all(b"\n")?;
                }
                send(&mut c.w, json!({"id": null, "method": "mining.set_difficulty", "params": [c.difficulty]}))?;
                c.send_job(true)?;
                c.authorized = true;
                c.authorized_at = Some(Instant::now());
                if c.plan.silent {
                    c.silent_until = Some(Instant::now() + Duration::from_secs(86_400 * 365));
                }
            }
            "mining.submit" => {
                if let Flow::Close = c.submit(id, &params, queue)? {
                    return Ok(());
                }
            }
            _ => {
                if !quiet && !id.is_null() {
                    send(&mut c.w, json!({"id": id, "result": true, "error": null}))?;
                }
            }
        }
    }
}
