//! `hashrig decode`: print each BM13xx frame of a serial capture (logic analyser or sniffer
//! export) as decoded fields, flag bad CRCs and skip garbage. The decoding itself is
//! `firmware_protocol::Decoder`; this file reads the input and formats the result.

use std::io::Read;
use std::process::ExitCode;

use clap::{Args, ValueEnum};
use firmware_protocol::{
    ChipType, Command, Decoder, Destination, Direction, Event, Frame, Job, RegisterMeaning, Response, ResponseForm,
    ResponseLength, register_name,
};
use serde_json::{Value, json};

use crate::bad_input;

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Dir {
    /// Host -> chip (commands and jobs, `55 AA`).
    Tx,
    /// Chip -> host (responses, `AA 55`).
    Rx,
    /// Both, interleaved in one capture.
    Auto,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum RespLen {
    /// Whichever of 9 and 11 bytes has a good CRC.
    Auto,
    #[value(name = "9")]
    Nine,
    #[value(name = "11")]
    Eleven,
}

#[derive(Debug, Args)]
pub struct DecodeArgs {
    /// The capture: hex on the command line, a file of hex text (separators, 0x prefixes and
    /// `#` comments allowed) or raw bytes, or `-` for stdin.
    pub input: String,
    /// Chip generation: bm1397, bm1366, bm1368, bm1370 (sets job framing and field meanings).
    #[arg(long, default_value = "bm1370")]
    pub chip: String,
    /// Which way the bytes went.
    #[arg(long, value_enum, default_value_t = Dir::Auto)]
    pub dir: Dir,
    /// Chip -> host frame length (BM1397 is always 9).
    #[arg(long, value_enum, default_value_t = RespLen::Auto)]
    pub response_len: RespLen,
    /// One JSON document instead of text.
    #[arg(long)]
    pub json: bool,
}

/// One line of output, in stream order.
struct Item {
    offset: u64,
    len: u64,
    dir: Option<Direction>,
    event: Event,
}

pub fn run(a: &DecodeArgs) -> anyhow::Result<ExitCode> {
    let chip: ChipType = a.chip.parse().map_err(|e| bad_input(format!("--chip {}: {e}", a.chip)))?;
    let bytes = read_input(&a.input)?;
    let (text, doc) = render_bytes(&bytes, chip, a.dir, a.response_len);
    if a.json {
        crate::outln!("{}", serde_json::to_string_pretty(&doc)?)?;
    } else {
        for line in &text {
            crate::outln!("{line}")?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// What `hashrig decode` does with a capture, without the I/O (for the fuzzer): `raw` is what
/// a file or stdin held (hex text if it reads as hex text, raw bytes otherwise, as
/// `read_input` takes it); returns the text output (one entry per event, then the summary line)
/// and the `--json` document, both as `run` prints them.
pub fn render(raw: &[u8], chip: ChipType, dir: Dir, rl: RespLen) -> (Vec<String>, Value) {
    let bytes = match std::str::from_utf8(raw).ok().and_then(|t| firmware_protocol::parse_hex(t).ok()) {
        Some(b) => b,
        None => raw.to_vec(),
    };
    render_bytes(&bytes, chip, dir, rl)
}

/// The text lines and the `--json` document for decoded `bytes`.
fn render_bytes(bytes: &[u8], chip: ChipType, dir: Dir, rl: RespLen) -> (Vec<String>, Value) {
    let items = decode(bytes, chip, dir, rl);
    let mut counts = Counts::default();
    for it in &items {
        counts.add(&it.event);
    }
    let mut text: Vec<String> = items.iter().map(|it| item_text(it, chip, bytes)).collect();
    text.push(format!(
        "{} bytes: {} frames, {} bad CRC, {} malformed, {} bytes skipped",
        bytes.len(),
        counts.frames,
        counts.bad_crc,
        counts.malformed,
        counts.skipped
    ));
    let doc = json!({
        "chip": chip.name().to_string(),
        "bytes": bytes.len(),
        "frames": counts.frames,
        "bad_crc": counts.bad_crc,
        "malformed": counts.malformed,
        "skipped_bytes": counts.skipped,
        "events": items.iter().map(|it| item_json(it, chip, bytes)).collect::<Vec<Value>>(),
    });
    (text, doc)
}

#[derive(Default)]
struct Counts {
    frames: u64,
    bad_crc: u64,
    malformed: u64,
    skipped: u64,
}

impl Counts {
    fn add(&mut self, e: &Event) {
        match e {
            Event::Frame { .. } => self.frames += 1,
            Event::BadCrc { .. } => self.bad_crc += 1,
            Event::Malformed { .. } => self.malformed += 1,
            Event::Skipped { len, .. } => self.skipped += len,
        }
    }
}

fn read_input(input: &str) -> anyhow::Result<Vec<u8>> {
    let from_text = |text: &str, what: &str| {
        firmware_protocol::parse_hex(text).map_err(|e| bad_input(format!("{what} is not hex: {e}")))
    };
    if input == "-" {
        let mut raw = Vec::new();
        std::io::stdin().read_to_end(&mut raw)?;
        return Ok(match std::str::from_utf8(&raw).ok().and_then(|t| firmware_protocol::parse_hex(t).ok()) {
            Some(b) => b,
            None => raw,
        });
    }
    let path = std::path::Path::new(input);
    if path.is_file() {
        let raw = std::fs::read(path).map_err(|e| bad_input(format!("cannot read {input}: {e}")))?;
        // Hex text if it reads as hex text, raw capture bytes otherwise.
        return Ok(match std::str::from_utf8(&raw).ok().and_then(|t| firmware_protocol::parse_hex(t).ok()) {
            Some(b) => b,
            None => raw,
        });
    }
    from_text(input, "the argument (not a file either)")
}

fn decoder(direction: Direction, chip: ChipType, rl: RespLen) -> Decoder {
    let d = Decoder::new(direction, chip);
    match (chip, rl) {
        (ChipType::Bm1397, _) => d,
        (_, RespLen::Auto) => d.with_response_length(ResponseLength::Auto),
        (_, RespLen::Nine) => d.with_response_length(ResponseLength::Fixed(ResponseForm::Short)),
        (_, RespLen::Eleven) => d.with_response_length(ResponseLength::Fixed(ResponseForm::Long)),
    }
}

fn run_decoder(mut d: Decoder, bytes: &[u8]) -> Vec<Item> {
    let dir = d.direction();
    d.push(bytes);
    d.finish();
    let mut out = Vec::new();
    while let Some(event) = d.next_event() {
        let (offset, len) = span(&event);
        out.push(Item { offset, len, dir: Some(dir), event });
    }
    out
}

fn span(e: &Event) -> (u64, u64) {
    match e {
        Event::Frame { offset, raw, .. } => (*offset, raw.as_bytes().len() as u64),
        Event::BadCrc { offset, raw, .. } | Event::Malformed { offset, raw, .. } => (*offset, raw.as_bytes().len() as u64),
        Event::Skipped { offset, len } => (*offset, *len),
    }
}

/// Decode one or both directions. With both, frames of either kind are kept in stream order,
/// rejected candidates inside an accepted frame are dropped, and bytes that belong to no frame
/// are reported as skipped.
fn decode(bytes: &[u8], chip: ChipType, dir: Dir, rl: RespLen) -> Vec<Item> {
    match dir {
        Dir::Tx => run_decoder(decoder(Direction::HostToChip, chip, rl), bytes),
        Dir::Rx => run_decoder(decoder(Direction::ChipToHost, chip, rl), bytes),
        Dir::Auto => {
            let mut all = run_decoder(decoder(Direction::HostToChip, chip, rl), bytes);
            all.extend(run_decoder(decoder(Direction::ChipToHost, chip, rl), bytes));
            all.retain(|it| !matches!(it.event, Event::Skipped { .. }));
            all.sort_by_key(|it| (it.offset, !matches!(it.event, Event::Frame { .. })));
            // Keep frames that do not overlap an earlier kept frame; then the rejected
            // candidates outside every kept frame.
            let mut frames: Vec<Item> = Vec::new();
            let mut others = Vec::new();
            for it in all {
                if matches!(it.event, Event::Frame { .. }) {
                    if frames.last().is_none_or(|f| f.offset + f.len <= it.offset) {
                        frames.push(it);
                    }
                } else {
                    others.push(it);
                }
            }
            // Both lists are sorted by offset: walk them together.
            let mut fi = 0;
            let mut last_bad = None;
            others.retain(|it| {
                while fi < frames.len() && frames[fi].offset + frames[fi].len <= it.offset {
                    fi += 1;
                }
                let inside = fi < frames.len() && frames[fi].offset <= it.offset;
                let dup = last_bad == Some(it.offset);
                last_bad = Some(it.offset);
                !inside && !dup
            });
            let mut out: Vec<Item> = frames.into_iter().chain(others).collect();
            out.sort_by_key(|it| it.offset);
            // Gaps: bytes covered by no frame and no rejected candidate's first byte.
            let mut covered = vec![false; bytes.len()];
            for it in &out {
                let end = match it.event {
                    Event::Frame { .. } => it.offset + it.len,
                    _ => it.offset + 1,
                };
                for c in covered.iter_mut().take(end as usize).skip(it.offset as usize) {
                    *c = true;
                }
            }
            let mut i = 0;
            while i < bytes.len() {
                if covered[i] {
                    i += 1;
                    continue;
                }
                let start = i;
                while i < bytes.len() && !covered[i] {
                    i += 1;
                }
                let event = Event::Skipped { offset: start as u64, len: (i - start) as u64 };
                out.push(Item { offset: start as u64, len: (i - start) as u64, dir: None, event });
            }
            out.sort_by_key(|it| it.offset);
            out
        }
    }
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect::<Vec<_>>().join(" ")
}

fn dir_name(d: Option<Direction>) -> &'static str {
    match d {
        Some(Direction::HostToChip) => "tx",
        Some(Direction::ChipToHost) => "rx",
        None => "--",
    }
}

fn dest_text(d: Destination) -> String {
    match d {
        Destination::All => "all".into(),
        Destination::Chip(a) => format!("chip={a:#04x}"),
    }
}

fn hash_text(h: &[u8; 32]) -> String {
    // Hashes are shown as people write them (reversed byte order, like block explorers).
    h.iter().rev().map(|x| format!("{x:02x}")).collect()
}

fn frame_text(f: &Frame, chip: ChipType) -> String {
    match f {
        Frame::Command(Command::SetAddress(a)) => format!("set-address addr={a:#04x}"),
        Frame::Command(Command::ChainInactive) => "chain-inactive".into(),
        Frame::Command(Command::ReadRegister { dest, register }) => {
            format!("read-register {} reg={register:#04x} ({})", dest_text(*dest), register_name(chip, *register))
        }
        Frame::Command(Command::WriteRegister { dest, register, value }) => {
            let meaning = RegisterMeaning::of(chip, *register, *value).to_string();
            let mut s = format!(
                "write-register {} reg={register:#04x} ({}) value={value:#010x}",
                dest_text(*dest),
                register_name(chip, *register)
            );
            if !meaning.is_empty() {
                s.push_str(&format!(": {meaning}"));
            }
            s
        }
        Frame::Job(Job::Header(j)) => format!(
            "job id={:#04x} full-header version={:#010x} nbits={:#010x} ntime={:#010x} prev={} merkle={} length-byte={:#04x}",
            j.job_id,
            j.version,
            j.nbits,
            j.ntime,
            hash_text(&j.prev_hash),
            hash_text(&j.merkle_root),
            j.length_byte
        ),
        Frame::Job(Job::Midstate(j)) => {
            let states: Vec<String> =
                j.midstates[..j.slots as usize].iter().map(|m| m.iter().map(|x| format!("{x:02x}")).collect()).collect();
            format!(
                "job id={:#04x} midstates={} slots={} nbits={:#010x} ntime={:#010x} merkle-tail={} midstates(wire)=[{}]",
                j.job_id,
                j.num_midstates,
                j.slots,
                j.nbits,
                j.ntime,
                j.merkle_tail.iter().map(|x| format!("{x:02x}")).collect::<String>(),
                states.join(", ")
            )
        }
        Frame::Response(Response::Register(r)) => {
            let meaning = RegisterMeaning::of(chip, r.register, r.value).to_string();
            let mut s = format!(
                "register-response chip={:#04x} reg={:#04x} ({}) value={:#010x}",
                r.chip_address,
                r.register,
                register_name(chip, r.register),
                r.value
            );
            if !meaning.is_empty() {
                s.push_str(&format!(": {meaning}"));
            }
            s
        }
        Frame::Response(Response::Nonce(n)) => {
            let sub = match chip {
                ChipType::Bm1397 => format!("midstate={}", n.sub_id(chip)),
                _ => format!("small-core={}", n.sub_id(chip)),
            };
            let version = match n.version_bits {
                Some(v) => format!(" version-bits={v:#06x} (rolled {:#010x})", u32::from(v) << 13),
                None => String::new(),
            };
            format!(
                "nonce={:#010x} job={:#04x} core={} {sub} chip-field={:#04x} byte6={:#04x}{version}",
                n.nonce,
                n.job_id(chip),
                n.core_id(),
                n.chip_address_field(),
                n.byte6
            )
        }
    }
}

fn item_text(it: &Item, chip: ChipType, bytes: &[u8]) -> String {
    let d = dir_name(it.dir);
    match &it.event {
        Event::Frame { frame, raw, .. } => format!("@{:<6} {d} {}\n        [{}]", it.offset, frame_text(frame, chip), hex(raw.as_bytes())),
        Event::BadCrc { raw, error, .. } => {
            format!("@{:<6} {d} BAD CRC ({error}), resyncing\n        [{}]", it.offset, hex(raw.as_bytes()))
        }
        Event::Malformed { raw, error, .. } => {
            format!("@{:<6} {d} MALFORMED ({error}), resyncing\n        [{}]", it.offset, hex(raw.as_bytes()))
        }
        Event::Skipped { offset, len } => {
            let start = *offset as usize;
            let end = (start + *len as usize).min(bytes.len());
            let shown = &bytes[start..end.min(start + 32)];
            let more = if end - start > 32 { " ..." } else { "" };
            format!("@{:<6} -- skipped {len} bytes of garbage [{}{more}]", it.offset, hex(shown))
        }
    }
}

fn frame_json(f: &Frame, chip: ChipType) -> Value {
    match f {
        Frame::Command(Command::SetAddress(a)) => json!({"kind": "set_address", "address": a}),
        Frame::Command(Command::ChainInactive) => json!({"kind": "chain_inactive"}),
        Frame::Command(Command::ReadRegister { dest, register }) => json!({
            "kind": "read_register", "dest": dest_json(*dest), "register": register,
            "register_name": register_name(chip, *register),
        }),
        Frame::Command(Command::WriteRegister { dest, register, value }) => json!({
            "kind": "write_register", "dest": dest_json(*dest), "register": register,
            "register_name": register_name(chip, *register), "value": value,
            "meaning": RegisterMeaning::of(chip, *register, *value).to_string(),
        }),
        Frame::Job(Job::Header(j)) => json!({
            "kind": "job", "format": "header", "job_id": j.job_id, "num_midstates": j.num_midstates,
            "starting_nonce": j.starting_nonce, "version": j.version, "nbits": j.nbits, "ntime": j.ntime,
            "prev_hash": hash_text(&j.prev_hash), "merkle_root": hash_text(&j.merkle_root), "length_byte": j.length_byte,
        }),
        Frame::Job(Job::Midstate(j)) => json!({
            "kind": "job", "format": "midstate", "job_id": j.job_id, "num_midstates": j.num_midstates,
            "slots": j.slots, "starting_nonce": j.starting_nonce, "nbits": j.nbits, "ntime": j.ntime,
            "merkle_tail": hex(&j.merkle_tail).replace(' ', ""),
            "midstates": j.midstates[..j.slots as usize].iter().map(|m| hex(m).replace(' ', "")).collect::<Vec<_>>(),
        }),
        Frame::Response(Response::Register(r)) => json!({
            "kind": "register_response", "chip_address": r.chip_address, "register": r.register,
            "register_name": register_name(chip, r.register), "value": r.value,
            "form": if r.extra.is_some() { 11 } else { 9 },
            "meaning": RegisterMeaning::of(chip, r.register, r.value).to_string(),
        }),
        Frame::Response(Response::Nonce(n)) => json!({
            "kind": "nonce", "nonce": n.nonce, "job_id": n.job_id(chip), "core": n.core_id(),
            "sub_id": n.sub_id(chip),
            "sub_id_is": if chip == ChipType::Bm1397 { "midstate" } else { "small_core" },
            "chip_address_field": n.chip_address_field(), "byte6": n.byte6,
            "version_bits": n.version_bits, "rolled_version_bits": n.version_bits.map(|v| u32::from(v) << 13),
            "form": if n.version_bits.is_some() { 11 } else { 9 },
        }),
    }
}

fn dest_json(d: Destination) -> Value {
    match d {
        Destination::All => json!("all"),
        Destination::Chip(a) => json!(a),
    }
}

fn item_json(it: &Item, chip: ChipType, bytes: &[u8]) -> Value {
    let d = dir_name(it.dir);
    match &it.event {
        Event::Frame { frame, raw, .. } => json!({
            "offset": it.offset, "dir": d, "event": "frame", "raw": hex(raw.as_bytes()).replace(' ', ""),
            "frame": frame_json(frame, chip),
        }),
        Event::BadCrc { raw, error, .. } => json!({
            "offset": it.offset, "dir": d, "event": "bad_crc", "raw": hex(raw.as_bytes()).replace(' ', ""),
            "error": error.to_string(),
        }),
        Event::Malformed { raw, error, .. } => json!({
            "offset": it.offset, "dir": d, "event": "malformed", "raw": hex(raw.as_bytes()).replace(' ', ""),
            "error": error.to_string(),
        }),
        Event::Skipped { offset, len } => {
            let s = *offset as usize;
            let e = (s + *len as usize).min(bytes.len());
            json!({"offset": offset, "event": "skipped", "len": len, "raw": hex(&bytes[s..e]).replace(' ', "")})
        }
    }
}
