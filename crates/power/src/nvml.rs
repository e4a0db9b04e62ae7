//! NVIDIA GPUs' total-energy counter through NVML (`nvmlDeviceGetTotalEnergyConsumption`,
//! millijoules since the driver loaded). The one NVML reader of hashrig: the GPU backend and the
//! power detection both open it here, by PCI bus id (what a Vulkan adapter and NVML both report),
//! so the watts are those of the GPUs that hashed. The library is loaded at run time: where it is
//! missing, the constructors return `Ok(None)`.

use nvml_wrapper::Nvml;

use crate::{Error, PowerSource, Reading};

/// "0000:3b:00.0" (Vulkan, sysfs), "00000000:3B:00.0" (NVML) and "3b:00.0" all name the same PCI
/// function: (domain, bus, device, function), or `None` when `id` is not a bus id.
pub fn parse_pci_bus_id(id: &str) -> Option<(u32, u32, u32, u32)> {
    let parts: Vec<&str> = id.trim().split([':', '.']).collect();
    let nums: Option<Vec<u32>> = parts.iter().map(|p| u32::from_str_radix(p, 16).ok()).collect();
    match nums?.as_slice() {
        [domain, bus, dev, func] => Some((*domain, *bus, *dev, *func)),
        [bus, dev, func] => Some((0, *bus, *dev, *func)),
        _ => None,
    }
}

/// The energy counters of one or more NVIDIA GPUs, summed.
pub struct NvmlGpu {
    nvml: Nvml,
    /// NVML indices and names of the GPUs read.
    gpus: Vec<(u32, String)>,
}

impl std::fmt::Debug for NvmlGpu {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NvmlGpu").field("gpus", &self.gpus).finish()
    }
}

impl NvmlGpu {
    /// The GPUs at these PCI bus ids. `Ok(None)` when NVML is not there, an id is not an NVIDIA
    /// GPU NVML knows, or a GPU lacks the energy counter: then power is unknown, never a guess.
    pub fn by_pci_bus_ids(ids: &[String]) -> Result<Option<Self>, Error> {
        let Ok(nvml) = Nvml::init() else { return Ok(None) };
        let count = nvml.device_count().map_err(Error::Nvml)?;
        let mut gpus = Vec::new();
        for id in ids {
            let Some(want) = parse_pci_bus_id(id) else { return Ok(None) };
            let found = (0..count).find_map(|index| {
                let dev = nvml.device_by_index(index).ok()?;
                let pci = dev.pci_info().ok().and_then(|p| parse_pci_bus_id(&p.bus_id))?;
                (pci == want).then(|| (index, dev.name().unwrap_or_else(|_| format!("GPU {index}"))))
            });
            match found {
                Some(g) if !gpus.contains(&g) => gpus.push(g),
                Some(_) => {}
                None => return Ok(None),
            }
        }
        Self::checked(nvml, gpus)
    }

    /// The machine's NVIDIA GPU when there is exactly one (a run that did not say which GPUs it
    /// used). With several, which one hashed is unknown: an error, not GPU 0's figure.
    pub fn only_gpu() -> Result<Option<Self>, Error> {
        let Ok(nvml) = Nvml::init() else { return Ok(None) };
        let count = nvml.device_count().map_err(Error::Nvml)?;
        match count {
            0 => Ok(None),
            1 => {
                let name = nvml.device_by_index(0).map_err(Error::Nvml)?.name().unwrap_or_else(|_| "GPU 0".into());
                Self::checked(nvml, vec![(0, name)])
            }
            n => Err(Error::NvmlWhichGpu(n)),
        }
    }

    fn checked(nvml: Nvml, gpus: Vec<(u32, String)>) -> Result<Option<Self>, Error> {
        if gpus.is_empty() {
            return Ok(None);
        }
        let mut gpu = Self { nvml, gpus };
        // Some GPUs lack the counter: then this source is not available.
        if gpu.read().is_err() {
            return Ok(None);
        }
        Ok(Some(gpu))
    }

    /// NVML's names of the GPUs read.
    pub fn names(&self) -> Vec<String> {
        self.gpus.iter().map(|g| g.1.clone()).collect()
    }
}

impl PowerSource for NvmlGpu {
    fn describe(&self) -> String {
        let names: Vec<&str> = self.gpus.iter().map(|g| g.1.as_str()).collect();
        format!("nvml: {} total energy (GPU board only)", names.join(" + "))
    }

    fn read(&mut self) -> Result<Reading, Error> {
        let mut mj = 0u64;
        for (index, _) in &self.gpus {
            let dev = self.nvml.device_by_index(*index).map_err(Error::Nvml)?;
            mj += dev.total_energy_consumption().map_err(Error::Nvml)?;
        }
        Ok(Reading::Energy { joules: mj as f64 * 1e-3 })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pci_bus_ids_in_nvml_and_vulkan_spellings_match() {
        assert_eq!(parse_pci_bus_id("00000000:3B:00.0"), parse_pci_bus_id("0000:3b:00.0"));
        assert_eq!(parse_pci_bus_id("3b:00.0"), Some((0, 0x3b, 0, 0)));
        assert_ne!(parse_pci_bus_id("0000:3b:00.0"), parse_pci_bus_id("0000:3c:00.0"));
        assert_eq!(parse_pci_bus_id(""), None);
        assert_eq!(parse_pci_bus_id("garbage"), None);
    }
}
