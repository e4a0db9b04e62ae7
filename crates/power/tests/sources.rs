//! Power sources against fake sysfs trees in a temporary directory and a fake meter command.

use std::fs;
use std::path::Path;
use std::time::{Duration, Instant};

use hashrig_power::{Meter, MeterCommand, PowerChoice, PowerSource, Reading, detect_at, hwmon_at, rapl_at};

fn write(path: &Path, text: &str) {
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    fs::write(path, text).unwrap();
}

fn fake_rapl(root: &Path) {
    write(&root.join("intel-rapl:0/name"), "package-0\n");
    write(&root.join("intel-rapl:0/energy_uj"), "999000000\n");
    write(&root.join("intel-rapl:0/max_energy_range_uj"), "1000000000\n");
    // A sub-zone and an mmio duplicate: must not be counted.
    write(&root.join("intel-rapl:0:0/name"), "core\n");
    write(&root.join("intel-rapl:0:0/energy_uj"), "5\n");
    write(&root.join("intel-rapl-mmio:0/name"), "package-0\n");
    write(&root.join("intel-rapl-mmio:0/energy_uj"), "7\n");
    write(&root.join("intel-rapl:1/name"), "package-1\n");
    write(&root.join("intel-rapl:1/energy_uj"), "100\n");
    write(&root.join("intel-rapl:1/max_energy_range_uj"), "1000000000\n");
}

fn joules(r: Reading) -> f64 {
    match r {
        Reading::Energy { joules } => joules,
        other => panic!("expected an energy reading, got {other:?}"),
    }
}

#[test]
fn rapl_sums_top_level_packages_and_undoes_wraparound() {
    let dir = tempfile::tempdir().unwrap();
    fake_rapl(dir.path());
    let mut rapl = rapl_at(dir.path()).unwrap().expect("zones found");
    assert_eq!(rapl.describe(), "rapl: package-0 + package-1 (CPU package only)");
    assert_eq!(joules(rapl.read().unwrap()), 0.0);
    // package-0 wraps: 999 J -> 1000 J (max) -> 2 J, i.e. +3 J; package-1 +1 J.
    write(&dir.path().join("intel-rapl:0/energy_uj"), "2000000\n");
    write(&dir.path().join("intel-rapl:1/energy_uj"), "1000100\n");
    assert!((joules(rapl.read().unwrap()) - 4.0).abs() < 1e-9);
    write(&dir.path().join("intel-rapl:0/energy_uj"), "3000000\n");
    assert!((joules(rapl.read().unwrap()) - 5.0).abs() < 1e-9);
}

#[test]
fn rapl_prefers_psys_when_present() {
    let dir = tempfile::tempdir().unwrap();
    fake_rapl(dir.path());
    write(&dir.path().join("intel-rapl:2/name"), "psys\n");
    write(&dir.path().join("intel-rapl:2/energy_uj"), "0\n");
    let rapl = rapl_at(dir.path()).unwrap().unwrap();
    assert_eq!(rapl.describe(), "rapl: psys (platform)");
}

#[test]
fn no_powercap_tree_means_no_rapl_and_unreadable_counters_are_errors() {
    let dir = tempfile::tempdir().unwrap();
    assert!(rapl_at(&dir.path().join("missing")).unwrap().is_none());
    write(&dir.path().join("intel-rapl:0/energy_uj"), "not a number\n");
    let err = rapl_at(dir.path()).unwrap_err();
    assert!(err.to_string().contains("does not hold a number"), "{err}");
}

#[test]
fn hwmon_reads_socket_counters_and_skips_per_core_ones() {
    let dir = tempfile::tempdir().unwrap();
    let dev = dir.path().join("hwmon3");
    write(&dev.join("name"), "amd_energy\n");
    write(&dev.join("energy1_input"), "1000000\n");
    write(&dev.join("energy1_label"), "Ecore000\n");
    write(&dev.join("energy17_input"), "5000000\n");
    write(&dev.join("energy17_label"), "Esocket0\n");
    write(&dir.path().join("hwmon0/name"), "acpitz\n");
    write(&dir.path().join("hwmon0/temp1_input"), "40000\n");
    let mut h = hwmon_at(dir.path()).unwrap().expect("an energy counter");
    assert_eq!(h.describe(), "hwmon: amd_energy/Esocket0");
    assert_eq!(joules(h.read().unwrap()), 0.0);
    write(&dev.join("energy17_input"), "7500000\n");
    write(&dev.join("energy1_input"), "9000000\n");
    assert!((joules(h.read().unwrap()) - 2.5).abs() < 1e-9);
}

#[test]
fn detect_order_is_command_then_watts_then_counters_and_none_is_none() {
    let dir = tempfile::tempdir().unwrap();
    let (pc, hw) = (dir.path().join("powercap"), dir.path().join("hwmon"));
    let none = detect_at(&PowerChoice::default(), &pc, &hw).unwrap();
    assert!(none.source.is_none(), "no source must mean unknown, got {:?}", none.source);
    assert_eq!(none.notes.len(), 2, "{:?}", none.notes);
    fake_rapl(&pc);
    let d = detect_at(&PowerChoice::default(), &pc, &hw).unwrap();
    assert!(d.source.unwrap().describe().starts_with("rapl:"));
    let d = detect_at(&PowerChoice { watts: Some(50.0), ..Default::default() }, &pc, &hw).unwrap();
    assert!(d.source.unwrap().describe().starts_with("declared:"));
    let choice = PowerChoice { watts: Some(50.0), command: Some("echo 1 W".into()), gpu: false, ..Default::default() };
    let d = detect_at(&choice, &pc, &hw).unwrap();
    assert_eq!(d.source.unwrap().describe(), "command: echo 1 W");
}

#[test]
fn meter_command_printing_watts_and_a_counting_joule_meter() {
    let mut w = MeterCommand::new("echo '123.4 W'");
    assert_eq!(w.read().unwrap(), Reading::Power { watts: 123.4 });

    // A meter that counts up 50 J per call, keeping its state in a file.
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("j");
    fs::write(&state, "0").unwrap();
    let cmd = format!("n=$(cat {s}); n=$((n + 50)); echo $n > {s}; echo \"$n J\"", s = state.display());
    let t0 = Instant::now();
    let mut m = Meter::start_at(Box::new(MeterCommand::new(cmd)), t0).unwrap();
    m.poll_at(t0 + Duration::from_secs(1)).unwrap();
    let r = m.finish_at(t0 + Duration::from_secs(2)).unwrap();
    assert_eq!(r.joules, 100.0);
    assert_eq!(r.watts, 50.0);
}

#[test]
fn a_failing_or_babbling_meter_command_is_a_clear_error() {
    let err = MeterCommand::new("exit 3").read().unwrap_err();
    assert!(err.to_string().contains("failed"), "{err}");
    let err = MeterCommand::new("echo twelve").read().unwrap_err();
    assert!(err.to_string().contains("printed \"twelve\""), "{err}");
}
