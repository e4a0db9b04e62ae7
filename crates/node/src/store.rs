//! Found blocks on disk: written and fsynced before they are submitted, moved aside once the
//! node has answered. On start, whatever is still pending is submitted first.
//!
//! Layout under the store directory: `pending/<hash>.hex`, `submitted/<hash>.hex`,
//! `rejected/<hash>.hex` (+ `<hash>.reason`).

use std::fs::{self, File};
use std::io::Write;
use std::path::{Path, PathBuf};

use bitcoin::BlockHash;
use bitcoin::block::Header;
use bitcoin::consensus::deserialize;

use crate::Error;

/// A block waiting in (or taken from) the store.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredBlock {
    pub hash: BlockHash,
    pub path: PathBuf,
    pub bytes: Vec<u8>,
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
        let pending = self.dir.join("pending");
        let path = pending.join(format!("{hash}.hex"));
        let tmp = pending.join(format!(".{hash}.tmp"));
        {
            let mut f = File::create(&tmp).map_err(io_err(&tmp))?;
            f.write_all(hex::encode(block).as_bytes()).map_err(io_err(&tmp))?;
            f.sync_all().map_err(io_err(&tmp))?;
        }
        fs::rename(&tmp, &path).map_err(io_err(&path))?;
        sync_dir(&pending)?;
        Ok(StoredBlock { hash, path, bytes: block.to_vec() })
    }

    /// Blocks written but not yet answered by a node, oldest first.
    pub fn pending(&self) -> Result<Vec<StoredBlock>, Error> {
        let pending = self.dir.join("pending");
        let mut out = Vec::new();
        for entry in fs::read_dir(&pending).map_err(io_err(&pending))? {
            let entry = entry.map_err(io_err(&pending))?;
            let path = entry.path();
            if path.extension().is_none_or(|e| e != "hex") {
                continue;
            }
            let text = fs::read_to_string(&path).map_err(io_err(&path))?;
            let bytes = hex::decode(text.trim()).map_err(|_| Error::Store {
                path: path.clone(),
                source: std::io::Error::other("pending block file is not hex"),
            })?;
            let header: Header = bytes.get(..80).and_then(|h| deserialize(h).ok()).ok_or_else(|| Error::Store {
                path: path.clone(),
                source: std::io::Error::other("pending block file is shorter than a header"),
            })?;
            let modified = entry.metadata().and_then(|m| m.modified()).ok();
            out.push((modified, StoredBlock { hash: header.block_hash(), path, bytes }));
        }
        out.sort_by(|a, b| a.0.cmp(&b.0).then_with(|| a.1.path.cmp(&b.1.path)));
        Ok(out.into_iter().map(|(_, b)| b).collect())
    }

    /// The node answered: move the block out of `pending/`.
    pub fn finish(&self, block: &StoredBlock, rejected: Option<&str>) -> Result<PathBuf, Error> {
        let sub = if rejected.is_some() { "rejected" } else { "submitted" };
        let dir = self.dir.join(sub);
        let dest = dir.join(format!("{}.hex", block.hash));
        if let Some(reason) = rejected {
            let rp = dir.join(format!("{}.reason", block.hash));
            fs::write(&rp, reason).map_err(io_err(&rp))?;
        }
        fs::rename(&block.path, &dest).map_err(io_err(&dest))?;
        sync_dir(&dir)?;
        Ok(dest)
    }
}
