//! The public API around the kernels: choosing a kernel, naming it, and nonce ranges.

use hashrig_sha256d::{Error, Kernel, NONCE_SPACE, NonceRange, Scanner};

#[test]
fn forcing_a_kernel_succeeds_exactly_when_the_cpu_has_it() {
    for k in Kernel::ALL {
        match Scanner::new(k) {
            Ok(s) => {
                assert!(k.is_available(), "{k} was accepted without the CPU feature");
                assert_eq!(s.kernel(), k);
            }
            Err(Error::Unsupported { kernel, available, .. }) => {
                assert!(!k.is_available(), "{k} was refused although available");
                assert_eq!(kernel, k);
                assert!(available.contains("scalar"), "the error lists what is available: {available}");
            }
            Err(other) => panic!("unexpected error forcing {k}: {other}"),
        }
    }
    assert!(Scanner::new(Kernel::Scalar).is_ok(), "scalar runs everywhere");
}

#[test]
fn the_best_kernel_is_available_and_first_of_the_available_ones_or_the_race_winner() {
    let best = Scanner::best().kernel();
    assert!(best.is_available());
    let first = Kernel::available()[0];
    if best != first {
        assert_eq!(best, Kernel::Avx512, "only avx512 may beat the first available kernel");
        assert!(first.name().starts_with("sha-ni"), "and only when that one is a SHA-NI kernel: {first}");
    }
    assert_eq!(Kernel::race(Kernel::Scalar, Kernel::Scalar), Kernel::Scalar);
    assert_eq!(Kernel::best(), best);
}

#[test]
fn kernel_names_parse_back_and_unknown_names_are_errors() {
    for k in Kernel::ALL {
        assert_eq!(k.name().parse::<Kernel>(), Ok(k));
        assert_eq!(k.to_string().to_uppercase().parse::<Kernel>(), Ok(k), "case-insensitive");
    }
    assert_eq!("sha_ni".parse::<Kernel>(), Ok(Kernel::ShaNi));
    assert_eq!("shani".parse::<Kernel>(), Ok(Kernel::ShaNi));
    assert_eq!("portable".parse::<Kernel>(), Ok(Kernel::Scalar));
    for bad in ["", "avx1024", "sha-ni2", "gpu"] {
        assert_eq!(bad.parse::<Kernel>(), Err(Error::UnknownKernel(bad.to_owned())));
    }
    let msg = "neon".parse::<Kernel>().unwrap_err().to_string();
    assert!(msg.contains("neon") && msg.contains("sha-ni"), "{msg}");
}

#[test]
fn nonce_ranges_may_reach_the_last_nonce_but_not_pass_it() {
    assert_eq!(NonceRange::new(0, NONCE_SPACE).map(|r| r.end()), Ok(NONCE_SPACE));
    assert_eq!(NonceRange::new(u32::MAX, 1).map(|r| r.count()), Ok(1));
    assert_eq!(NonceRange::new(u32::MAX, 0).map(|r| r.is_empty()), Ok(true));
    assert_eq!(NonceRange::new(u32::MAX, 2), Err(Error::RangeOverflow { start: u32::MAX, count: 2 }));
    assert_eq!(NonceRange::new(1, NONCE_SPACE), Err(Error::RangeOverflow { start: 1, count: NONCE_SPACE }));
    assert!(NonceRange::new(0, u64::MAX).is_err());
    let msg = NonceRange::new(10, NONCE_SPACE).unwrap_err().to_string();
    assert!(msg.contains("10") && msg.contains("4294967295"), "{msg}");
}

#[test]
fn take_front_splits_a_range_without_losing_nonces() {
    let mut r = NonceRange::new(u32::MAX - 9, 10).expect("valid");
    let a = r.take_front(4);
    assert_eq!((a.start(), a.count()), (u32::MAX - 9, 4));
    assert_eq!((r.start(), r.count()), (u32::MAX - 5, 6));
    let b = r.take_front(100);
    assert_eq!((b.start(), b.count(), b.end()), (u32::MAX - 5, 6, NONCE_SPACE));
    assert!(r.is_empty());
    assert!(r.take_front(1).is_empty());
}

#[test]
fn scanning_an_empty_range_does_no_hashes_and_finds_nothing() {
    let job = hashrig_sha256d::ScanJob::new(&[0u8; 80]);
    for k in Kernel::available() {
        let mut found = vec![];
        let n = Scanner::new(k)
            .expect("available")
            .scan(&job, NonceRange::new(5, 0).expect("empty"), &hashrig_sha256d::Target::MAX, &mut found);
        assert_eq!((n, found.len()), (0, 0), "kernel {k}");
    }
}

#[test]
fn found_nonces_are_appended_after_what_the_vector_held() {
    let job = hashrig_sha256d::ScanJob::new(&[7u8; 80]);
    for k in Kernel::available() {
        let mut found = vec![42];
        Scanner::new(k)
            .expect("available")
            .scan(&job, NonceRange::new(100, 3).expect("valid"), &hashrig_sha256d::Target::MAX, &mut found);
        assert_eq!(found, vec![42, 100, 101, 102], "kernel {k}");
    }
}

#[test]
fn leading_zero_bits_agree_with_the_target_comparison() {
    use hashrig_sha256d::{Target, leading_zero_bits};
    // The target with k leading zero bits: 2^(256-k) - 1, little-endian bytes.
    let target_of = |k: u32| {
        let mut le = [0xffu8; 32];
        for bit in (256 - k)..256 {
            le[(bit / 8) as usize] &= !(1 << (bit % 8));
        }
        Target::from_le_bytes(le)
    };
    assert_eq!(leading_zero_bits(&[0; 32]), 256);
    assert_eq!(leading_zero_bits(&[0xff; 32]), 0);
    let mut d = [0u8; 32];
    d[31] = 1;
    assert_eq!(leading_zero_bits(&d), 7);
    d[31] = 0;
    d[28] = 0x10;
    assert_eq!(leading_zero_bits(&d), 27);
    // Against the comparison itself, for digests of every bit length.
    for k in 0..256u32 {
        let mut le = [0u8; 32];
        let top = 255 - k;
        le[(top / 8) as usize] = 1 << (top % 8);
        if top >= 8 {
            le[0] |= 0x5a; // lower bits set too: only the top one counts
        }
        assert_eq!(leading_zero_bits(&le), k, "digest with its top bit at {top}");
        assert!(target_of(k).is_met_by(&le), "k={k}");
        assert!(!target_of(k + 1).is_met_by(&le), "k={k}");
    }
}

#[test]
fn a_nonce_range_contains_its_nonces_and_no_others() {
    use hashrig_sha256d::NonceRange;
    let r = NonceRange::new(10, 5).unwrap();
    assert!(!r.contains(9));
    assert!(r.contains(10) && r.contains(14));
    assert!(!r.contains(15));
    // The range that ends at 2^32 contains u32::MAX; the empty one contains nothing.
    let top = NonceRange::new(u32::MAX, 1).unwrap();
    assert!(top.contains(u32::MAX) && !top.contains(0));
    assert!(!NonceRange::new(7, 0).unwrap().contains(7));
}
