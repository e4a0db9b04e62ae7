use hashrig_sha256d::*;
use sha2::{Digest, Sha256};

const GENESIS: &str = "0100000000000000000000000000000000000000000000000000000000000000000000003ba3edfd7a7b12b27ac72c3e67768f617fc81bc3888a51323a9fb8aa4b1e5e4a29ab5f49ffff001d1dac2b7c";

#[test]
fn genesis_digest_matches_sha2() {
    let h: [u8; 80] = hex::decode(GENESIS).unwrap().try_into().unwrap();
    let want: [u8; 32] = Sha256::digest(Sha256::digest(h)).into();
    assert_eq!(sha256d_header(&h), want);
    let mut disp = want;
    disp.reverse();
    assert_eq!(hex::encode(disp), "000000000019d6689c085ae165831e934ff763ae46a2a6c172b3f1b60a8ce26f");
}

#[test]
fn genesis_scan_finds_nonce() {
    let h: [u8; 80] = hex::decode(GENESIS).unwrap().try_into().unwrap();
    let job = ScanJob::new(&h);
    let mut t = [0u8; 32];
    t[26] = 0xff; t[27] = 0xff; // 0x00000000ffff << 208
    let target = Target::from_le_bytes(t);
    for k in Kernel::available() {
        let mut found = Vec::new();
        let n = Scanner::new(k).unwrap().scan(&job, NonceRange::new(0x7c2bac1d - 1000, 2000).unwrap(), &target, &mut found);
        assert_eq!(n, 2000);
        assert_eq!(found, vec![0x7c2bac1d], "{k}");
    }
}
