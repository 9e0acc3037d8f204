//! The shared libraries a Linux binary needs, read from its ELF headers, so the image
//! can carry them (a base without them runs no dynamically linked binary).
//!
//! Reads 64-bit little-endian ELF files: the program interpreter (`PT_INTERP`, the
//! dynamic loader such as `/lib64/ld-linux-x86-64.so.2`) and the `DT_NEEDED` entries
//! of the dynamic section, then finds each library in the usual folders and follows
//! its own needs. A static binary needs nothing.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

const PT_LOAD: u32 = 1;
const PT_DYNAMIC: u32 = 2;
const PT_INTERP: u32 = 3;
const DT_NEEDED: u64 = 1;
const DT_STRTAB: u64 = 5;

/// Folders searched for a needed library, in order.
const LIBRARY_DIRS: &[&str] = &[
    "/lib/x86_64-linux-gnu",
    "/usr/lib/x86_64-linux-gnu",
    "/lib/aarch64-linux-gnu",
    "/usr/lib/aarch64-linux-gnu",
    "/lib64",
    "/usr/lib64",
    "/lib",
    "/usr/lib",
];

/// What one ELF file asks of the dynamic loader.
#[derive(Debug, Default, PartialEq, Eq)]
struct Needs {
    interpreter: Option<String>,
    needed: Vec<String>,
}

fn u16_at(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_le_bytes(b.get(at..at + 2)?.try_into().ok()?))
}
fn u32_at(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes(b.get(at..at + 4)?.try_into().ok()?))
}
fn u64_at(b: &[u8], at: usize) -> Option<u64> {
    Some(u64::from_le_bytes(b.get(at..at + 8)?.try_into().ok()?))
}

fn c_str(b: &[u8], at: usize) -> Option<String> {
    let rest = b.get(at..)?;
    let end = rest.iter().position(|&c| c == 0)?;
    String::from_utf8(rest[..end].to_vec()).ok()
}

/// Reads an ELF image's needs; `None` when it is not a 64-bit little-endian ELF file.
fn needs(bytes: &[u8]) -> Option<Needs> {
    if bytes.get(..4)? != b"\x7fELF" || bytes[4] != 2 || bytes[5] != 1 {
        return None;
    }
    let phoff = u64_at(bytes, 0x20)? as usize;
    let phentsize = u16_at(bytes, 0x36)? as usize;
    let phnum = u16_at(bytes, 0x38)? as usize;
    let mut loads = Vec::new();
    let mut dynamic = None;
    let mut out = Needs::default();
    for i in 0..phnum {
        let ph = phoff + i * phentsize;
        let kind = u32_at(bytes, ph)?;
        let offset = u64_at(bytes, ph + 8)?;
        let vaddr = u64_at(bytes, ph + 16)?;
        let filesz = u64_at(bytes, ph + 32)?;
        match kind {
            PT_LOAD => loads.push((vaddr, offset, filesz)),
            PT_DYNAMIC => dynamic = Some((offset, filesz)),
            PT_INTERP => out.interpreter = c_str(bytes, offset as usize),
            _ => {}
        }
    }
    let Some((dyn_off, dyn_size)) = dynamic else {
        return Some(out);
    };
    let mut strtab = None;
    let mut needed = Vec::new();
    let mut at = dyn_off as usize;
    let end = (dyn_off + dyn_size) as usize;
    while at + 16 <= end {
        let tag = u64_at(bytes, at)?;
        let val = u64_at(bytes, at + 8)?;
        match tag {
            0 => break,
            DT_NEEDED => needed.push(val),
            DT_STRTAB => strtab = Some(val),
            _ => {}
        }
        at += 16;
    }
    let strtab = strtab?;
    let (vaddr, offset, _) = loads
        .iter()
        .find(|(v, _, size)| *v <= strtab && strtab < v + size)?;
    let table = (strtab - vaddr + offset) as usize;
    for name in needed {
        out.needed.push(c_str(bytes, table + name as usize)?);
    }
    Some(out)
}

/// Why the libraries of a binary could not be found.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ElfError {
    /// A file could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// A needed library is in none of the searched folders.
    #[error("{binary} needs {library}, which is in none of {}", LIBRARY_DIRS.join(", "))]
    Missing {
        /// The file that needs it.
        binary: PathBuf,
        /// The library's name.
        library: String,
    },
}

/// Every file the dynamic loader needs to start `binary`: the loader itself and each
/// library, followed transitively, as absolute paths on this machine (sorted). Empty
/// for a static binary or a file that is not ELF.
pub fn runtime_files(binary: &Path) -> Result<BTreeSet<PathBuf>, ElfError> {
    let read = |path: &Path| {
        std::fs::read(path).map_err(|source| ElfError::Read {
            path: path.to_path_buf(),
            source,
        })
    };
    let mut files = BTreeSet::new();
    let mut todo = vec![binary.to_path_buf()];
    let mut seen_names = BTreeSet::new();
    while let Some(path) = todo.pop() {
        let bytes = read(&path)?;
        let Some(needs) = needs(&bytes) else {
            continue;
        };
        if let Some(interp) = needs.interpreter {
            let interp = PathBuf::from(interp);
            if files.insert(interp.clone()) {
                read(&interp)?;
            }
        }
        for library in needs.needed {
            if !seen_names.insert(library.clone()) {
                continue;
            }
            let found = LIBRARY_DIRS
                .iter()
                .map(|dir| Path::new(dir).join(&library))
                .find(|p| p.is_file())
                .ok_or_else(|| ElfError::Missing {
                    binary: path.clone(),
                    library: library.clone(),
                })?;
            files.insert(found.clone());
            todo.push(found);
        }
    }
    Ok(files)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_dynamic_binary_needs_its_loader_and_libc() {
        // The test binary itself is dynamically linked against glibc.
        let exe = std::env::current_exe().unwrap();
        let files = runtime_files(&exe).unwrap();
        let names: Vec<String> = files
            .iter()
            .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
            .collect();
        assert!(names.iter().any(|n| n.starts_with("ld-linux")), "{names:?}");
        assert!(names.iter().any(|n| n == "libc.so.6"), "{names:?}");
    }

    #[test]
    fn other_files_need_nothing() {
        assert_eq!(needs(b"#!/bin/sh\necho hi\n"), None);
        let dir = tempfile::tempdir().unwrap();
        let script = dir.path().join("s.sh");
        std::fs::write(&script, "#!/bin/sh\n").unwrap();
        assert!(runtime_files(&script).unwrap().is_empty());
    }
}
