//! Finding adapters and opening devices: kept apart from the code that uses a device, so tests
//! and callers can open (or inject) a [`GpuDevice`] however they like.

use std::fmt;
use std::str::FromStr;

use crate::Error;

/// One adapter wgpu can see, for `hashrig devices` and for choosing one.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AdapterSummary {
    /// Position in [`list_adapters`]'s order: what `--gpu N` names.
    pub index: usize,
    pub name: String,
    /// "vulkan", "metal", "dx12", ...
    pub backend: String,
    /// "discrete", "integrated", "virtual", "cpu" (a software driver such as lavapipe), "other".
    pub device_type: String,
    pub driver: String,
    pub driver_info: String,
    /// PCI vendor id (0x10de NVIDIA, 0x1002 AMD, 0x8086 Intel; 0x10005 Mesa for lavapipe).
    pub vendor: u32,
    /// PCI bus id when the backend reports one ("" otherwise).
    pub pci_bus_id: String,
}

impl AdapterSummary {
    fn of(index: usize, info: &wgpu::AdapterInfo) -> Self {
        Self {
            index,
            name: info.name.clone(),
            backend: info.backend.to_str().to_owned(),
            device_type: device_type_name(info.device_type).to_owned(),
            driver: info.driver.clone(),
            driver_info: info.driver_info.clone(),
            vendor: info.vendor,
            pci_bus_id: info.device_pci_bus_id.clone(),
        }
    }

    /// Is this a software rasteriser running on the CPU (lavapipe, WARP, SwiftShader)?
    pub fn is_software(&self) -> bool {
        self.device_type == "cpu"
    }
}

impl fmt::Display for AdapterSummary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "gpu {}: {} ({}, {}",
            self.index, self.name, self.backend, self.device_type
        )?;
        if !self.driver.is_empty() || !self.driver_info.is_empty() {
            write!(f, ", driver {} {}", self.driver, self.driver_info)?;
        }
        write!(f, ")")
    }
}

fn device_type_name(t: wgpu::DeviceType) -> &'static str {
    match t {
        wgpu::DeviceType::DiscreteGpu => "discrete",
        wgpu::DeviceType::IntegratedGpu => "integrated",
        wgpu::DeviceType::VirtualGpu => "virtual",
        wgpu::DeviceType::Cpu => "cpu",
        wgpu::DeviceType::Other => "other",
    }
}

/// Which adapter to open.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub enum AdapterSelector {
    /// The first hardware adapter (discrete before integrated), else the first one of any kind.
    #[default]
    Best,
    /// By position in [`list_adapters`].
    Index(usize),
    /// The first adapter whose name contains this (case-insensitive).
    Name(String),
}

impl FromStr for AdapterSelector {
    type Err = std::convert::Infallible;

    /// A number selects by index, anything else by name substring; "" or "auto" the best.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim();
        Ok(if s.is_empty() || s.eq_ignore_ascii_case("auto") {
            AdapterSelector::Best
        } else if let Ok(i) = s.parse::<usize>() {
            AdapterSelector::Index(i)
        } else {
            AdapterSelector::Name(s.to_owned())
        })
    }
}

impl fmt::Display for AdapterSelector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AdapterSelector::Best => f.write_str("auto"),
            AdapterSelector::Index(i) => write!(f, "{i}"),
            AdapterSelector::Name(n) => write!(f, "{n:?}"),
        }
    }
}

/// An open device: what [`crate::GpuHasher::new`] needs. Build one with [`open_device`], or
/// from any wgpu device (a test may bring its own).
#[derive(Debug)]
pub struct GpuDevice {
    pub device: wgpu::Device,
    pub queue: wgpu::Queue,
    pub adapter: AdapterSummary,
}

fn instance() -> wgpu::Instance {
    // Backends, flags and validation follow the WGPU_* environment variables wgpu documents.
    wgpu::Instance::new(wgpu::InstanceDescriptor::new_without_display_handle_from_env())
}

fn adapters(instance: &wgpu::Instance) -> Vec<wgpu::Adapter> {
    pollster::block_on(instance.enumerate_adapters(wgpu::Backends::all()))
}

/// Every adapter wgpu finds on this machine, in the order `--gpu N` counts them. Empty when
/// there is none (no Vulkan/Metal/DX12 driver): that is not an error.
pub fn list_adapters() -> Vec<AdapterSummary> {
    let instance = instance();
    adapters(&instance)
        .iter()
        .enumerate()
        .map(|(i, a)| AdapterSummary::of(i, &a.get_info()))
        .collect()
}

fn rank(s: &AdapterSummary) -> u8 {
    match s.device_type.as_str() {
        "discrete" => 0,
        "integrated" => 1,
        "virtual" => 2,
        "other" => 3,
        _ => 4,
    }
}

fn choose(list: &[AdapterSummary], sel: &AdapterSelector) -> Result<usize, Error> {
    let available = || {
        list.iter()
            .map(|s| format!("{}: {}", s.index, s.name))
            .collect::<Vec<_>>()
            .join("; ")
    };
    if list.is_empty() {
        return Err(Error::NoAdapter);
    }
    match sel {
        AdapterSelector::Best => Ok(list
            .iter()
            .min_by_key(|s| (rank(s), s.index))
            .map(|s| s.index)
            .unwrap_or(0)),
        AdapterSelector::Index(i) if *i < list.len() => Ok(*i),
        AdapterSelector::Name(n) => {
            let n = n.to_lowercase();
            list.iter()
                .find(|s| s.name.to_lowercase().contains(&n))
                .map(|s| s.index)
                .ok_or_else(|| Error::AdapterNotFound {
                    selector: sel.to_string(),
                    available: available(),
                })
        }
        AdapterSelector::Index(_) => Err(Error::AdapterNotFound {
            selector: sel.to_string(),
            available: available(),
        }),
    }
}

fn open_adapter(adapter: &wgpu::Adapter, summary: AdapterSummary) -> Result<GpuDevice, Error> {
    let desc = wgpu::DeviceDescriptor {
        label: Some("hashrig sha256d"),
        required_features: wgpu::Features::empty(),
        // Whatever the adapter offers: the tuner picks workgroup sizes within these.
        required_limits: adapter.limits(),
        ..Default::default()
    };
    let (device, queue) = pollster::block_on(adapter.request_device(&desc)).map_err(|source| {
        Error::RequestDevice {
            adapter: summary.name.clone(),
            source,
        }
    })?;
    Ok(GpuDevice {
        device,
        queue,
        adapter: summary,
    })
}

/// Open the adapter `sel` names.
pub fn open_device(sel: &AdapterSelector) -> Result<GpuDevice, Error> {
    let instance = instance();
    let adapters = adapters(&instance);
    let list: Vec<AdapterSummary> = adapters
        .iter()
        .enumerate()
        .map(|(i, a)| AdapterSummary::of(i, &a.get_info()))
        .collect();
    let i = choose(&list, sel)?;
    open_adapter(&adapters[i], list[i].clone())
}

/// Open every adapter, skipping software ones when there is any hardware adapter (several GPUs
/// at once, one hasher each).
pub fn open_all() -> Result<Vec<GpuDevice>, Error> {
    let instance = instance();
    let adapters = adapters(&instance);
    let list: Vec<AdapterSummary> = adapters
        .iter()
        .enumerate()
        .map(|(i, a)| AdapterSummary::of(i, &a.get_info()))
        .collect();
    if list.is_empty() {
        return Err(Error::NoAdapter);
    }
    let any_hardware = list.iter().any(|s| !s.is_software());
    list.iter()
        .filter(|s| !(any_hardware && s.is_software()))
        .map(|s| open_adapter(&adapters[s.index], s.clone()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn summary(index: usize, name: &str, device_type: &str) -> AdapterSummary {
        AdapterSummary {
            index,
            name: name.into(),
            backend: "vulkan".into(),
            device_type: device_type.into(),
            driver: String::new(),
            driver_info: String::new(),
            vendor: 0,
            pci_bus_id: String::new(),
        }
    }

    #[test]
    fn selector_parses_numbers_as_indices_and_text_as_names() {
        assert_eq!(
            "1".parse::<AdapterSelector>().unwrap(),
            AdapterSelector::Index(1)
        );
        assert_eq!(
            "H100".parse::<AdapterSelector>().unwrap(),
            AdapterSelector::Name("H100".into())
        );
        assert_eq!(
            "".parse::<AdapterSelector>().unwrap(),
            AdapterSelector::Best
        );
        assert_eq!(
            "auto".parse::<AdapterSelector>().unwrap(),
            AdapterSelector::Best
        );
    }

    #[test]
    fn best_prefers_discrete_over_software() {
        let list = [
            summary(0, "llvmpipe (LLVM 15)", "cpu"),
            summary(1, "NVIDIA H100", "discrete"),
        ];
        assert_eq!(choose(&list, &AdapterSelector::Best).unwrap(), 1);
    }

    #[test]
    fn name_match_is_case_insensitive_substring() {
        let list = [
            summary(0, "llvmpipe (LLVM 15)", "cpu"),
            summary(1, "NVIDIA H100", "discrete"),
        ];
        assert_eq!(
            choose(&list, &AdapterSelector::Name("h100".into())).unwrap(),
            1
        );
        assert_eq!(
            choose(&list, &AdapterSelector::Name("LLVMPIPE".into())).unwrap(),
            0
        );
    }

    #[test]
    fn unknown_index_or_name_is_an_error_listing_adapters() {
        let list = [summary(0, "llvmpipe", "cpu")];
        let e = choose(&list, &AdapterSelector::Index(3))
            .unwrap_err()
            .to_string();
        assert!(e.contains("0: llvmpipe"), "{e}");
        assert!(choose(&list, &AdapterSelector::Name("radeon".into())).is_err());
        assert!(matches!(
            choose(&[], &AdapterSelector::Best),
            Err(Error::NoAdapter)
        ));
    }
}
