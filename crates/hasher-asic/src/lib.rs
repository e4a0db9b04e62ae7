//! Bitmain BM13xx chain driver over a serial line, as a Hasher
