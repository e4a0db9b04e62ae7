//! Bitmain BM13xx wire protocol (no_std core): frames, CRCs, registers; a chip-chain emulator
