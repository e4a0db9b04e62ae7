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
    }
    let h = GpuHasher::with_options(dev, &opts)?;
    let t = h.tuning();
    for (wg, npi, rate) in &t.tried {
        println!(
            "workgroup {wg:4} x {npi:5} nonces/invocation: {:10.1} MH/s",
            rate / 1e6
        );
    }
    println!(
        "chose workgroup {} x {} nonces/invocation: {:.1} MH/s",
        t.workgroup,
        t.nonces_per_invocation,
        t.rate / 1e6
    );
    Ok(())
}
