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
    /// PCI device id (with `vendor`, the card model).
    pub device_id: u32,
    /// PCI bus id when the backend reports one ("" otherwise).
    pub pci_bus_id: String,
    /// Other APIs that list this same card (matched on the PCI bus): it is opened once, through
    /// `backend`.
    pub also_listed_by: Vec<String>,
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
            device_id: info.device,
            pci_bus_id: info.device_pci_bus_id.clone(),
            also_listed_by: Vec::new(),
        }
    }

    /// What kind of adapter this is, in words every output uses: a software adapter is never
    /// passed off as a GPU.
    pub fn kind_label(&self) -> &'static str {
        match self.device_type.as_str() {
            "discrete" => "discrete GPU",
            "integrated" => "integrated GPU",
            "virtual" => "virtual GPU",
            "cpu" => SOFTWARE_LABEL,
            _ => "GPU of unknown type",
        }
    }

    /// Is this a software rasteriser running on the CPU (lavapipe, WARP, SwiftShader)?
    pub fn is_software(&self) -> bool {
        self.device_type == "cpu"
    }
}

/// How a software adapter (lavapipe/llvmpipe, WARP, SwiftShader) is named in every output.
pub const SOFTWARE_LABEL: &str = "SOFTWARE adapter: runs on the CPU, not a GPU";

impl fmt::Display for AdapterSummary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "gpu {}: {} ({}, {}",
            self.index,
            self.name,
            self.backend,
            self.kind_label()
        )?;
        if !self.driver.is_empty() || !self.driver_info.is_empty() {
            write!(f, ", driver {} {}", self.driver, self.driver_info)?;
        }
        if !self.pci_bus_id.is_empty() {
            write!(f, ", pci {}", self.pci_bus_id)?;
        }
        if !self.also_listed_by.is_empty() {
            write!(f, ", also listed by {}", self.also_listed_by.join(", "))?;
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
    /// The first hardware adapter (discrete before integrated); a software adapter only when
    /// there is no other.
    #[default]
    Best,
    /// By position in [`list_adapters`]. A software adapter is refused while a hardware one
    /// exists: it must be asked for by name.
    Index(usize),
    /// The first adapter whose name or driver contains this (case-insensitive): "llvmpipe" or
    /// "lavapipe" names Mesa's software adapter.
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

/// Which GPUs a backend opens: the best one, every hardware one, or a list of adapters.
/// Parsed from the text after `gpu:` (`all`, `1`, `nvidia`, `0,1`; nothing: the best).
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub enum GpuSelection {
    /// The first hardware adapter (a software one only when there is no other).
    #[default]
    Best,
    /// Every hardware adapter, one hasher per card (a software one only when alone).
    All,
    /// These adapters, each card once however often it is named.
    List(Vec<AdapterSelector>),
}

impl FromStr for GpuSelection {
    type Err = std::convert::Infallible;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim();
        Ok(if s.is_empty() || s.eq_ignore_ascii_case("auto") {
            GpuSelection::Best
        } else if s.eq_ignore_ascii_case("all") {
            GpuSelection::All
        } else {
            GpuSelection::List(s.split(',').map(|p| p.parse().unwrap_or_default()).collect())
        })
    }
}

impl fmt::Display for GpuSelection {
    /// Back to the text it was parsed from (empty for the best adapter).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            GpuSelection::Best => Ok(()),
            GpuSelection::All => f.write_str("all"),
            GpuSelection::List(l) => {
                for (i, a) in l.iter().enumerate() {
                    if i > 0 {
                        f.write_str(",")?;
                    }
                    match a {
                        AdapterSelector::Best => f.write_str("auto")?,
                        AdapterSelector::Index(n) => write!(f, "{n}")?,
                        AdapterSelector::Name(n) => f.write_str(n)?,
                    }
                }
                Ok(())
            }
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

/// Preference among APIs listing one card: Vulkan, then DX12, then Metal, then the rest.
fn backend_rank(backend: &str) -> u8 {
    match backend {
        "vulkan" => 0,
        "dx12" => 1,
        "metal" => 2,
        _ => 3,
    }
}

/// One card listed by several APIs (Vulkan and DX12 on Windows) is one adapter: returns, in the
/// order to show them, the raw positions to keep, each with the backends of the copies dropped.
/// Two entries are one card when they report the same PCI bus id; an entry without a bus id is
/// matched on (vendor, device id, name) with an entry of another API when that API lists exactly
/// one such card (two identical cards in one API stay two).
fn dedupe(raw: &[AdapterSummary]) -> Vec<(usize, Vec<String>)> {
    let same_model = |a: &AdapterSummary, b: &AdapterSummary| {
        a.vendor == b.vendor && a.device_id == b.device_id && a.name == b.name
    };
    let count_in = |backend: &str, like: &AdapterSummary| {
        raw.iter()
            .filter(|x| x.backend == backend && same_model(x, like))
            .count()
    };
    let same_card = |a: &AdapterSummary, b: &AdapterSummary| {
        if a.backend == b.backend {
            return false;
        }
        let (pa, pb) = (parse_pci(&a.pci_bus_id), parse_pci(&b.pci_bus_id));
        match (pa, pb) {
            (Some(x), Some(y)) => x == y,
            _ => same_model(a, b) && count_in(&a.backend, a) == 1 && count_in(&b.backend, b) == 1,
        }
    };
    let mut order: Vec<usize> = (0..raw.len()).collect();
    order.sort_by_key(|&i| (backend_rank(&raw[i].backend), i));
    let mut kept: Vec<(usize, Vec<String>)> = Vec::new();
    for i in order {
        match kept.iter_mut().find(|(k, _)| same_card(&raw[*k], &raw[i])) {
            Some((_, also)) => also.push(raw[i].backend.clone()),
            None => kept.push((i, Vec::new())),
        }
    }
    kept.sort_by_key(|(i, _)| *i);
    kept
}

fn parse_pci(id: &str) -> Option<(u32, u32, u32, u32)> {
    crate::power::parse_pci_bus_id(id)
}

/// The adapters wgpu finds, one per card: (wgpu's adapter, its summary), indexed as listed.
fn enumerate(instance: &wgpu::Instance) -> Vec<(wgpu::Adapter, AdapterSummary)> {
    let adapters = pollster::block_on(instance.enumerate_adapters(wgpu::Backends::all()));
    let raw: Vec<AdapterSummary> = adapters
        .iter()
        .map(|a| AdapterSummary::of(0, &a.get_info()))
        .collect();
    let keep = dedupe(&raw);
    let mut adapters: Vec<Option<wgpu::Adapter>> = adapters.into_iter().map(Some).collect();
    keep.into_iter()
        .enumerate()
        .map(|(index, (i, also))| {
            let mut s = raw[i].clone();
            s.index = index;
            s.also_listed_by = also;
            (adapters[i].take().expect("each kept once"), s)
        })
        .collect()
}

/// Every adapter wgpu finds on this machine, one per card, in the order `--gpu N` counts them.
/// Empty when there is none (no Vulkan/Metal/DX12 driver): that is not an error.
pub fn list_adapters() -> Vec<AdapterSummary> {
    enumerate(&instance()).into_iter().map(|(_, s)| s).collect()
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
            .map(|s| format!("{}: {} ({})", s.index, s.name, s.kind_label()))
            .collect::<Vec<_>>()
            .join("; ")
    };
    if list.is_empty() {
        return Err(Error::NoAdapter);
    }
    let any_hardware = list.iter().any(|s| !s.is_software());
    match sel {
        AdapterSelector::Best => Ok(list
            .iter()
            .min_by_key(|s| (rank(s), s.index))
            .map(|s| s.index)
            .unwrap_or(0)),
        AdapterSelector::Index(i) if *i < list.len() => {
            if list[*i].is_software() && any_hardware {
                Err(Error::SoftwareNotNamed {
                    index: *i,
                    name: list[*i].name.clone(),
                })
            } else {
                Ok(*i)
            }
        }
        AdapterSelector::Name(n) => {
            let n = n.to_lowercase();
            // Mesa's software Vulkan is "lavapipe"; its adapter calls itself "llvmpipe".
            let n = if n == "lavapipe" {
                "llvmpipe".to_owned()
            } else {
                n
            };
            list.iter()
                .find(|s| {
                    s.name.to_lowercase().contains(&n) || s.driver.to_lowercase().contains(&n)
                })
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

/// The adapters `sel` names, without opening them, each card once. What
/// [`crate::open_hashers`] opens, and what a caller asks NVML about (by
/// [`AdapterSummary::pci_bus_id`]).
pub fn resolve(sel: &GpuSelection) -> Result<Vec<AdapterSummary>, Error> {
    let list = list_adapters();
    resolve_in(&list, sel).map(|ix| ix.into_iter().map(|i| list[i].clone()).collect())
}

fn resolve_in(list: &[AdapterSummary], sel: &GpuSelection) -> Result<Vec<usize>, Error> {
    let parts = match sel {
        GpuSelection::Best => vec![AdapterSelector::Best],
        GpuSelection::List(l) => l.clone(),
        GpuSelection::All => Vec::new(),
    };
    if *sel == GpuSelection::All {
        if list.is_empty() {
            return Err(Error::NoAdapter);
        }
        let any_hardware = list.iter().any(|s| !s.is_software());
        return Ok(list
            .iter()
            .filter(|s| !(any_hardware && s.is_software()))
            .map(|s| s.index)
            .collect());
    }
    let mut out = Vec::new();
    for part in &parts {
        let i = choose(list, part)?;
        // "0,0" or a name matching twice must not open one GPU as two hashers.
        if !out.contains(&i) {
            out.push(i);
        }
    }
    Ok(out)
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
    if summary.is_software() {
        tracing::warn!(adapter = %summary.name, "{SOFTWARE_LABEL}");
    }
    Ok(GpuDevice {
        device,
        queue,
        adapter: summary,
    })
}

/// Open the adapter `sel` names.
pub fn open_device(sel: &AdapterSelector) -> Result<GpuDevice, Error> {
    let mut found = enumerate(&instance());
    let list: Vec<AdapterSummary> = found.iter().map(|(_, s)| s.clone()).collect();
    let i = choose(&list, sel)?;
    let (adapter, summary) = found.swap_remove(i);
    open_adapter(&adapter, summary)
}

/// Open every adapter `spec` names ([`resolve`]), one device per card.
pub fn open_spec(sel: &GpuSelection) -> Result<Vec<GpuDevice>, Error> {
    let found = enumerate(&instance());
    let list: Vec<AdapterSummary> = found.iter().map(|(_, s)| s.clone()).collect();
    resolve_in(&list, sel)?
        .into_iter()
        .map(|i| open_adapter(&found[i].0, found[i].1.clone()))
        .collect()
}

/// Open every hardware adapter (a software one only when there is no other), one per card.
pub fn open_all() -> Result<Vec<GpuDevice>, Error> {
    open_spec(&GpuSelection::All)
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
            device_id: 0,
            pci_bus_id: String::new(),
            also_listed_by: Vec::new(),
        }
    }

    fn card(i: usize, name: &str, backend: &str, pci: &str) -> AdapterSummary {
        AdapterSummary {
            backend: backend.into(),
            vendor: 0x10de,
            device_id: 0x2330,
            pci_bus_id: pci.into(),
            ..summary(i, name, "discrete")
        }
    }

    #[test]
    fn one_card_listed_by_two_apis_is_one_adapter() {
        // Windows: DX12 first, then Vulkan, for the same two cards (bus ids in two spellings).
        let raw = [
            card(0, "NVIDIA H100", "dx12", "0000:3b:00.0"),
            card(1, "NVIDIA H100", "dx12", "0000:5e:00.0"),
            card(2, "NVIDIA H100", "vulkan", "00000000:5E:00.0"),
            card(3, "NVIDIA H100", "vulkan", "00000000:3B:00.0"),
            summary(4, "llvmpipe", "cpu"),
        ];
        let kept = dedupe(&raw);
        // The Vulkan copies are kept; each names the API that also listed it.
        assert_eq!(
            kept,
            vec![
                (2, vec!["dx12".to_owned()]),
                (3, vec!["dx12".to_owned()]),
                (4, vec![])
            ]
        );
        // Two identical cards in one API, no bus ids: still two.
        let twins = [
            card(0, "NVIDIA H100", "vulkan", ""),
            card(1, "NVIDIA H100", "vulkan", ""),
        ];
        assert_eq!(dedupe(&twins).len(), 2);
        // No bus ids, one such card per API: one card.
        let pair = [
            card(0, "NVIDIA H100", "dx12", ""),
            card(1, "NVIDIA H100", "vulkan", ""),
        ];
        assert_eq!(dedupe(&pair), vec![(1, vec!["dx12".to_owned()])]);
    }

    #[test]
    fn a_software_adapter_is_used_only_by_name_or_when_alone() {
        let both = [
            summary(0, "llvmpipe (LLVM 15)", "cpu"),
            summary(1, "NVIDIA H100", "discrete"),
        ];
        assert_eq!(resolve_in(&both, &"".parse().unwrap()).unwrap(), vec![1]);
        assert_eq!(resolve_in(&both, &"all".parse().unwrap()).unwrap(), vec![1]);
        let e = resolve_in(&both, &"0".parse().unwrap()).unwrap_err().to_string();
        assert!(e.contains("software") && e.contains("llvmpipe"), "{e}");
        assert_eq!(resolve_in(&both, &"llvmpipe".parse().unwrap()).unwrap(), vec![0]);
        assert_eq!(resolve_in(&both, &"lavapipe".parse().unwrap()).unwrap(), vec![0]);
        let alone = [summary(0, "llvmpipe (LLVM 15)", "cpu")];
        assert_eq!(resolve_in(&alone, &"".parse().unwrap()).unwrap(), vec![0]);
        assert_eq!(resolve_in(&alone, &"0".parse().unwrap()).unwrap(), vec![0]);
        assert_eq!(resolve_in(&alone, &"all".parse().unwrap()).unwrap(), vec![0]);
        assert_eq!(resolve_in(&alone, &"0,0".parse().unwrap()).unwrap(), vec![0]);
        assert!(alone[0].to_string().contains(SOFTWARE_LABEL));
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
