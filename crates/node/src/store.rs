//! Found blocks on disk: written and fsynced before they are submitted, moved aside once the
//! node has answered. On start, whatever is still pending is submitted first.
//!
//! Layout under the store directory:
//! - `pending/<hash>.hex`: found, not yet answered by a node (a crash leaves them here);
//! - `submitted/<hash>.hex`: the node took it. Accepted blocks have nothing beside them; a
//!   block the node already had gets `submitted/<hash>.note` starting `duplicate`, and one
//!   whose validity the node left undecided (BIP 22 `inconclusive`, e.g. it went to a side
//!   branch) gets a note starting `inconclusive`: it is not a rejection, and may still end in
//!   the chain;
//! - `rejected/<hash>.hex` + `rejected/<hash>.reason`: the node's BIP 22 reject reason.
//!
//! A file in `pending/` that cannot be read or is not a whole block in hex is *damaged*: it is
//! reported by [`BlockStore::pending`] and left exactly where it is (never deleted or moved),
//! so a person can look at it; every other pending block is still returned.

use std::fs::{self, File};
use std::io::Write;
use std::path::{Path, PathBuf};

use bitcoin::block::Header;
use bitcoin::consensus::deserialize;
use bitcoin::{Block, BlockHash};

use crate::Error;
use crate::solo::BlockAnswer;

/// A block waiting in (or taken from) the store.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredBlock {
    pub hash: BlockHash,
    pub path: PathBuf,
    pub bytes: Vec<u8>,
}

/// What [`BlockStore::pending`] found in `pending/`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PendingScan {
    /// Whole blocks, oldest first.
    pub blocks: Vec<StoredBlock>,
    /// Files that could not be used, with why; left in place.
    pub damaged: Vec<(PathBuf, String)>,
}

/// The directory of found blocks.
#[derive(Clone, Debug)]
pub struct BlockStore {
    dir: PathBuf,
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> Error + '_ {
    move |source| Error::Store { path: path.to_owned(), source }
}

fn sync_dir(dir: &Path) -> Result<(), Error> {
    File::open(dir).and_then(|d| d.sync_all()).map_err(io_err(dir))
}

/// Write `bytes` to `path` durably: a temporary file beside it, fsync, rename, fsync the folder.
fn write_durably(path: &Path, bytes: &[u8]) -> Result<(), Error> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let tmp = dir.join(format!(".{name}.tmp"));
    {
        let mut f = File::create(&tmp).map_err(io_err(&tmp))?;
        f.write_all(bytes).map_err(io_err(&tmp))?;
        f.sync_all().map_err(io_err(&tmp))?;
    }
    fs::rename(&tmp, path).map_err(io_err(path))?;
    sync_dir(dir)
}

/// Read one pending file: the block, or why it is unusable.
fn read_block(path: &Path) -> Result<(BlockHash, Vec<u8>), String> {
    let text = fs::read_to_string(path).map_err(|e| format!("cannot read it: {e}"))?;
    let bytes = hex::decode(text.trim()).map_err(|e| format!("not hex: {e}"))?;
    let header: Header = bytes.get(..80).and_then(|h| deserialize(h).ok()).ok_or_else(|| format!("{} bytes, shorter than a header", bytes.len()))?;
    // The whole block must decode: a file cut short by a crash or a full disk is not one.
    deserialize::<Block>(&bytes).map_err(|e| format!("not a whole block ({} bytes): {e}", bytes.len()))?;
    Ok((header.block_hash(), bytes))
}

impl BlockStore {
    pub fn open(dir: impl Into<PathBuf>) -> Result<Self, Error> {
        let dir = dir.into();
        for sub in ["pending", "submitted", "rejected"] {
            let p = dir.join(sub);
            fs::create_dir_all(&p).map_err(io_err(&p))?;
        }
        Ok(BlockStore { dir })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Write a block durably (temp file, fsync, rename, fsync the directory).
    pub fn save(&self, block: &[u8]) -> Result<StoredBlock, Error> {
        let header: Header = block
            .get(..80)
            .and_then(|h| deserialize(h).ok())
            .ok_or_else(|| Error::Store { path: self.dir.clone(), source: std::io::Error::other("block shorter than a header") })?;
        let hash = header.block_hash();
        let path = self.dir.join("pending").join(format!("{hash}.hex"));
        write_durably(&path, hex::encode(block).as_bytes())?;
        Ok(StoredBlock { hash, path, bytes: block.to_vec() })
    }

    /// Blocks written but not yet answered by a node, oldest first, and the files in
    /// `pending/` that are damaged (reported, left in place). Fails only when `pending/`
    /// itself cannot be listed.
    pub fn pending(&self) -> Result<PendingScan, Error> {
        let pending = self.dir.join("pending");
        let mut blocks = Vec::new();
        let mut damaged = Vec::new();
        for entry in fs::read_dir(&pending).map_err(io_err(&pending))? {
            let entry = match entry {
                Ok(e) => e,
                Err(e) => {
                    damaged.push((pending.clone(), format!("cannot list an entry: {e}")));
                    continue;
                }
            };
            let path = entry.path();
            if path.extension().is_none_or(|e| e != "hex") {
                continue;
            }
            match read_block(&path) {
                Ok((hash, bytes)) => {
                    let modified = entry.metadata().and_then(|m| m.modified()).ok();
                    blocks.push((modified, StoredBlock { hash, path, bytes }));
                }
                Err(why) => damaged.push((path, why)),
            }
        }
        blocks.sort_by(|a, b| a.0.cmp(&b.0).then_with(|| a.1.path.cmp(&b.1.path)));
        damaged.sort();
        Ok(PendingScan { blocks: blocks.into_iter().map(|(_, b)| b).collect(), damaged })
    }

    /// The node answered: move the block out of `pending/` (see the module doc for where).
    pub fn finish(&self, block: &StoredBlock, answer: &BlockAnswer) -> Result<PathBuf, Error> {
        let (sub, side) = match answer {
            BlockAnswer::Accepted => ("submitted", None),
            BlockAnswer::Duplicate => ("submitted", Some(("note", "duplicate: the node already had this block\n".to_owned()))),
            BlockAnswer::Inconclusive => (
                "submitted",
                Some(("note", "inconclusive: the node took the block but did not decide its validity (BIP 22), e.g. on a side branch\n".to_owned())),
            ),
            BlockAnswer::Rejected(reason) => ("rejected", Some(("reason", format!("{reason}\n")))),
        };
        let dir = self.dir.join(sub);
        let dest = dir.join(format!("{}.hex", block.hash));
        if let Some((ext, text)) = side {
            write_durably(&dir.join(format!("{}.{ext}", block.hash)), text.as_bytes())?;
        }
        fs::rename(&block.path, &dest).map_err(io_err(&dest))?;
        sync_dir(&dir)?;
        if let Some(from) = block.path.parent() {
            sync_dir(from)?;
        }
        Ok(dest)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The genesis block of regtest: a whole block the store can hold.
    fn block() -> Vec<u8> {
        bitcoin::consensus::serialize(&bitcoin::blockdata::constants::genesis_block(bitcoin::Network::Regtest))
    }

    #[test]
    fn damaged_files_are_reported_and_left_while_good_blocks_are_returned() {
        let dir = tempfile::tempdir().unwrap();
        let store = BlockStore::open(dir.path()).unwrap();
        let good = store.save(&block()).unwrap();
        let pending = dir.path().join("pending");
        let hex = hex::encode(block());
        fs::write(pending.join("nothex.hex"), "zz").unwrap();
        fs::write(pending.join("short.hex"), &hex[..100]).unwrap();
        fs::write(pending.join("cut.hex"), &hex[..hex.len() - 2]).unwrap();
        fs::write(pending.join("README"), "not a block file, not looked at").unwrap();
        let scan = store.pending().unwrap();
        assert_eq!(scan.blocks, vec![good]);
        let names: Vec<_> = scan.damaged.iter().map(|(p, _)| p.file_name().unwrap().to_string_lossy().into_owned()).collect();
        assert_eq!(names, ["cut.hex", "nothex.hex", "short.hex"], "{:?}", scan.damaged);
        assert!(scan.damaged[0].1.contains("not a whole block"), "{:?}", scan.damaged);
        for n in names {
            assert!(pending.join(n).exists());
        }
    }

    #[test]
    fn each_answer_lands_in_its_folder_with_its_note() {
        let dir = tempfile::tempdir().unwrap();
        let store = BlockStore::open(dir.path()).unwrap();
        let answers = [
            (BlockAnswer::Accepted, "submitted", None),
            (BlockAnswer::Duplicate, "submitted", Some(("note", "duplicate"))),
            (BlockAnswer::Inconclusive, "submitted", Some(("note", "inconclusive"))),
            (BlockAnswer::Rejected("bad-txnmrklroot".into()), "rejected", Some(("reason", "bad-txnmrklroot"))),
        ];
        for (answer, sub, side) in answers {
            let b = store.save(&block()).unwrap();
            let dest = store.finish(&b, &answer).unwrap();
            assert_eq!(dest, dir.path().join(sub).join(format!("{}.hex", b.hash)));
            assert!(dest.exists() && !b.path.exists(), "{answer:?}");
            let side_file = |ext: &str| dir.path().join(sub).join(format!("{}.{ext}", b.hash));
            if let Some((ext, starts)) = side {
                let text = fs::read_to_string(side_file(ext)).unwrap();
                assert!(text.starts_with(starts), "{answer:?}: {text}");
                fs::remove_file(side_file(ext)).unwrap();
            } else {
                assert!(!side_file("note").exists());
            }
            fs::remove_file(dest).unwrap();
        }
    }
}
