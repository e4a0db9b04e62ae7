//! `HASHRIG_KERNEL` forces a kernel through `Scanner::from_env`. One test in its own binary, so
//! no other test reads the variable while it changes.

use hashrig_sha256d::{Error, KERNEL_ENV, Kernel, Scanner};

fn set(value: Option<&str>) {
    // SAFETY: this test binary has a single test and starts no threads, so nothing else reads
    // or writes the environment while it is changed.
    unsafe {
        match value {
            Some(v) => std::env::set_var(KERNEL_ENV, v),
            None => std::env::remove_var(KERNEL_ENV),
        }
    }
}

#[test]
fn hashrig_kernel_variable_forces_the_kernel_or_names_the_error() {
    assert_eq!(KERNEL_ENV, "HASHRIG_KERNEL");
    set(None);
    assert_eq!(Scanner::from_env().map(|s| s.kernel()), Ok(Kernel::best()), "unset: the best kernel");
    set(Some("  "));
    assert_eq!(Scanner::from_env().map(|s| s.kernel()), Ok(Kernel::best()), "blank: the best kernel");
    for k in Kernel::ALL {
        set(Some(k.name()));
        let got = Scanner::from_env();
        if k.is_available() {
            assert_eq!(got.map(|s| s.kernel()), Ok(k));
        } else {
            assert!(matches!(got, Err(Error::Unsupported { kernel, .. }) if kernel == k), "{k}: {got:?}");
        }
    }
    set(Some(" Scalar "));
    assert_eq!(Scanner::from_env().map(|s| s.kernel()), Ok(Kernel::Scalar), "trimmed, any case");
    set(Some("sha-nine"));
    assert_eq!(Scanner::from_env(), Err(Error::UnknownKernel("sha-nine".to_owned())));
    set(None);
}
