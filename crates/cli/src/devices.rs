//! `hashrig devices`: what this machine offers: CPU kernels, GPU adapters, serial ports, power
//! sources. The GPU and serial sections are hooks the GPU and ASIC backends fill.

use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::process::ExitCode;

use clap::Args;
use hashrig_sha256d::Kernel;

#[derive(Debug, Args)]
pub struct DevicesArgs {
    /// Also ask each serial port for BM13xx chip ids (writes to the ports; about 1.5 s per port
    /// where nothing answers: 500 ms at each of 115 200, 1 000 000 and 3 125 000 baud).
    #[arg(long)]
    pub probe: bool,
    /// With --probe: probe these ports instead of the ones the OS lists (ptys such as an emulator's
    /// /dev/pts/N are never listed).
    #[arg(value_name = "PORT", requires = "probe")]
    pub ports: Vec<String>,
}

/// Set in the one re-run below, so it happens once.
const XDG_RERUN: &str = "HASHRIG_DEVICES_XDG_RERUN";

/// Mesa's Vulkan drivers print "error: XDG_RUNTIME_DIR is invalid or not set in the environment."
/// while wgpu lists adapters where that variable is unset (servers, containers, CI): harmless,
/// but it reads like a failure of `devices`. Changing our own environment is `unsafe` in Rust
/// 2024, so `devices` runs itself once more with the variable set to a private empty folder.
/// `None`: no re-run (the variable is set, or the re-run could not start): carry on here.
fn rerun_with_xdg_runtime_dir() -> Option<ExitCode> {
    use std::os::unix::fs::PermissionsExt;
    if std::env::var_os("XDG_RUNTIME_DIR").is_some() || std::env::var_os(XDG_RERUN).is_some() {
        return None;
    }
    let exe = std::env::current_exe().ok()?;
    let dir = std::env::temp_dir().join(format!("hashrig-xdg-{}", std::process::id()));
    std::fs::create_dir(&dir).ok()?;
    let status = std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700)).ok().and_then(|()| {
        std::process::Command::new(exe).args(std::env::args_os().skip(1)).env("XDG_RUNTIME_DIR", &dir).env(XDG_RERUN, "1").status().ok()
    });
    let _ = std::fs::remove_dir_all(&dir);
    Some(status?.code().map_or(ExitCode::FAILURE, |c| ExitCode::from(u8::try_from(c).unwrap_or(1))))
}

pub fn run(a: &DevicesArgs) -> anyhow::Result<ExitCode> {
    if let Some(code) = rerun_with_xdg_runtime_dir() {
        return Ok(code);
    }
    crate::outln!("CPU: {} ({} threads available)", cpu_model(), hashrig_hasher_cpu::available_threads())?;
    let masked = hashrig_sha256d::disabled_cpu_features().map_err(|e| crate::bad_input(e.to_string()))?;
    if !masked.is_empty() {
        let names: Vec<&str> = masked.iter().map(|f| f.name()).collect();
        crate::outln!("  {} masks off: {}", hashrig_sha256d::CPU_DISABLE_ENV, names.join(", "))?;
    }
    let best = Kernel::best();
    for k in Kernel::ALL {
        let state = if !k.is_available() && k.needs().iter().all(|f| f.in_hardware()) {
            "masked off (HASHRIG_CPU_DISABLE)"
        } else if !k.is_available() {
            "not supported by this CPU"
        } else if k == best {
            "available (default)"
        } else {
            "available"
        };
        crate::outln!("  kernel {:<10} {state}", k.name())?;
    }
    crate::outln!("GPU adapters:")?;
    for line in gpu_adapters() {
        crate::outln!("  {line}")?;
    }
    crate::outln!("Serial ports:")?;
    for line in serial_ports(a.probe, &a.ports) {
        crate::outln!("  {line}")?;
    }
    crate::outln!("Power sources:")?;
    for line in power_sources() {
        crate::outln!("  {line}")?;
    }
    Ok(ExitCode::SUCCESS)
}

/// The source `hashrig bench` would pick without `--watts`/`--power-cmd`: for the default CPU
/// bench, and for a GPU bench when that differs (NVML comes first there).
pub fn power_sources() -> Vec<String> {
    let detect = |gpu: bool| hashrig_power::detect(&hashrig_power::PowerChoice { gpu, ..Default::default() });
    let describe = |d: &Result<hashrig_power::Detected, hashrig_power::Error>| match d {
        Ok(d) => d.source.as_ref().map_or_else(|| "none found: power reported as unknown unless given --watts or --power-cmd".to_owned(), |s| s.describe()),
        Err(e) => format!("error: {e}"),
    };
    let cpu = detect(false);
    let mut lines = vec![format!("bench (cpu): {}", describe(&cpu))];
    if let Ok(d) = &cpu {
        lines.extend(d.notes.iter().map(|n| format!("  ({n})")));
    }
    let gpu = detect(true);
    if describe(&gpu) != describe(&cpu) {
        lines.push(format!("bench --backend gpu: {}", describe(&gpu)));
    }
    lines
}

/// One line per GPU adapter wgpu finds (index for `--backend gpu:N`, backend, type, driver).
pub fn gpu_adapters() -> Vec<String> {
    let list = hashrig_hasher_gpu::list_adapters();
    if list.is_empty() {
        return vec!["none found (no Vulkan/Metal/DX12 driver; on Linux without a GPU, `apt-get install mesa-vulkan-drivers libvulkan1` gives the lavapipe software adapter)".to_owned()];
    }
    list.iter()
        .map(|a| {
            let nvml = if hashrig_hasher_gpu::power::has_nvml(a) { ", NVML power" } else { "" };
            format!("{a}{nvml}")
        })
        .collect()
}

/// One line per serial port (the OS's list, or `named` when not empty); with `probe`, what
/// answered on it (use it with `--backend asic:PORT`).
pub fn serial_ports(probe: bool, named: &[String]) -> Vec<String> {
    let ports = if named.is_empty() {
        match hashrig_hasher_asic::list_ports() {
            Ok(p) => p,
            Err(e) => return vec![format!("cannot list serial ports: {:#}", anyhow::Error::from(e))],
        }
    } else {
        named.to_vec()
    };
    if ports.is_empty() {
        return vec!["none found (a BM13xx board shows up as /dev/ttyUSB* or /dev/ttyACM*)".to_owned()];
    }
    let who = Credentials::of_this_process();
    ports
        .into_iter()
        .map(|line| {
            let path = line.split(' ').next().unwrap_or_default().to_owned();
            if let Some(who) = &who
                && let Some(hint) = access_hint(Path::new(&path), who)
            {
                return format!("{line}: {hint}");
            }
            if !probe {
                return line;
            }
            match hashrig_hasher_asic::probe_port(&path) {
                Ok((chip, n)) => format!("{line}: {n} x {chip} answered"),
                Err(e) => format!("{line}: {:#}", anyhow::Error::from(e)),
            }
        })
        .collect()
}

/// Who we are, as the kernel checks file permissions (Linux: `/proc/self/status`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Credentials {
    /// The filesystem user id.
    pub uid: u32,
    /// The filesystem group id and the supplementary groups.
    pub groups: Vec<u32>,
}

impl Credentials {
    /// From `/proc/self/status`; `None` where there is no such file (not Linux).
    pub fn of_this_process() -> Option<Self> {
        Self::from_proc_status(&std::fs::read_to_string("/proc/self/status").ok()?)
    }

    /// Parse the `Uid:`, `Gid:` and `Groups:` lines (the fourth id of `Uid`/`Gid` is the
    /// filesystem one).
    pub fn from_proc_status(status: &str) -> Option<Self> {
        let ids = |key: &str| -> Option<Vec<u32>> {
            let line = status.lines().find_map(|l| l.strip_prefix(key))?;
            line.split_whitespace().map(|t| t.parse().ok()).collect()
        };
        let uid = *ids("Uid:")?.get(3)?;
        let mut groups = vec![*ids("Gid:")?.get(3)?];
        groups.extend(ids("Groups:").unwrap_or_default());
        Some(Self { uid, groups })
    }
}

/// May `who` open a file with this mode, owner and group for reading and writing? The check
/// `open(2)` makes from the permission bits (root may always; ACLs and security modules are not
/// seen here, so a `true` is not a promise, but a `false` is the usual dialout case).
pub fn may_read_write(mode: u32, owner: u32, group: u32, who: &Credentials) -> bool {
    let bits = if who.uid == 0 {
        return true;
    } else if who.uid == owner {
        mode >> 6
    } else if who.groups.contains(&group) {
        mode >> 3
    } else {
        mode
    };
    bits & 0o6 == 0o6
}

/// Why `who` cannot use the serial port at `path`, with what to do; `None` when it can (or
/// when the port cannot be looked at). Looks at the permission bits only: nothing is opened or
/// written.
pub fn access_hint(path: &Path, who: &Credentials) -> Option<String> {
    let meta = std::fs::metadata(path).ok()?;
    if may_read_write(meta.mode(), meta.uid(), meta.gid(), who) {
        return None;
    }
    let mode = meta.mode() & 0o777;
    if meta.gid() != 0 && mode & 0o060 == 0o060 {
        let group = name_of("/etc/group", meta.gid()).unwrap_or_else(|| meta.gid().to_string());
        return Some(format!(
            "not accessible (mode {mode:03o}, group {group}): add your user to the {group} group (`sudo usermod -aG {group} $USER`, then log in again)"
        ));
    }
    let owner = name_of("/etc/passwd", meta.uid()).unwrap_or_else(|| meta.uid().to_string());
    Some(format!(
        "not accessible (mode {mode:03o}, only {owner} may open it read-write): give it to the dialout group with a udev rule (GROUP=\"dialout\", MODE=\"0660\") and add your user to dialout"
    ))
}

/// The name of a user or group id, from `/etc/passwd` or `/etc/group` (name:password:id:...).
fn name_of(file: &str, id: u32) -> Option<String> {
    let text = std::fs::read_to_string(file).ok()?;
    text.lines().find_map(|l| {
        let mut f = l.split(':');
        let name = f.next()?;
        (f.nth(1)?.parse::<u32>().ok()? == id).then(|| name.to_owned())
    })
}

fn cpu_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| s.lines().find(|l| l.starts_with("model name")).and_then(|l| l.split_once(':')).map(|(_, v)| v.trim().to_owned()))
        .unwrap_or_else(|| std::env::consts::ARCH.to_owned())
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    fn user(uid: u32, groups: &[u32]) -> Credentials {
        Credentials { uid, groups: groups.to_vec() }
    }

    #[test]
    fn a_root_owned_dialout_port_needs_the_group() {
        // crw-rw---- root:dialout(20), the usual /dev/ttyUSB0.
        let (mode, owner, group) = (0o660, 0, 20);
        assert!(!may_read_write(mode, owner, group, &user(1000, &[1000])), "not in dialout");
        assert!(may_read_write(mode, owner, group, &user(1000, &[1000, 20])), "in dialout");
        assert!(may_read_write(mode, owner, group, &user(0, &[0])), "root");
        assert!(!may_read_write(0o640, owner, group, &user(1000, &[20])), "group may only read");
        assert!(may_read_write(0o600, 1000, group, &user(1000, &[])), "the owner");
        assert!(!may_read_write(0o066, 1000, group, &user(1000, &[20])), "the owner's own bits count, not the group's");
        assert!(may_read_write(0o666, owner, group, &user(1000, &[])), "world read-write");
    }

    #[test]
    fn credentials_come_from_the_filesystem_ids_and_groups() {
        let status = "Name:\tx\nUid:\t1000\t1000\t1000\t1001\nGid:\t100\t100\t100\t101\nGroups:\t20 27 \n";
        assert_eq!(Credentials::from_proc_status(status), Some(user(1001, &[101, 20, 27])));
        let no_groups = "Uid:\t0\t0\t0\t0\nGid:\t0\t0\t0\t0\nGroups:\t\n";
        assert_eq!(Credentials::from_proc_status(no_groups), Some(user(0, &[0])));
        assert_eq!(Credentials::from_proc_status("Name:\tx\n"), None);
        assert!(Credentials::of_this_process().is_some(), "Linux has /proc/self/status");
    }

    #[test]
    fn a_mode_000_file_gets_the_group_hint_for_anyone_but_root() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ttyFAKE0");
        std::fs::write(&path, b"").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o000)).unwrap();
        let meta = std::fs::metadata(&path).unwrap();
        // Someone other than the owner and outside the file's group: refused, with the hint.
        let stranger = user(meta.uid().wrapping_add(1).max(1), &[meta.gid().wrapping_add(1)]);
        let hint = access_hint(&path, &stranger).expect("mode 000 is not accessible");
        assert!(hint.starts_with("not accessible (mode 000") && hint.contains("dialout"), "{hint}");
        // Group read-write (and not root's group): join that group.
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o660)).unwrap();
        let hint = access_hint(&path, &stranger);
        if meta.gid() == 0 {
            assert!(hint.as_deref().is_some_and(|h| h.contains("udev rule")), "never advise joining root's group: {hint:?}");
        } else {
            assert!(hint.as_deref().is_some_and(|h| h.contains("usermod -aG")), "{hint:?}");
        }
        let member = user(stranger.uid, &[meta.gid()]);
        assert_eq!(access_hint(&path, &member), None, "a member of the group may open it");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o000)).unwrap();
        // This process, as it really is.
        let me = Credentials::of_this_process().unwrap();
        if me.uid == 0 {
            eprintln!("SKIPPED: running as root, which ignores permission bits; the mode-000 check for this process cannot fail");
            assert_eq!(access_hint(&path, &me), None, "root may open anything");
        } else {
            assert!(access_hint(&path, &me).is_some(), "mode 000 refuses this non-root process");
        }
    }
}
