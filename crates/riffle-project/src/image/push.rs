//! Pushing an [`Image`] to an OCI registry over the distribution API (HTTP or HTTPS):
//! each blob that the registry does not have yet is uploaded in one request
//! (`POST /v2/REPO/blobs/uploads/`, then `PUT ...?digest=`), then the manifest is put
//! under the tag. The registry's answer for the manifest digest is checked against
//! ours, so a registry that rewrote the manifest is an error, not a surprise later.
//!
//! A target is `REGISTRY/REPO[:TAG]` (`registry.example/team/app`, `127.0.0.1:5000/app:1.4`),
//! optionally with `http://` or `https://` in front. Without one, loopback registries
//! (`localhost`, `127.0.0.1`, `[::1]`) are spoken to over HTTP and every other one over
//! HTTPS.
//!
//! Authentication (see [`super::auth`]): with `RIFFLE_REGISTRY_USER` and
//! `RIFFLE_REGISTRY_PASSWORD` set, requests carry HTTP basic authentication; a
//! registry that answers with a bearer challenge (Docker Hub, GHCR, GCR, Harbor, the
//! distribution registry with `auth: token`) gets a token from its token server for
//! `repository:REPO:pull,push`, asked with those credentials, and the token is used
//! for the rest of the push. `RIFFLE_REGISTRY_TOKEN` is a token sent as it is.

use reqwest::StatusCode;
use reqwest::blocking::Client;

use super::auth::RegistryAuth;
use super::{Image, ImageError, MANIFEST_TYPE};

/// Where an image goes: base URL, repository and tag.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PushTarget {
    /// `http://host:port` or `https://host`.
    pub base: String,
    /// The repository path, `team/app`.
    pub repository: String,
    /// The tag, when the target names one.
    pub tag: Option<String>,
}

impl PushTarget {
    /// Reads `[http(s)://]REGISTRY/REPO[:TAG]`.
    ///
    /// ```
    /// use riffle_project::image::push::PushTarget;
    ///
    /// let t = PushTarget::parse("127.0.0.1:5000/team/app:1.4").unwrap();
    /// assert_eq!(t.base, "http://127.0.0.1:5000");
    /// assert_eq!(t.repository, "team/app");
    /// assert_eq!(t.tag.as_deref(), Some("1.4"));
    /// assert_eq!(PushTarget::parse("registry.example/app").unwrap().base, "https://registry.example");
    /// assert!(PushTarget::parse("app").is_err());
    /// ```
    pub fn parse(text: &str) -> Result<Self, String> {
        let (scheme, rest) = match text.split_once("://") {
            Some((s @ ("http" | "https"), rest)) => (Some(s), rest),
            Some((s, _)) => return Err(format!("{text:?}: unknown scheme {s:?} (http or https)")),
            None => (None, text),
        };
        let Some((host, path)) = rest.split_once('/') else {
            return Err(format!(
                "{text:?} is not REGISTRY/REPOSITORY (e.g. registry.example/team/app)"
            ));
        };
        if host.is_empty() || path.is_empty() {
            return Err(format!("{text:?} is not REGISTRY/REPOSITORY"));
        }
        let (repository, tag) = match path.rsplit_once(':') {
            Some((repo, tag)) if !tag.contains('/') => (repo, Some(tag.to_string())),
            _ => (path, None),
        };
        let valid = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit() || "._-/".contains(c);
        if repository.is_empty() || !repository.chars().all(valid) {
            return Err(format!(
                "{text:?}: repository {repository:?} must be lower-case letters, digits, . _ - and /"
            ));
        }
        let loopback = ["localhost", "127.0.0.1", "[::1]"]
            .iter()
            .any(|h| host == *h || host.starts_with(&format!("{h}:")));
        let scheme = scheme.unwrap_or(if loopback { "http" } else { "https" });
        Ok(Self {
            base: format!("{scheme}://{host}"),
            repository: repository.to_string(),
            tag,
        })
    }

    fn describe(&self) -> String {
        format!("{}/{}", self.base, self.repository)
    }
}

/// Pushes `image` to `target` (under the target's tag, else the image's), and
/// returns the manifest digest the registry stored.
pub fn push_image(image: &Image, target: &PushTarget) -> Result<String, ImageError> {
    let failed = |what: &str, why: String| ImageError::Push {
        registry: target.describe(),
        what: what.to_string(),
        why,
    };
    let answer = |what: &str, response: reqwest::blocking::Response| {
        let status = response.status();
        let body = response.text().unwrap_or_default();
        failed(
            what,
            format!(
                "HTTP {status}: {}",
                body.trim().chars().take(300).collect::<String>()
            ),
        )
    };
    let client = Client::builder()
        .timeout(std::time::Duration::from_secs(300))
        .build()
        .map_err(|e| failed("start an HTTP client", e.to_string()))?;
    let mut auth = RegistryAuth::from_env(&client, target.describe(), &target.repository);
    let repo = format!("{}/v2/{}", target.base, target.repository);
    let mut blobs: Vec<(&str, &[u8])> = image
        .layers
        .iter()
        .map(|l| (l.digest.as_str(), l.tar.as_slice()))
        .collect();
    let config_digest = super::layer::sha256(&image.config);
    blobs.push((&config_digest, &image.config));
    for (digest, bytes) in blobs {
        let what = format!("upload blob {digest}");
        let head = auth.send(&what, || client.head(format!("{repo}/blobs/{digest}")))?;
        if head.status() == StatusCode::OK {
            continue;
        }
        let start = auth.send(&what, || client.post(format!("{repo}/blobs/uploads/")))?;
        if start.status() != StatusCode::ACCEPTED {
            return Err(answer(&what, start));
        }
        let location = start
            .headers()
            .get(reqwest::header::LOCATION)
            .and_then(|v| v.to_str().ok())
            .ok_or_else(|| failed(&what, "no Location in the answer".into()))?
            .to_string();
        let location = if location.starts_with('/') {
            format!("{}{location}", target.base)
        } else {
            location
        };
        let separator = if location.contains('?') { '&' } else { '?' };
        let put = auth.send(&what, || {
            client
                .put(format!("{location}{separator}digest={digest}"))
                .header(reqwest::header::CONTENT_TYPE, "application/octet-stream")
                .body(bytes.to_vec())
        })?;
        if put.status() != StatusCode::CREATED {
            return Err(answer(&what, put));
        }
    }
    let tag = target.tag.clone().unwrap_or_else(|| image.tag.clone());
    let what = format!("put manifest {tag}");
    let put = auth.send(&what, || {
        client
            .put(format!("{repo}/manifests/{tag}"))
            .header(reqwest::header::CONTENT_TYPE, MANIFEST_TYPE)
            .body(image.manifest.clone())
    })?;
    if put.status() != StatusCode::CREATED {
        return Err(answer(&what, put));
    }
    let stored = put
        .headers()
        .get("Docker-Content-Digest")
        .and_then(|v| v.to_str().ok())
        .unwrap_or(&image.digest)
        .to_string();
    if stored != image.digest {
        return Err(failed(
            &what,
            format!("the registry stored {stored}, not {}", image.digest),
        ));
    }
    Ok(stored)
}
