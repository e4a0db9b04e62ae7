//! GPU hasher over wgpu with a WGSL sha256d kernel
