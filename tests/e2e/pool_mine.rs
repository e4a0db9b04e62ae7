//! `hashrig mine` against a scripted pool replaying a real Braiins/slush job: every share it
//! submits is checked by the pool with sha2 and the bitcoin crate only (tests/e2e/pool_support.rs).

use std::time::Duration;

use crate::pool_support::{Miner, PoolSpec, ScriptedPool, wait_for};

fn args(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

#[test]
fn mined_shares_pass_an_independent_check_and_the_password_stays_out_of_logs() {
    // AntPool once granted 5fffe000 to a 1fffe000 request: we must stay inside what we asked.
    let mut spec = PoolSpec::new("a");
    spec.grant_mask = Some(0x5fff_e000);
    let pool = ScriptedPool::start(spec);
    let url = pool.url();
    let mut m = Miner::start(&args(&[
        "--pool", &url, "--user", "tb1qexampleworker.rig1", "--pass", "pool-secret-42",
        "--duration", "4", "--status-interval", "0.5", "--threads", "2",
    ]));
    let status = m.wait(Duration::from_secs(30));
    let err = m.stderr();
    assert!(status.success(), "exit {status:?}\n{err}");
    let log = pool.log();
    assert!(log.valid() >= 3, "only {} valid shares; stderr:\n{err}", log.valid());
    assert!(log.invalid().is_empty(), "invalid shares: {:?}", log.invalid());
    // configure asked for the BIP 320 bits, and every submit carries version bits inside them.
    assert_eq!(log.configures[0][1]["version-rolling.mask"], "1fffe000");
    for s in &log.shares {
        let bits = u32::from_str_radix(s.version_bits.as_deref().expect("6th submit param when rolling"), 16).unwrap();
        assert_eq!(bits & !0x1fff_e000, 0, "{s:?}");
    }
    // The live status line, with the accepted count the pool agrees with.
    assert!(err.contains("H/s") && err.contains("accepted"), "{err}");
    assert!(err.contains(&format!("pool #0 {url}")), "{err}");
    // The password reached the pool (in authorize) and nowhere else.
    assert!(log.lines.iter().any(|l| l.contains("pool-secret-42")));
    assert!(!err.contains("pool-secret-42"), "password leaked into the log:\n{err}");
}

#[test]
fn a_tls_pool_with_a_private_ca_mines_checked_shares_once_the_ca_is_trusted() {
    let pool = ScriptedPool::start(PoolSpec::new("s"));
    let front = pool.start_tls_front();
    let dir = tempfile::tempdir().unwrap();
    let ca = dir.path().join("pool-ca.pem");
    std::fs::write(&ca, &front.ca_pem).unwrap();
    let url = front.url();
    // The same pool with and without --pool-ca, side by side.
    let mut trusted = Miner::start(&args(&[
        "--pool", &url, "--pool-ca", ca.to_str().unwrap(), "--user", "tls.worker", "--pass", "tls-secret-9",
        "--duration", "3", "--status-interval", "0.5", "--threads", "1",
    ]));
    let mut untrusted = Miner::start(&args(&["--pool", &url, "--user", "w", "--pass", "x", "--duration", "3", "--threads", "1"]));
    let status = trusted.wait(Duration::from_secs(30));
    let err = trusted.stderr();
    assert!(status.success(), "exit {status:?}\n{err}");
    assert!(untrusted.wait(Duration::from_secs(30)).success(), "{}", untrusted.stderr());
    let uerr = untrusted.stderr();
    // Without the CA the certificate is refused, so the only connection the pool saw is ours.
    assert!(uerr.contains("TLS handshake with 127.0.0.1 failed"), "{uerr}");
    let log = pool.log();
    assert_eq!(log.connections, 1, "only the miner that trusts the CA gets through");
    assert!(log.valid() >= 1, "no valid share over TLS; stderr:\n{err}");
    assert!(log.invalid().is_empty(), "invalid shares: {:?}", log.invalid());
    assert!(log.lines.iter().any(|l| l.contains("mining.authorize") && l.contains("tls.worker")), "{:?}", log.lines);
    assert!(err.contains(&format!("pool #0 {url}")), "{err}");
    assert!(!err.contains("tls-secret-9"), "{err}");
}

#[test]
fn rejected_shares_are_counted_per_reason_on_the_status_line() {
    // The pool tells us difficulty 1/2048 but judges at 1/64: most shares come back
    // "Low difficulty share".
    let mut spec = PoolSpec::new("r");
    spec.judge_difficulty = Some(1.0 / 64.0);
    let pool = ScriptedPool::start(spec);
    let mut m = Miner::start(&args(&["--pool", &pool.url(), "--user", "w", "--pass", "x", "--duration", "3", "--status-interval", "0.5", "--threads", "2"]));
    assert!(m.wait(Duration::from_secs(30)).success());
    let err = m.stderr();
    let rejected = pool.log().invalid().len();
    assert!(rejected >= 1, "{err}");
    assert!(err.contains("Low difficulty share: "), "{err}");
}

#[test]
fn a_toml_config_file_holds_the_same_settings_as_the_flags() {
    let pool = ScriptedPool::start(PoolSpec::new("t"));
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("hashrig.toml");
    std::fs::write(
        &cfg,
        format!(
            "[[pool]]\nurl = \"stratum+tcp://127.0.0.1:1\"\nuser = \"dead.pool\"\npass = \"first-secret\"\n\n\
             [[pool]]\nurl = \"{}\"\nuser = \"cfg.worker\"\npass = \"cfg-secret-7\"\n\n\
             [mine]\nstatus_interval = 0.5\nversion_rolling = false\n\n[api]\n[power]\n",
            pool.url()
        ),
    )
    .unwrap();
    let mut m = Miner::start(&args(&["--config", cfg.to_str().unwrap(), "--duration", "3", "--threads", "2", "--suggest-difficulty", "0.5"]));
    assert!(m.wait(Duration::from_secs(30)).success(), "{}", m.stderr());
    let err = m.stderr();
    let log = pool.log();
    assert!(log.valid() >= 1, "{err}");
    assert!(log.configures.is_empty(), "version_rolling = false: no mining.configure");
    assert!(log.lines.iter().any(|l| l.contains("mining.suggest_difficulty") && l.contains("0.5")), "{:?}", log.lines);
    assert!(log.lines.iter().any(|l| l.contains("mining.extranonce.subscribe")));
    assert!(log.lines.iter().any(|l| l.contains("cfg.worker") && l.contains("cfg-secret-7")));
    assert!(!err.contains("cfg-secret-7") && !err.contains("first-secret"), "{err}");
}

fn ask(addr: std::net::SocketAddr, req: &[u8]) -> Vec<u8> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s.write_all(req).unwrap();
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).unwrap();
    raw
}

fn listener(err: &str, prefix: &str) -> Option<std::net::SocketAddr> {
    err.lines().find_map(|l| l.strip_prefix(prefix)).map(|a| a.trim_end_matches("/metrics").parse().unwrap())
}

#[test]
fn the_config_files_backend_power_and_api_sections_take_effect_under_the_flags() {
    let pool = ScriptedPool::start(PoolSpec::new("k"));
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("hashrig.toml");
    let report = dir.path().join("run.html");
    std::fs::write(
        &cfg,
        format!(
            "[[pool]]\nurl = \"{}\"\nuser = \"w\"\n\n\
             [backend]\nspec = \"cpu\"\nkernel = \"scalar\"\nthreads = 1\n\n\
             [power]\nwatts = 42.5\n\n\
             [api]\nlisten = \"127.0.0.1:0\"\nallow = \"W:127.0.0.1\"\nmetrics = \"127.0.0.1:0\"\n",
            pool.url()
        ),
    )
    .unwrap();
    // --threads overrides the file's threads = 1; the rest comes from the file. The run ends
    // with `quit` through the API, which only the file's `allow = "W:..."` permits.
    let mut m = Miner::start(&args(&["--config", cfg.to_str().unwrap(), "--duration", "60", "--threads", "2", "--report", report.to_str().unwrap()]));
    assert!(wait_for(Duration::from_secs(20), || listener(&m.stderr(), "Prometheus metrics at http://").is_some()), "{}", m.stderr());
    let api = listener(&m.stderr(), "cgminer API on ").expect("API address on stderr");
    let metrics = listener(&m.stderr(), "Prometheus metrics at http://").unwrap();
    let mut summary = serde_json::Value::Null;
    let powered = wait_for(Duration::from_secs(20), || {
        let mut raw = ask(api, br#"{"command":"summary"}"#);
        raw.pop();
        summary = serde_json::from_slice(&raw).unwrap();
        summary["SUMMARY"][0]["Power"].as_f64().is_some() && pool.log().valid() >= 1
    });
    assert!(powered, "no power in the API summary: {summary}\n{}", m.stderr());
    assert_eq!(summary["SUMMARY"][0]["Power"].as_f64(), Some(42.5));
    assert!(summary["SUMMARY"][0]["Power Source"].as_str().unwrap().starts_with("declared"), "{summary}");
    let http = String::from_utf8(ask(metrics, b"GET /metrics HTTP/1.1\r\n\r\n")).unwrap();
    assert!(http.lines().any(|l| l.starts_with("hashrig_power_watts{") && l.ends_with(" 42.5")), "{http}");
    let bye = String::from_utf8(ask(api, br#"{"command":"quit"}"#)).unwrap();
    assert!(bye.contains("\"Msg\":\"BYE\""), "{bye}");
    let status = m.wait(Duration::from_secs(30));
    let err = m.stderr();
    assert!(status.success(), "{err}");
    assert!(err.contains("power 42.5 W (declared") && err.contains(" J/TH"), "{err}");
    let html = std::fs::read_to_string(&report).expect("report written");
    let open = "<script type=\"application/json\" id=\"run\">";
    let at = html.find(open).unwrap() + open.len();
    let run: hashrig_monitor::RunView = serde_json::from_str(&html[at..at + html[at..].find("</script>").unwrap()]).unwrap();
    // The run's average: the declared 42.5 W integrated over time, so within rounding.
    let watts = run.power.as_ref().map(|p| p.watts).expect("power in the report");
    assert!((watts - 42.5).abs() < 1e-6, "{watts}");
    assert!(run.j_per_th.is_some_and(|j| j > 0.0), "{:?}", run.j_per_th);
    assert_eq!(run.devices.len(), 1);
    assert_eq!(run.devices[0].kernel, "scalar", "[backend] kernel");
    assert!(run.devices[0].name.contains("2 threads"), "--threads over the file: {}", run.devices[0].name);
    assert!(pool.log().invalid().is_empty(), "{:?}", pool.log().invalid());
}

#[test]
fn unknown_keys_in_the_backend_power_and_api_sections_are_refused_by_name() {
    let dir = tempfile::tempdir().unwrap();
    for (section, key) in [("backend", "thread"), ("power", "wats"), ("api", "listen_addr")] {
        let cfg = dir.path().join(format!("{section}.toml"));
        std::fs::write(&cfg, format!("[[pool]]\nurl = \"stratum+tcp://127.0.0.1:3333\"\nuser = \"w\"\n\n[{section}]\n{key} = 1\n")).unwrap();
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_hashrig")).args(["mine", "--config", cfg.to_str().unwrap()]).output().unwrap();
        assert_eq!(out.status.code(), Some(2), "[{section}] {key}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(&format!("unknown field `{key}`")) && err.contains("line 6"), "{err}");
    }
    // A bad value is named too.
    let cfg = dir.path().join("power.toml");
    std::fs::write(&cfg, "[[pool]]\nurl = \"stratum+tcp://127.0.0.1:3333\"\nuser = \"w\"\n[power]\nwatts = -3.0\n").unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_hashrig")).args(["mine", "--config", cfg.to_str().unwrap()]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("[power] watts -3 must be a number of watts above 0"), "{}", String::from_utf8_lossy(&out.stderr));
}

#[test]
fn a_config_file_with_an_unknown_setting_is_refused_with_its_name() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("bad.toml");
    std::fs::write(&cfg, "[[pool]]\nurl = \"stratum+tcp://127.0.0.1:3333\"\nuser = \"w\"\npasword = \"typo\"\n").unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_hashrig")).args(["mine", "--config", cfg.to_str().unwrap()]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("pasword") && err.contains("bad.toml") && err.contains("line 4"), "{err}");
    assert!(!err.contains("typo"), "{err}");
}

#[test]
fn an_emulated_asic_chain_rolls_version_bits_only_inside_the_granted_mask() {
    // The chip emulator rolls header version bits itself (as BM13xx chips do); the pool grants
    // a narrower mask than we ask for, and every share must stay inside it.
    let mut spec = PoolSpec::new("v");
    spec.grant_mask = Some(0x0fff_e000);
    let pool = ScriptedPool::start(spec);
    let mut m = Miner::start(&args(&["--pool", &pool.url(), "--user", "w", "--pass", "x", "--duration", "4", "--backend", "emu:bm1370x1"]));
    assert!(m.wait(Duration::from_secs(40)).success(), "{}", m.stderr());
    let err = m.stderr();
    let log = pool.log();
    assert!(log.valid() >= 2, "{err}");
    assert!(log.invalid().is_empty(), "{:?}", log.invalid());
    let rolled = log.shares.iter().filter(|s| s.version != 0x2000_0004).count();
    for s in &log.shares {
        let bits = u32::from_str_radix(s.version_bits.as_deref().unwrap(), 16).unwrap();
        assert_eq!(bits & !0x0fff_e000, 0, "{s:?}");
    }
    assert!(rolled >= 1, "no share used a rolled version: {:?}", log.shares);
}

#[test]
fn a_password_of_the_wrong_type_in_the_config_is_not_echoed() {
    let dir = tempfile::tempdir().unwrap();
    for (key, body) in [("pass", "[[pool]]\nurl = \"stratum+tcp://127.0.0.1:3333\"\nuser = \"w\"\npass = 98761234\n"), ("rpc_pass", "[node]\nurl = \"http://127.0.0.1:18443\"\naddress = \"x\"\nrpc_user = \"u\"\nrpc_pass = [\"hunter-98761234\"]\n")] {
        let cfg = dir.path().join("secret.toml");
        std::fs::write(&cfg, body).unwrap();
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_hashrig")).args(["mine", "--config", cfg.to_str().unwrap()]).output().unwrap();
        assert_eq!(out.status.code(), Some(2), "{key}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(key) || err.contains("line"), "the error should still place the problem: {err}");
        assert!(!err.contains("98761234"), "the {key} value leaked into the error: {err}");
    }
}

#[test]
fn passwords_can_come_from_the_environment_or_a_file_instead_of_the_command_line() {
    let dir = tempfile::tempdir().unwrap();
    for how in ["env", "file"] {
        let pool = ScriptedPool::start(PoolSpec::new("s"));
        let file = dir.path().join("pass.txt");
        std::fs::write(&file, "file-secret-55\n").unwrap();
        let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_hashrig"));
        cmd.args(["mine", "--pool", &pool.url(), "--user", "w", "--duration", "2", "--threads", "1"]);
        let secret = match how {
            "env" => {
                cmd.env("HASHRIG_POOL_PASS", "env-secret-44");
                "env-secret-44"
            }
            _ => {
                cmd.args(["--pass-file", file.to_str().unwrap()]);
                "file-secret-55"
            }
        };
        let out = cmd.output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{how}: {err}");
        let log = pool.log();
        assert!(log.lines.iter().any(|l| l.contains("mining.authorize") && l.contains(secret)), "{how}: {:?}", log.lines);
        assert!(!err.contains(secret), "{how}: the password reached the log: {err}");
    }
    // --help names both ways, and never shows a value from the environment.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_hashrig")).args(["mine", "--help"]).env("HASHRIG_POOL_PASS", "help-secret-66").output().unwrap();
    let help = String::from_utf8_lossy(&out.stdout);
    assert!(help.contains("HASHRIG_POOL_PASS") && help.contains("--pass-file") && help.contains("HASHRIG_RPC_PASS") && help.contains("--rpc-pass-file"), "{help}");
    assert!(!help.contains("help-secret-66"), "{help}");
}

fn rss_kib(pid: u32) -> Option<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    s.lines().find(|l| l.starts_with("VmRSS:"))?.split_whitespace().nth(1)?.parse().ok()
}

#[test]
fn a_pool_asking_for_difficulty_one_billionth_neither_floods_memory_nor_the_pool() {
    // set_difficulty 1e-9 makes every hash a share; this used to grow the process by
    // ~50 MB a second. The miner raises its own share difficulty to a bounded share rate
    // (logged and shown), and its queues are bounded.
    let mut spec = PoolSpec::new("tiny");
    spec.difficulty = 1e-9;
    let pool = ScriptedPool::start(spec);
    let mut m = Miner::start(&args(&["--pool", &pool.url(), "--user", "w", "--pass", "x", "--duration", "6", "--status-interval", "1", "--threads", "2"]));
    let pid = m.child.id();
    let mut peak = 0;
    let t = std::time::Instant::now();
    while t.elapsed() < Duration::from_millis(5500) {
        peak = peak.max(rss_kib(pid).unwrap_or(0));
        std::thread::sleep(Duration::from_millis(250));
    }
    assert!(m.wait(Duration::from_secs(30)).success(), "{}", m.stderr());
    let err = m.stderr();
    assert!(peak > 0, "could not read the miner's memory");
    assert!(peak < 200 * 1024, "the miner grew to {} MiB\n{err}", peak / 1024);
    let log = pool.log();
    // The default cap is 200 shares a second; allow the first second's estimate some slack.
    assert!(log.shares.len() < 200 * 6 * 2, "{} shares in 6 s", log.shares.len());
    assert!(log.valid() >= 10, "{err}");
    assert!(err.contains("share difficulty raised"), "{err}");
    assert!(err.contains("; ledger reconciles"), "{err}");
}

#[test]
fn mine_with_prices_shows_live_profit_in_the_api_summary() {
    use std::io::{Read, Write};
    let pool = ScriptedPool::start(PoolSpec::new("e"));
    let url = pool.url();
    let m = Miner::start(&args(&[
        "--pool", &url, "--user", "w", "--pass", "x", "--duration", "30", "--threads", "1", "--api", "127.0.0.1:0",
        "--watts", "50", "--power-price", "0.1", "--btc-price", "100000",
    ]));
    let api = || m.stderr().lines().find_map(|l| l.strip_prefix("cgminer API on ").map(|a| a.trim().parse::<std::net::SocketAddr>().unwrap()));
    assert!(wait_for(Duration::from_secs(20), || api().is_some()), "{}", m.stderr());
    let addr = api().unwrap();
    let summary = || -> serde_json::Value {
        let mut s = std::net::TcpStream::connect(addr).unwrap();
        s.write_all(br#"{"command":"summary"}"#).unwrap();
        let mut raw = Vec::new();
        s.read_to_end(&mut raw).unwrap();
        raw.pop();
        serde_json::from_slice::<serde_json::Value>(&raw).unwrap()["SUMMARY"][0].clone()
    };
    let mut s = serde_json::Value::Null;
    let seen = wait_for(Duration::from_secs(20), || {
        s = summary();
        s["Profit Per Day"].is_number() && s["MHS av"].as_f64().unwrap_or(0.0) > 0.0
    });
    assert!(seen, "no live economics in the API: {s}\n{}", m.stderr());
    // The network difficulty is the job's nbits; 50 W at 0.1 USD/kWh is 0.12 USD a day.
    assert!(s["Network Difficulty"].as_f64().unwrap() > 0.0, "{s}");
    assert!((s["Power Cost Per Day"].as_f64().unwrap() - 0.12).abs() < 1e-9, "{s}");
    let revenue = s["Revenue Per Day"].as_f64().unwrap();
    assert!((s["Profit Per Day"].as_f64().unwrap() - (revenue - 0.12)).abs() < 1e-9 * revenue.abs().max(1.0), "{s}");
    assert!((s["Break Even Power Price"].as_f64().unwrap() / (revenue / 1.2) - 1.0).abs() < 1e-9, "{s}");
    drop(m);
}
