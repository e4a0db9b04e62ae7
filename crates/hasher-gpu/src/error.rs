//! The backend's errors, and how device errors reach the hasher: wgpu's callbacks (whose
//! defaults panic) record the first one; the hasher then ends.

use std::time::Duration;

use crate::AdapterSummary;

/// Errors of the GPU backend.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// wgpu found no adapter at all.
    #[error(
        "no GPU adapter found (no Vulkan, Metal or DX12 driver; on Linux without a GPU, `apt-get install mesa-vulkan-drivers libvulkan1` gives the lavapipe software adapter)"
    )]
    NoAdapter,
    /// An index named a software adapter while a hardware one exists.
    #[error(
        "adapter {index} ({name}) is a software adapter that runs on the CPU, not a GPU; name it (gpu:llvmpipe) to use it anyway"
    )]
    SoftwareNotNamed { index: usize, name: String },
    /// `--gpu` named an adapter that is not there.
    #[error("no GPU adapter matches {selector} (adapters: {available})")]
    AdapterNotFound { selector: String, available: String },
    /// The adapter refused to open a device.
    #[error("cannot open a device on {adapter}")]
    RequestDevice {
        adapter: String,
        #[source]
        source: wgpu::RequestDeviceError,
    },
    /// The shader or pipeline failed validation (a bug, or an adapter wgpu cannot drive).
    #[error("the sha256d shader cannot run on {adapter}: {message}")]
    Shader { adapter: String, message: String },
    /// Waiting for a dispatch failed (timed out: the device hung).
    #[error("waiting for a dispatch on {adapter} failed")]
    Wait {
        adapter: String,
        #[source]
        source: wgpu::PollError,
    },
    /// The result buffer could not be mapped for reading.
    #[error("cannot read results back from {adapter}")]
    Map {
        adapter: String,
        #[source]
        source: wgpu::BufferAsyncError,
    },
    /// The device stopped answering (lost, driver reset).
    #[error("the device {adapter} was lost")]
    Lost { adapter: String },
    /// The device reported an error (lost, a validation or out-of-memory error outside an error
    /// scope, an unreadable result buffer): this hasher is finished, every later call says so.
    #[error("the GPU {adapter} failed and is out of this run: {reason}")]
    Failed { adapter: String, reason: String },
}

/// How long one dispatch may take before the device counts as hung. Dispatches are sized to
/// ~100-250 ms, so 2 s is far past any healthy one. Software adapters run on CPU cores shared
/// with everything else (a loaded CI machine), so they get more.
pub(crate) fn wait_limit(adapter: &AdapterSummary) -> Duration {
    if adapter.is_software() {
        Duration::from_secs(10)
    } else {
        Duration::from_secs(2)
    }
}

pub(crate) use hashrig_hasher::error_chain;

/// The first error wgpu reported outside an error scope, or the device-lost reason: set from
/// wgpu's callbacks (which would otherwise panic), read by the hasher between dispatches.
#[derive(Clone, Debug, Default)]
pub(crate) struct Health(std::sync::Arc<std::sync::Mutex<Option<String>>>);

impl Health {
    /// Replace wgpu's default handlers (the uncaptured-error one panics) on `device`.
    pub(crate) fn watch(device: &wgpu::Device, adapter: &str) -> Self {
        let health = Self::default();
        let (h, name) = (health.clone(), adapter.to_owned());
        device.on_uncaptured_error(std::sync::Arc::new(move |e: wgpu::Error| {
            tracing::error!(adapter = %name, error = %e, "gpu error");
            h.set(format!("device error: {e}"));
        }));
        let (h, name) = (health.clone(), adapter.to_owned());
        device.set_device_lost_callback(move |reason, message| {
            tracing::error!(adapter = %name, ?reason, %message, "gpu device lost");
            h.set(format!("device lost ({reason:?}): {message}"));
        });
        health
    }

    fn set(&self, reason: String) {
        let mut g = self.0.lock().unwrap_or_else(|p| p.into_inner());
        g.get_or_insert(reason);
    }

    pub(crate) fn get(&self) -> Option<String> {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}
