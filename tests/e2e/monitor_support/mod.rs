//! A real cgminer client for the API tests: pyasic (PyPI), driven by `pyasic_probe.py` next to
//! this file. `.ci/run` installs it under target/ and names its interpreter in
//! HASHRIG_PYASIC_PYTHON; without it the tests that need it say SKIPPED, or fail under
//! HASHRIG_REQUIRE_PYASIC=1 (which `.ci/run` sets).

use std::path::PathBuf;
use std::process::Command;

/// The Python with pyasic installed, or `None` (after saying SKIPPED) when there is none.
pub fn pyasic_python(test: &str) -> Option<PathBuf> {
    let found = std::env::var_os("HASHRIG_PYASIC_PYTHON").map(PathBuf::from).filter(|p| {
        Command::new(p).args(["-c", "import pyasic"]).output().is_ok_and(|o| o.status.success())
    });
    if found.is_none() {
        if std::env::var("HASHRIG_REQUIRE_PYASIC").as_deref() == Ok("1") {
            panic!("HASHRIG_REQUIRE_PYASIC=1 but HASHRIG_PYASIC_PYTHON does not name a Python with pyasic (see .ci/run)");
        }
        eprintln!("SKIPPED {test}: no pyasic (set HASHRIG_PYASIC_PYTHON to a Python with `pip install pyasic`)");
    }
    found
}

/// Run `pyasic_probe.py PORT [ARGS...]` and parse what it prints.
pub fn probe(python: &PathBuf, port: u16, args: &[&str]) -> serde_json::Value {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/e2e/monitor_support/pyasic_probe.py");
    let out = Command::new(python).arg(script).arg(port.to_string()).args(args).output().expect("run the pyasic probe");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "pyasic probe failed: {}\n{stdout}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("probe output is not JSON ({e}): {stdout}"))
}
