//! `hashrig selftest` and `hashrig devices` run as a real binary.

use assert_cmd::Command;

fn hashrig() -> Command {
    Command::cargo_bin("hashrig").expect("the hashrig binary is built")
}

#[test]
fn selftest_passes_on_every_cpu_kernel() {
    let out = hashrig().args(["selftest", "--threads", "2"]).output().unwrap();
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert_eq!(out.status.code(), Some(0), "{stdout}{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains("ok    cpu [scalar]"), "{stdout}");
    assert!(!stdout.contains("FAIL"), "{stdout}");
}

#[test]
fn devices_lists_the_cpu_kernels_and_the_other_sections() {
    let out = hashrig().arg("devices").output().unwrap();
    assert!(out.status.success());
    let stdout = String::from_utf8(out.stdout).unwrap();
    for k in ["scalar", "sha-ni", "avx2"] {
        assert!(stdout.contains(&format!("kernel {k}")), "{stdout}");
    }
    assert!(stdout.contains("(default)"), "{stdout}");
    for section in ["GPU adapters:", "Serial ports:", "Power sources:"] {
        assert!(stdout.contains(section), "{stdout}");
    }
}

#[test]
fn unknown_subcommands_and_flags_exit_2() {
    assert_eq!(hashrig().arg("frobnicate").output().unwrap().status.code(), Some(2));
    assert_eq!(hashrig().args(["bench", "--turbo"]).output().unwrap().status.code(), Some(2));
    assert_eq!(hashrig().args(["selftest", "--backend", "cpu:9"]).output().unwrap().status.code(), Some(2));
    assert_eq!(hashrig().arg("--help").output().unwrap().status.code(), Some(0));
}
