//! Power of NVIDIA GPUs from NVML: the board's total-energy counter (millijoules since the
//! driver loaded) and its present draw.
//!
//! NVML (`libnvidia-ml.so`) is loaded at run time by `nvml-wrapper`; a machine without it, a
//! GPU that is not NVIDIA's, or a build without the `nvml` feature all give `None` ("power
//! unknown"), never an error. [`NvmlEnergy`] is a `hashrig_power::PowerSource` (with the
//! feature), matched to the adapter a hasher runs on, for callers that measure one GPU of several.

use crate::AdapterSummary;

/// PCI vendor id of NVIDIA.
pub const NVIDIA_VENDOR: u32 = 0x10de;

/// Reads one NVIDIA GPU's energy counter.
#[derive(Debug)]
pub struct NvmlEnergy {
    #[cfg(feature = "nvml")]
    nvml: nvml_wrapper::Nvml,
    #[cfg(feature = "nvml")]
    index: u32,
    /// The GPU's name as NVML gives it.
    pub name: String,
}

/// "0000:3b:00.0", "00000000:3B:00.0" and "3b:00.0" all name the same PCI function.
pub fn normalize_pci_bus_id(id: &str) -> Option<(u32, u32, u32, u32)> {
    let parts: Vec<&str> = id.trim().split([':', '.']).collect();
    let nums: Option<Vec<u32>> = parts
        .iter()
        .map(|p| u32::from_str_radix(p, 16).ok())
        .collect();
    match nums?.as_slice() {
        [domain, bus, dev, func] => Some((*domain, *bus, *dev, *func)),
        [bus, dev, func] => Some((0, *bus, *dev, *func)),
        _ => None,
    }
}

impl NvmlEnergy {
    /// The NVML device behind a wgpu adapter: matched by PCI bus id, else by name, else the only
    /// NVIDIA GPU there is. `None` when it is not an NVIDIA GPU or NVML is not available.
    #[cfg(feature = "nvml")]
    pub fn for_adapter(adapter: &AdapterSummary) -> Option<Self> {
        if adapter.vendor != NVIDIA_VENDOR {
            return None;
        }
        let nvml = match nvml_wrapper::Nvml::init() {
            Ok(n) => n,
            Err(e) => {
                tracing::info!(error = %e, "NVML not available: GPU power unknown");
                return None;
            }
        };
        let count = nvml.device_count().ok()?;
        let want_pci = normalize_pci_bus_id(&adapter.pci_bus_id);
        let mut by_name = None;
        for index in 0..count {
            let Ok(dev) = nvml.device_by_index(index) else {
                continue;
            };
            let name = dev.name().unwrap_or_default();
            let pci = dev
                .pci_info()
                .ok()
                .and_then(|p| normalize_pci_bus_id(&p.bus_id));
            if want_pci.is_some() && pci == want_pci {
                return Some(Self { nvml, index, name });
            }
            if by_name.is_none()
                && !name.is_empty()
                && (adapter.name.contains(&name) || name.contains(&adapter.name))
            {
                by_name = Some((index, name));
            }
        }
        let (index, name) = match by_name {
            Some(found) => found,
            None if count == 1 => (0, nvml.device_by_index(0).ok()?.name().unwrap_or_default()),
            None => return None,
        };
        Some(Self { nvml, index, name })
    }

    /// Without the `nvml` feature there is never an NVML source.
    #[cfg(not(feature = "nvml"))]
    pub fn for_adapter(_adapter: &AdapterSummary) -> Option<Self> {
        None
    }

    /// NVML's index of this GPU (what `hashrig_power`'s NVML source opens).
    #[cfg(feature = "nvml")]
    pub fn nvml_index(&self) -> u32 {
        self.index
    }

    /// Energy used by the board since the driver loaded, in joules.
    pub fn total_energy_joules(&self) -> Option<f64> {
        #[cfg(feature = "nvml")]
        {
            let dev = self.nvml.device_by_index(self.index).ok()?;
            dev.total_energy_consumption()
                .ok()
                .map(|mj| mj as f64 / 1000.0)
        }
        #[cfg(not(feature = "nvml"))]
        None
    }

    /// Present board power draw, in watts.
    pub fn power_watts(&self) -> Option<f64> {
        #[cfg(feature = "nvml")]
        {
            let dev = self.nvml.device_by_index(self.index).ok()?;
            dev.power_usage().ok().map(|mw| f64::from(mw) / 1000.0)
        }
        #[cfg(not(feature = "nvml"))]
        None
    }
}

#[cfg(feature = "nvml")]
impl hashrig_power::PowerSource for NvmlEnergy {
    fn describe(&self) -> String {
        format!("nvml: {} total energy (GPU board only)", self.name)
    }

    fn read(&mut self) -> Result<hashrig_power::Reading, hashrig_power::Error> {
        let dev = self.nvml.device_by_index(self.index).map_err(hashrig_power::Error::Nvml)?;
        let mj = dev.total_energy_consumption().map_err(hashrig_power::Error::Nvml)?;
        Ok(hashrig_power::Reading::Energy { joules: mj as f64 / 1000.0 })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pci_bus_ids_in_nvml_and_vulkan_spellings_match() {
        assert_eq!(
            normalize_pci_bus_id("00000000:3B:00.0"),
            normalize_pci_bus_id("0000:3b:00.0")
        );
        assert_eq!(normalize_pci_bus_id("3b:00.0"), Some((0, 0x3b, 0, 0)));
        assert_eq!(normalize_pci_bus_id(""), None);
        assert_eq!(normalize_pci_bus_id("garbage"), None);
    }

    #[test]
    fn a_non_nvidia_adapter_has_no_nvml_source() {
        let lavapipe = AdapterSummary {
            index: 0,
            name: "llvmpipe (LLVM 15.0.6, 256 bits)".into(),
            backend: "vulkan".into(),
            device_type: "cpu".into(),
            driver: "llvmpipe".into(),
            driver_info: String::new(),
            vendor: 0x10005,
            pci_bus_id: String::new(),
        };
        assert!(NvmlEnergy::for_adapter(&lavapipe).is_none());
    }
}
