//! CPU hasher: rayon over the sha256d core
