//! A redb storage backend that reads a file and keeps every write in memory.
//!
//! redb verifies a file's checksums only on a writable open (`Builder::set_check_integrity_on_open`
//! and `Database::check_integrity` both end with a commit). Preflight must not change the file it
//! inspects, so the writable open is given this backend: the check reads the real pages, and what
//! it writes back (the allocator state, the header) lands in memory and is dropped with it.

use std::collections::HashMap;
use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;

use parking_lot::Mutex;
use redb::StorageBackend;

const BLOCK: u64 = 4096;

#[derive(Debug)]
pub(super) struct Overlay {
    file: File,
    state: Mutex<State>,
}

#[derive(Debug)]
struct State {
    len: u64,
    /// Bytes of the file still visible: a shrink hides the rest, which then reads as zeros.
    file_len: u64,
    /// Written blocks, by index.
    blocks: HashMap<u64, Box<[u8]>>,
}

impl Overlay {
    pub(super) fn new(file: File) -> io::Result<Self> {
        let len = file.metadata()?.len();
        Ok(Self {
            file,
            state: Mutex::new(State {
                len,
                file_len: len,
                blocks: HashMap::new(),
            }),
        })
    }

    /// The block as it reads now: written, else from the file, zero past its visible end.
    fn load(&self, state: &State, index: u64) -> io::Result<Box<[u8]>> {
        if let Some(block) = state.blocks.get(&index) {
            return Ok(block.clone());
        }
        let mut block = vec![0; BLOCK as usize].into_boxed_slice();
        self.read_file(state, index * BLOCK, &mut block)?;
        Ok(block)
    }

    /// Reads `out` from the file at `offset`, zero-filling what lies past its visible end.
    fn read_file(&self, state: &State, offset: u64, out: &mut [u8]) -> io::Result<()> {
        let visible = state.file_len.saturating_sub(offset).min(out.len() as u64) as usize;
        self.file.read_exact_at(&mut out[..visible], offset)?;
        out[visible..].fill(0);
        Ok(())
    }
}

/// The block-sized pieces of `offset..offset + len`: (block index, offset in the block, range in
/// the caller's buffer).
fn pieces(offset: u64, len: usize) -> impl Iterator<Item = (u64, usize, std::ops::Range<usize>)> {
    let end = offset + len as u64;
    let mut at = offset;
    std::iter::from_fn(move || {
        if at >= end {
            return None;
        }
        let index = at / BLOCK;
        let within = (at % BLOCK) as usize;
        let take = (BLOCK - at % BLOCK).min(end - at) as usize;
        let start = (at - offset) as usize;
        at += take as u64;
        Some((index, within, start..start + take))
    })
}

fn out_of_range() -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidInput,
        "read past the end of the storage",
    )
}

impl StorageBackend for Overlay {
    fn len(&self) -> io::Result<u64> {
        Ok(self.state.lock().len)
    }

    fn read(&self, offset: u64, out: &mut [u8]) -> io::Result<()> {
        let state = self.state.lock();
        if offset + out.len() as u64 > state.len {
            return Err(out_of_range());
        }
        for (index, within, range) in pieces(offset, out.len()) {
            match state.blocks.get(&index) {
                Some(block) => {
                    out[range.clone()].copy_from_slice(&block[within..within + range.len()])
                }
                None => self.read_file(&state, index * BLOCK + within as u64, &mut out[range])?,
            }
        }
        Ok(())
    }

    fn set_len(&self, len: u64) -> io::Result<()> {
        let mut state = self.state.lock();
        if len < state.len {
            state.file_len = state.file_len.min(len);
            state.blocks.retain(|index, _| index * BLOCK < len);
            let cut = (len % BLOCK) as usize;
            if let Some(block) = state.blocks.get_mut(&(len / BLOCK)) {
                block[cut..].fill(0);
            }
        }
        state.len = len;
        Ok(())
    }

    fn sync_data(&self) -> io::Result<()> {
        Ok(())
    }

    fn write(&self, offset: u64, data: &[u8]) -> io::Result<()> {
        let mut state = self.state.lock();
        if offset + data.len() as u64 > state.len {
            return Err(out_of_range());
        }
        for (index, within, range) in pieces(offset, data.len()) {
            let mut block = self.load(&state, index)?;
            block[within..within + range.len()].copy_from_slice(&data[range]);
            state.blocks.insert(index, block);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn overlay_on(bytes: &[u8]) -> (tempfile::NamedTempFile, Overlay) {
        let file = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(file.path(), bytes).unwrap();
        let overlay = Overlay::new(File::open(file.path()).unwrap()).unwrap();
        (file, overlay)
    }

    fn read(overlay: &Overlay, offset: u64, len: usize) -> Vec<u8> {
        let mut out = vec![0; len];
        overlay.read(offset, &mut out).unwrap();
        out
    }

    #[test]
    fn writes_are_read_back_and_never_reach_the_file() {
        let original: Vec<u8> = (0..3 * BLOCK).map(|i| (i % 251) as u8).collect();
        let (file, overlay) = overlay_on(&original);
        let data = vec![7u8; 5000];
        overlay.write(BLOCK - 100, &data).unwrap();

        let mut expected = original.clone();
        expected[(BLOCK - 100) as usize..(BLOCK - 100) as usize + 5000].copy_from_slice(&data);
        assert_eq!(read(&overlay, 0, expected.len()), expected);
        assert_eq!(
            read(&overlay, BLOCK - 101, 3),
            expected[4095 - 100..4098 - 100]
        );
        assert_eq!(std::fs::read(file.path()).unwrap(), original);
    }

    #[test]
    fn a_shrink_then_grow_reads_zeros_where_data_was() {
        let original = vec![9u8; 2 * BLOCK as usize];
        let (_file, overlay) = overlay_on(&original);
        overlay.write(BLOCK, &[1, 2, 3, 4]).unwrap();
        overlay.set_len(BLOCK + 2).unwrap();
        overlay.set_len(3 * BLOCK).unwrap();

        assert_eq!(overlay.len().unwrap(), 3 * BLOCK);
        assert_eq!(read(&overlay, BLOCK - 1, 5), vec![9, 1, 2, 0, 0]);
        assert_eq!(read(&overlay, 2 * BLOCK, 4), vec![0; 4]);
        let mut past = [0u8; 1];
        assert!(overlay.read(3 * BLOCK, &mut past).is_err());
    }
}
