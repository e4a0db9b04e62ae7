//! Fuzz the `hashrig mine --config` TOML: `hashrig_cli::mine::check_config_text`, the same
//! parse `mine` does, with the same error text.
//!
//! Input: first byte picks how a pool password is written and the line it goes in at (second
//! byte); the rest is the config text. The target checks the text as given, then with the line
//! `pass = <secret>` or `rpc_pass = <secret>` inserted (bit 3 of the first byte; the secret as a string, a bare word, an integer, a float, an
//! array, an inline table, a multi-line string, or a string cut short: bits 0-2).
//!
//! Invariants beyond "no panic": the error never quotes a value: the secret's text never shows
//! in the error for the text with the secret in it.
#![no_main]

use hashrig_cli::mine::check_config_text;
use libfuzzer_sys::fuzz_target;

const SECRET: &str = "hunter2SeCrEt";
const NUM: &str = "8675309123";

fuzz_target!(|data: &[u8]| {
    let [form, at, rest @ ..] = data else { return };
    let Ok(text) = std::str::from_utf8(rest) else { return };
    if let Err(e) = check_config_text(text) {
        let _ = format!("{e:#}");
    }
    if text.contains(SECRET) || text.contains(NUM) {
        return;
    }
    let (value, needle) = match form % 8 {
        0 => (format!("\"{SECRET}\""), SECRET),
        1 => (SECRET.to_string(), SECRET),
        2 => (NUM.to_string(), NUM),
        3 => (format!("{NUM}.5"), NUM),
        4 => (format!("[\"{SECRET}\"]"), SECRET),
        5 => (format!("{{ a = \"{SECRET}\" }}"), SECRET),
        6 => (format!("\"\"\"{SECRET}\n\"\"\""), SECRET),
        _ => (format!("\"{SECRET}"), SECRET),
    };
    let mut lines: Vec<&str> = text.split('\n').collect();
    let key = if form & 8 == 0 { "pass" } else { "rpc_pass" };
    let line = format!("{key} = {value}");
    let i = usize::from(*at) % (lines.len() + 1);
    lines.insert(i, &line);
    let with = lines.join("\n");
    if let Err(e) = check_config_text(&with) {
        let msg = format!("{e:#} {e:?}");
        assert!(!msg.contains(needle), "the error quotes the password: {msg}\n--- config ---\n{with}");
    }
});
