//! Container images of a project's binary, built without Docker or any daemon (as ko
//! and jib do): the layers are tars written here, the image is a tar that is at once
//! an OCI image layout (`oci-layout`, `index.json`, `blobs/sha256/...`) and a
//! `docker load` archive (`manifest.json` naming the same blobs).
//!
//! Two layers, both uncompressed (so a layer's digest is also its diff id):
//!
//! 1. **base**: `/etc/passwd` and `/etc/group` with a non-root user `riffle` (65532),
//!    its home, `/tmp`, the CA certificates (`/etc/ssl/certs/ca-certificates.crt`),
//!    the time zone database (`/usr/share/zoneinfo`, without the leap-second `right/`
//!    copies) and the dynamic loader and shared libraries the binary needs (read from
//!    its ELF headers, see [`elf`]), all taken from this machine;
//! 2. **app**: the binary at `/usr/local/bin/NAME`, the entrypoint.
//!
//! The image runs as `riffle`, its labels say the version and the git commit
//! (`org.opencontainers.image.version`, `.revision`). Everything is written in a fixed
//! order with fixed times (`SOURCE_DATE_EPOCH`, else 1970), so the same binary and the
//! same files from this machine give the same bytes, and the same image digest.

pub mod auth;
pub mod elf;
pub mod layer;
pub mod push;

use std::path::{Path, PathBuf};

use serde_json::json;

use self::layer::{Layer, LayerBlob, sha256};

/// The non-root user the image runs as.
pub const USER_ID: u32 = 65532;

const MANIFEST_TYPE: &str = "application/vnd.oci.image.manifest.v1+json";
const CONFIG_TYPE: &str = "application/vnd.oci.image.config.v1+json";
const LAYER_TYPE: &str = "application/vnd.oci.image.layer.v1.tar";

/// What goes into an image.
#[derive(Debug, Clone)]
pub struct ImageSpec {
    /// The project's name: the binary is `/usr/local/bin/NAME`, the image `NAME:TAG`.
    pub name: String,
    /// The binary to put in.
    pub binary: PathBuf,
    /// The version (label, and the tag after [`crate::version::name_safe`]).
    pub version: String,
    /// The git commit (label), when known.
    pub commit: Option<String>,
    /// The CA bundle to copy.
    pub ca_certs: PathBuf,
    /// The time zone database to copy.
    pub zoneinfo: PathBuf,
    /// The time written everywhere, in seconds since 1970.
    pub created: u64,
}

impl ImageSpec {
    /// A spec with this machine's CA bundle and time zone database, and the time from
    /// `SOURCE_DATE_EPOCH` (or 1970).
    pub fn new(name: &str, binary: &Path, version: &str) -> Self {
        let created = std::env::var("SOURCE_DATE_EPOCH")
            .ok()
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0);
        Self {
            name: name.to_string(),
            binary: binary.to_path_buf(),
            version: version.to_string(),
            commit: None,
            ca_certs: PathBuf::from("/etc/ssl/certs/ca-certificates.crt"),
            zoneinfo: PathBuf::from("/usr/share/zoneinfo"),
            created,
        }
    }

    /// The image's tag: the version with characters a tag cannot hold as `_`.
    pub fn tag(&self) -> String {
        crate::version::name_safe(&self.version)
    }

    /// The repository name in `docker load`: the name in lower case, `-` for others.
    pub fn repository(&self) -> String {
        crate::dags::k8s_name(&self.name)
    }
}

/// Why an image could not be built, written or pushed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ImageError {
    /// An input file could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The binary's libraries could not be found.
    #[error(transparent)]
    Elf(#[from] elf::ElfError),
    /// The image file could not be written.
    #[error("cannot write the image {path}: {source}")]
    Write {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// A registry refused or failed a request.
    #[error("registry {registry}: {what}: {why}")]
    Push {
        /// The registry's address and repository.
        registry: String,
        /// What was being done.
        what: String,
        /// What it answered.
        why: String,
    },
}

/// A built image: its blobs and the archive that holds them.
#[derive(Debug, Clone)]
pub struct Image {
    /// The layers, base first.
    pub layers: Vec<LayerBlob>,
    /// The image config JSON.
    pub config: Vec<u8>,
    /// The OCI manifest JSON.
    pub manifest: Vec<u8>,
    /// `sha256:...` of the manifest: the image's digest.
    pub digest: String,
    /// The tag.
    pub tag: String,
    /// The archive: OCI layout and `docker load` manifest in one tar.
    pub archive: Vec<u8>,
}

fn read(path: &Path) -> Result<Vec<u8>, ImageError> {
    std::fs::read(path).map_err(|source| ImageError::Read {
        path: path.to_path_buf(),
        source,
    })
}

/// Adds the tree under `from` at `to`, skipping `skip` at its top.
fn add_tree(layer: &mut Layer, from: &Path, to: &str, skip: &[&str]) -> Result<(), ImageError> {
    let failed = |source| ImageError::Read {
        path: from.to_path_buf(),
        source,
    };
    for entry in std::fs::read_dir(from).map_err(failed)? {
        let entry = entry.map_err(failed)?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if skip.contains(&name.as_str()) {
            continue;
        }
        let path = entry.path();
        let inside = format!("{to}/{name}");
        let kind = entry.file_type().map_err(failed)?;
        if kind.is_symlink() {
            let target = std::fs::read_link(&path).map_err(|source| ImageError::Read {
                path: path.clone(),
                source,
            })?;
            layer.symlink(&inside, &target.to_string_lossy());
        } else if kind.is_dir() {
            layer.dir(&inside, 0o755, 0);
            add_tree(layer, &path, &inside, &[])?;
        } else if kind.is_file() {
            layer.file(&inside, read(&path)?, 0o644);
        }
    }
    Ok(())
}

fn base_layer(spec: &ImageSpec) -> Result<Layer, ImageError> {
    let mut base = Layer::new();
    base.file(
        "/etc/passwd",
        format!(
            "root:x:0:0:root:/root:/sbin/nologin\nriffle:x:{USER_ID}:{USER_ID}:riffle:/home/riffle:/sbin/nologin\n"
        )
        .into_bytes(),
        0o644,
    );
    base.file(
        "/etc/group",
        format!("root:x:0:\nriffle:x:{USER_ID}:\n").into_bytes(),
        0o644,
    );
    base.file(
        "/etc/nsswitch.conf",
        b"passwd: files\ngroup: files\nhosts: files dns\n".to_vec(),
        0o644,
    );
    base.dir("/root", 0o700, 0);
    base.dir("/home/riffle", 0o755, USER_ID);
    base.dir("/tmp", 0o1777, 0);
    base.file(
        "/etc/ssl/certs/ca-certificates.crt",
        read(&spec.ca_certs)?,
        0o644,
    );
    base.dir("/usr/share/zoneinfo", 0o755, 0);
    add_tree(&mut base, &spec.zoneinfo, "/usr/share/zoneinfo", &["right"])?;
    base.symlink("/etc/localtime", "/usr/share/zoneinfo/Etc/UTC");
    for library in elf::runtime_files(&spec.binary)? {
        base.file(&library.to_string_lossy(), read(&library)?, 0o755);
    }
    Ok(base)
}

fn descriptor(media_type: &str, bytes: &[u8], digest: &str) -> serde_json::Value {
    json!({ "mediaType": media_type, "digest": digest, "size": bytes.len() })
}

fn blob_path(digest: &str) -> String {
    format!("blobs/sha256/{}", digest.trim_start_matches("sha256:"))
}

fn architecture() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => other,
    }
}

/// Builds the image of `spec` in memory.
pub fn build_image(spec: &ImageSpec) -> Result<Image, ImageError> {
    let io_failed = |source| ImageError::Write {
        path: PathBuf::from("(memory)"),
        source,
    };
    let base = base_layer(spec)?.finish(spec.created).map_err(io_failed)?;
    let mut app = Layer::new();
    let entrypoint = format!("/usr/local/bin/{}", spec.name);
    app.file(&entrypoint, read(&spec.binary)?, 0o755);
    let app = app.finish(spec.created).map_err(io_failed)?;
    let layers = vec![base, app];

    let created = chrono_like_utc(spec.created);
    let mut labels = serde_json::Map::new();
    labels.insert("org.opencontainers.image.title".into(), json!(spec.name));
    labels.insert(
        "org.opencontainers.image.version".into(),
        json!(spec.version),
    );
    if let Some(commit) = &spec.commit {
        labels.insert("org.opencontainers.image.revision".into(), json!(commit));
    }
    let config = json!({
        "created": created,
        "architecture": architecture(),
        "os": "linux",
        "config": {
            "User": format!("{USER_ID}:{USER_ID}"),
            "Env": [
                "PATH=/usr/local/bin:/usr/bin:/bin",
                "SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt",
                "HOME=/home/riffle",
            ],
            "Entrypoint": [entrypoint],
            "WorkingDir": "/home/riffle",
            "Labels": labels,
        },
        "rootfs": {
            "type": "layers",
            "diff_ids": layers.iter().map(|l| l.digest.clone()).collect::<Vec<_>>(),
        },
        "history": [
            { "created": created, "created_by": "riffle build-image: base (user, CA certificates, time zones, libraries)" },
            { "created": created, "created_by": format!("riffle build-image: {entrypoint}") },
        ],
    });
    let config = serde_json::to_vec(&config).expect("JSON values serialize");
    let config_digest = sha256(&config);
    let manifest = json!({
        "schemaVersion": 2,
        "mediaType": MANIFEST_TYPE,
        "config": descriptor(CONFIG_TYPE, &config, &config_digest),
        "layers": layers
            .iter()
            .map(|l| descriptor(LAYER_TYPE, &l.tar, &l.digest))
            .collect::<Vec<_>>(),
        "annotations": labels,
    });
    let manifest = serde_json::to_vec(&manifest).expect("JSON values serialize");
    let digest = sha256(&manifest);
    let tag = spec.tag();

    let index = json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": [{
            "mediaType": MANIFEST_TYPE,
            "digest": digest,
            "size": manifest.len(),
            "annotations": { "org.opencontainers.image.ref.name": tag },
        }],
    });
    let docker = json!([{
        "Config": blob_path(&config_digest),
        "RepoTags": [format!("{}:{}", spec.repository(), tag)],
        "Layers": layers.iter().map(|l| blob_path(&l.digest)).collect::<Vec<_>>(),
    }]);
    let mut archive = Layer::new();
    archive.file(
        "oci-layout",
        br#"{"imageLayoutVersion":"1.0.0"}"#.to_vec(),
        0o644,
    );
    archive.file(
        "index.json",
        serde_json::to_vec(&index).expect("JSON values serialize"),
        0o644,
    );
    archive.file(
        "manifest.json",
        serde_json::to_vec(&docker).expect("JSON values serialize"),
        0o644,
    );
    archive.file(&blob_path(&config_digest), config.clone(), 0o644);
    archive.file(&blob_path(&digest), manifest.clone(), 0o644);
    for l in &layers {
        archive.file(&blob_path(&l.digest), l.tar.clone(), 0o644);
    }
    let archive = archive.finish(spec.created).map_err(io_failed)?.tar;
    Ok(Image {
        layers,
        config,
        manifest,
        digest,
        tag,
        archive,
    })
}

/// Writes the archive to `path` atomically (a temporary file beside it, then a rename).
pub fn write_image(path: &Path, image: &Image) -> Result<(), ImageError> {
    let failed = |source| ImageError::Write {
        path: path.to_path_buf(),
        source,
    };
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent).map_err(failed)?;
    }
    let tmp = path.with_extension(format!("tmp-{}", std::process::id()));
    let written = std::fs::write(&tmp, &image.archive)
        .and_then(|()| std::fs::File::open(&tmp)?.sync_all())
        .and_then(|()| std::fs::rename(&tmp, path));
    if let Err(e) = written {
        let _ = std::fs::remove_file(&tmp);
        return Err(failed(e));
    }
    Ok(())
}

/// Reads back an image archive written by [`write_image`] (for `riffle deploy`,
/// which pushes what `build-image` wrote): its one manifest, config and layers.
pub fn read_image(path: &Path) -> Result<Image, ImageError> {
    let archive = read(path)?;
    let bad = |why: String| ImageError::Read {
        path: path.to_path_buf(),
        source: std::io::Error::new(std::io::ErrorKind::InvalidData, why),
    };
    let mut files = std::collections::BTreeMap::new();
    let mut tar = tar::Archive::new(archive.as_slice());
    for entry in tar.entries().map_err(|e| bad(e.to_string()))? {
        let mut entry = entry.map_err(|e| bad(e.to_string()))?;
        let name = entry
            .path()
            .map_err(|e| bad(e.to_string()))?
            .to_string_lossy()
            .into_owned();
        let mut bytes = Vec::new();
        std::io::Read::read_to_end(&mut entry, &mut bytes).map_err(|e| bad(e.to_string()))?;
        files.insert(name, bytes);
    }
    let file = |name: &str| {
        files.get(name).cloned().ok_or_else(|| {
            bad(format!(
                "no {name} in the archive (not made by build-image?)"
            ))
        })
    };
    let json = |bytes: &[u8], what: &str| -> Result<serde_json::Value, ImageError> {
        serde_json::from_slice(bytes).map_err(|e| bad(format!("{what}: {e}")))
    };
    let index = json(&file("index.json")?, "index.json")?;
    let entry = &index["manifests"][0];
    let digest = entry["digest"]
        .as_str()
        .ok_or_else(|| bad("index.json names no manifest".into()))?
        .to_string();
    let tag = entry["annotations"]["org.opencontainers.image.ref.name"]
        .as_str()
        .unwrap_or("latest")
        .to_string();
    let manifest = file(&blob_path(&digest))?;
    if sha256(&manifest) != digest {
        return Err(bad(format!("manifest {digest} does not match its digest")));
    }
    let parsed = json(&manifest, "manifest")?;
    let config_digest = parsed["config"]["digest"].as_str().unwrap_or_default();
    let config = file(&blob_path(config_digest))?;
    let mut layers = Vec::new();
    for layer in parsed["layers"].as_array().into_iter().flatten() {
        let digest = layer["digest"].as_str().unwrap_or_default().to_string();
        let tar = file(&blob_path(&digest))?;
        if sha256(&tar) != digest {
            return Err(bad(format!("layer {digest} does not match its digest")));
        }
        layers.push(LayerBlob { tar, digest });
    }
    Ok(Image {
        layers,
        config,
        manifest,
        digest,
        tag,
        archive,
    })
}

/// `YYYY-MM-DDTHH:MM:SSZ` for seconds since 1970 (UTC).
fn chrono_like_utc(seconds: u64) -> String {
    let days = (seconds / 86_400) as i64;
    let rem = seconds % 86_400;
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_are_written_in_utc() {
        assert_eq!(chrono_like_utc(0), "1970-01-01T00:00:00Z");
        assert_eq!(chrono_like_utc(1_709_251_199), "2024-02-29T23:59:59Z");
    }
}
