//! NVIDIA GPUs' total-energy counter through NVML (`nvmlDeviceGetTotalEnergyConsumption`,
//! millijoules since the driver loaded). The library is loaded at run time: where it is missing,
//! [`NvmlGpu::open`] returns `Ok(None)`.

use nvml_wrapper::Nvml;

use crate::{Error, PowerSource, Reading};

/// One GPU's energy counter.
pub struct NvmlGpu {
    nvml: Nvml,
    index: u32,
    name: String,
}

impl std::fmt::Debug for NvmlGpu {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NvmlGpu").field("index", &self.index).field("name", &self.name).finish()
    }
}

impl NvmlGpu {
    /// GPU `index`, or `None` when NVML (or that GPU) is not there.
    pub fn open(index: u32) -> Result<Option<Self>, Error> {
        let Ok(nvml) = Nvml::init() else { return Ok(None) };
        let name = match nvml.device_by_index(index) {
            Ok(d) => d.name().unwrap_or_else(|_| format!("GPU {index}")),
            Err(_) => return Ok(None),
        };
        let mut gpu = Self { nvml, index, name };
        // Some GPUs lack the counter: then this source is not available.
        if gpu.read().is_err() {
            return Ok(None);
        }
        Ok(Some(gpu))
    }
}

impl PowerSource for NvmlGpu {
    fn describe(&self) -> String {
        format!("nvml: {} total energy (GPU board only)", self.name)
    }

    fn read(&mut self) -> Result<Reading, Error> {
        let dev = self.nvml.device_by_index(self.index).map_err(Error::Nvml)?;
        let mj = dev.total_energy_consumption().map_err(Error::Nvml)?;
        Ok(Reading::Energy { joules: mj as f64 * 1e-3 })
    }
}
