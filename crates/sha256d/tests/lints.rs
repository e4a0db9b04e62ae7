//! This crate repeats the workspace's lints (Cargo cannot extend `[workspace.lints]` while
//! allowing `unsafe_code`): every workspace lint but `unsafe_code` must be here at the same level.

fn section<'a>(toml: &'a str, header: &str) -> Vec<&'a str> {
    toml.lines()
        .skip_while(|l| l.trim() != header)
        .skip(1)
        .take_while(|l| !l.trim_start().starts_with('['))
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .collect()
}

#[test]
fn the_workspace_lints_are_repeated_here_except_unsafe_code() {
    let root = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../Cargo.toml")).expect("root Cargo.toml");
    let ours = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/Cargo.toml")).expect("crate Cargo.toml");
    for (ws, here) in [("[workspace.lints.rust]", "[lints.rust]"), ("[workspace.lints.clippy]", "[lints.clippy]")] {
        let want = section(&root, ws);
        assert!(!want.is_empty(), "{ws} not found in the root Cargo.toml");
        let have = section(&ours, here);
        for lint in want.iter().filter(|l| !l.starts_with("unsafe_code")) {
            assert!(have.contains(lint), "`{lint}` of {ws} is missing from crates/sha256d's {here}: {have:?}");
        }
    }
}
