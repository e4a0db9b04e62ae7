//! Power of NVIDIA GPUs from NVML, for the adapter a hasher runs on: the adapter's PCI bus id
//! (which Vulkan reports) picks the NVML device. The reader itself is `hashrig_power::NvmlGpu`,
//! the one NVML reader of hashrig (what `bench` and `mine` measure with); this module only
//! matches adapters to it.
//!
//! NVML (`libnvidia-ml.so`) is loaded at run time; a machine without it, a GPU that is not
//! NVIDIA's, an adapter without a bus id on a machine with several NVIDIA GPUs, or a build
//! without the `nvml` feature all mean "power unknown", never an error and never another GPU's
//! figure.

use crate::AdapterSummary;

/// PCI vendor id of NVIDIA.
pub const NVIDIA_VENDOR: u32 = 0x10de;

/// "0000:3b:00.0" (Vulkan), "00000000:3B:00.0" (NVML) and "3b:00.0" all name the same PCI
/// function: (domain, bus, device, function).
pub fn parse_pci_bus_id(id: &str) -> Option<(u32, u32, u32, u32)> {
    #[cfg(feature = "nvml")]
    {
        hashrig_power::parse_pci_bus_id(id)
    }
    #[cfg(not(feature = "nvml"))]
    {
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
}

/// The PCI bus ids to give NVML for these adapters (`hashrig_power::PowerChoice`'s
/// `gpu_pci_bus_ids`): those of the NVIDIA ones. `None` when an NVIDIA adapter has no bus id,
/// so which NVML device it is cannot be told.
pub fn nvml_bus_ids(adapters: &[AdapterSummary]) -> Option<Vec<String>> {
    adapters
        .iter()
        .filter(|a| a.vendor == NVIDIA_VENDOR)
        .map(|a| parse_pci_bus_id(&a.pci_bus_id).map(|_| a.pci_bus_id.clone()))
        .collect()
}

/// The NVML energy counter of this adapter's board, by PCI bus id. `None` when it is not an
/// NVIDIA GPU, has no bus id, or NVML is not available.
#[cfg(feature = "nvml")]
pub fn nvml_for_adapter(adapter: &AdapterSummary) -> Option<hashrig_power::NvmlGpu> {
    let ids = nvml_bus_ids(std::slice::from_ref(adapter))?;
    if ids.is_empty() {
        return None;
    }
    match hashrig_power::NvmlGpu::by_pci_bus_ids(&ids) {
        Ok(found) => found,
        Err(e) => {
            tracing::info!(error = %e, "NVML not usable: GPU power unknown");
            None
        }
    }
}

/// Can NVML measure this adapter's power (for `hashrig devices`)?
pub fn has_nvml(adapter: &AdapterSummary) -> bool {
    #[cfg(feature = "nvml")]
    {
        nvml_for_adapter(adapter).is_some()
    }
    #[cfg(not(feature = "nvml"))]
    {
        let _ = adapter;
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn adapter(vendor: u32, pci: &str) -> AdapterSummary {
        AdapterSummary {
            index: 0,
            name: "x".into(),
            backend: "vulkan".into(),
            device_type: "discrete".into(),
            driver: String::new(),
            driver_info: String::new(),
            vendor,
            device_id: 0,
            pci_bus_id: pci.into(),
            also_listed_by: Vec::new(),
        }
    }

    #[test]
    fn pci_bus_ids_in_nvml_and_vulkan_spellings_match() {
        assert_eq!(
            parse_pci_bus_id("00000000:3B:00.0"),
            parse_pci_bus_id("0000:3b:00.0")
        );
        assert_eq!(parse_pci_bus_id("garbage"), None);
    }

    #[test]
    fn nvml_is_asked_about_the_nvidia_adapters_by_bus_id() {
        let lavapipe = adapter(0x10005, "");
        let h100 = adapter(NVIDIA_VENDOR, "0000:5e:00.0");
        assert_eq!(nvml_bus_ids(std::slice::from_ref(&lavapipe)), Some(vec![]));
        assert_eq!(
            nvml_bus_ids(&[lavapipe.clone(), h100.clone()]),
            Some(vec!["0000:5e:00.0".to_owned()])
        );
        // An NVIDIA adapter without a bus id: which NVML device it is, is unknown.
        assert_eq!(nvml_bus_ids(&[h100, adapter(NVIDIA_VENDOR, "")]), None);
        assert!(!has_nvml(&lavapipe));
    }
}
