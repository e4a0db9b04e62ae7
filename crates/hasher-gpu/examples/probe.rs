//! Lists the adapters wgpu sees, opens one (`probe [N|name] [grid]`), tunes it and prints what the
//! tuner tried: a quick look at a new machine without the whole CLI.
//! `cargo run --release -p hashrig-hasher-gpu --example probe -- 0`

use hashrig_hasher_gpu::{AdapterSelector, GpuHasher, Options, list_adapters, open_device};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    for a in list_adapters() {
        println!("{a}");
    }
    let sel: AdapterSelector = std::env::args().nth(1).unwrap_or_default().parse()?;
    // `probe N grid`: the hardware search grid even on a software adapter.
    let dev = open_device(&sel)?;
    let mut opts = Options::for_adapter(&dev.adapter);
    if std::env::args().nth(2).as_deref() == Some("grid") {
        opts.workgroups = vec![32, 64, 128, 256];
        opts.nonces_per_invocation = vec![1, 4, 16, 64, 256];
        opts.tune_samples = 3;
    }
    let h = GpuHasher::with_options(dev, &opts)?;
    let t = h.tuning();
    for x in &t.tried {
        println!(
            "workgroup {:4} x {:5} nonces/invocation: {:10.1} MH/s (median of {} samples)",
            x.workgroup,
            x.nonces_per_invocation,
            x.rate / 1e6,
            x.samples.len()
        );
    }
    for (groups, secs) in &t.wave_curve {
        println!("wave probe: {groups:6} workgroups in {:8.3} ms", secs * 1e3);
    }
    println!("wave: {} workgroups", t.wave);
    println!(
        "chose workgroup {} x {} nonces/invocation: {:.1} MH/s",
        t.workgroup,
        t.nonces_per_invocation,
        t.rate / 1e6
    );
    Ok(())
}
