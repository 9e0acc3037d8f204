//! A layer: a tar of files, folders and links that is the same bytes for the same
//! content, whatever the machine, the clock or the order the files were added in.
//!
//! Entries are sorted by path, every parent folder is written before what it holds,
//! times are one fixed instant, owners are numeric ids without names, and modes are
//! the ones given, not the ones on disk.

use std::collections::BTreeMap;
use std::io;

use sha2::{Digest, Sha256};

/// One thing in a layer.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Node {
    Dir {
        mode: u32,
        owner: u32,
    },
    File {
        data: Vec<u8>,
        mode: u32,
        owner: u32,
    },
    Symlink {
        target: String,
    },
}

/// A layer being put together; paths are absolute inside the image (`/etc/passwd`).
#[derive(Debug, Default, Clone)]
pub struct Layer {
    nodes: BTreeMap<String, Node>,
}

/// A finished layer: its tar bytes and their SHA-256 (`sha256:...`), which is both
/// its digest and its diff id, since layers are stored uncompressed.
#[derive(Debug, Clone)]
pub struct LayerBlob {
    /// The tar.
    pub tar: Vec<u8>,
    /// `sha256:<hex>` of the tar.
    pub digest: String,
}

fn relative(path: &str) -> String {
    path.trim_start_matches('/')
        .trim_end_matches('/')
        .to_string()
}

impl Layer {
    /// An empty layer.
    pub fn new() -> Self {
        Self::default()
    }

    fn parents(&mut self, path: &str) {
        let mut at = String::new();
        let parts: Vec<&str> = path.split('/').collect();
        for part in &parts[..parts.len().saturating_sub(1)] {
            if !at.is_empty() {
                at.push('/');
            }
            at.push_str(part);
            self.nodes.entry(at.clone()).or_insert(Node::Dir {
                mode: 0o755,
                owner: 0,
            });
        }
    }

    /// A folder with `mode`, owned by user and group `owner`.
    pub fn dir(&mut self, path: &str, mode: u32, owner: u32) {
        let path = relative(path);
        self.parents(&path);
        self.nodes.insert(path, Node::Dir { mode, owner });
    }

    /// A file with `data` and `mode`, owned by root.
    pub fn file(&mut self, path: &str, data: Vec<u8>, mode: u32) {
        let path = relative(path);
        self.parents(&path);
        self.nodes.insert(
            path,
            Node::File {
                data,
                mode,
                owner: 0,
            },
        );
    }

    /// A symbolic link to `target`.
    pub fn symlink(&mut self, path: &str, target: &str) {
        let path = relative(path);
        self.parents(&path);
        self.nodes.insert(
            path,
            Node::Symlink {
                target: target.to_string(),
            },
        );
    }

    /// The tar, entries sorted, with every time set to `mtime` (seconds since 1970).
    pub fn finish(&self, mtime: u64) -> io::Result<LayerBlob> {
        let mut builder = tar::Builder::new(Vec::new());
        for (path, node) in &self.nodes {
            let mut header = tar::Header::new_gnu();
            header.set_mtime(mtime);
            header.set_uid(0);
            header.set_gid(0);
            match node {
                Node::Dir { mode, owner } => {
                    header.set_entry_type(tar::EntryType::Directory);
                    header.set_mode(*mode);
                    header.set_uid(u64::from(*owner));
                    header.set_gid(u64::from(*owner));
                    header.set_size(0);
                    builder.append_data(&mut header, format!("{path}/"), io::empty())?;
                }
                Node::File { data, mode, owner } => {
                    header.set_entry_type(tar::EntryType::Regular);
                    header.set_mode(*mode);
                    header.set_uid(u64::from(*owner));
                    header.set_gid(u64::from(*owner));
                    header.set_size(data.len() as u64);
                    builder.append_data(&mut header, path, data.as_slice())?;
                }
                Node::Symlink { target } => {
                    header.set_entry_type(tar::EntryType::Symlink);
                    header.set_mode(0o777);
                    header.set_size(0);
                    builder.append_link(&mut header, path, target)?;
                }
            }
        }
        let tar = builder.into_inner()?;
        let digest = sha256(&tar);
        Ok(LayerBlob { tar, digest })
    }
}

/// `sha256:<hex>` of `bytes`.
pub fn sha256(bytes: &[u8]) -> String {
    let digest = Sha256::digest(bytes);
    let mut out = String::with_capacity(71);
    out.push_str("sha256:");
    for b in digest {
        out.push_str(&format!("{b:02x}"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_content_in_any_order_is_the_same_bytes() {
        let mut a = Layer::new();
        a.file("/etc/passwd", b"root".to_vec(), 0o644);
        a.dir("/home/app", 0o755, 65532);
        a.symlink("/etc/localtime", "/usr/share/zoneinfo/UTC");
        let mut b = Layer::new();
        b.symlink("/etc/localtime", "/usr/share/zoneinfo/UTC");
        b.dir("/home/app", 0o755, 65532);
        b.file("/etc/passwd", b"root".to_vec(), 0o644);
        let (a, b) = (a.finish(0).unwrap(), b.finish(0).unwrap());
        assert_eq!(a.tar, b.tar);
        assert_eq!(a.digest, b.digest);
        let mut archive = tar::Archive::new(a.tar.as_slice());
        let paths: Vec<String> = archive
            .entries()
            .unwrap()
            .map(|e| e.unwrap().path().unwrap().display().to_string())
            .collect();
        assert_eq!(
            paths,
            ["etc/", "etc/localtime", "etc/passwd", "home/", "home/app/"]
        );
    }
}
