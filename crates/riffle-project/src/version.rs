//! Version numbers: what a release tag says, the release after it, and the snapshot
//! version of a build between two releases.
//!
//! A release tag is a version number with an optional leading `v`: `1.4`, `v1.4`,
//! `2.0.3`. Other tags (`nightly`, `1.4-rc1`) are not releases and are ignored.
//! [`Release::next`] is the next minor release (`1.4` -> `1.5`, `v2.0.3` -> `v2.1.0`).
//!
//! A build that is not exactly a clean release gets a **snapshot version** on the way
//! to the next release, written as PEP 440 does:
//!
//! ```text
//! 1.5.dev3+g1a2b3c4d                 3 commits after tag 1.4, at commit 1a2b3c4d
//! 1.5.dev3+g1a2b3c4d.dirty.0f3e2a1b  ... with uncommitted changes fingerprinted 0f3e2a1b
//! 0.1.dev7+g9f8e7d6c                 no release tag yet: 7 commits
//! ```
//!
//! Why this and not BigFlow's `{tag}.dev{commits}+g{sha}`: BigFlow's snapshot of work
//! done after 1.4 reads `1.4.dev3`, which sorts *before* 1.4 in every Python and
//! Airflow tool that compares versions. Naming the release it leads to (1.5, the one
//! `riffle release` will tag) makes snapshots sort after the release they start from
//! and before the one they lead to. The commit count and the commit say where the
//! build came from; the dirty fingerprint tells two different uncommitted builds apart.

use std::fmt;

/// A release number as written in a tag: its numbers and the tag's spelling.
///
/// ```
/// use riffle_project::version::Release;
///
/// let tag = Release::parse_tag("v1.4").unwrap();
/// assert_eq!(tag.number(), "1.4");
/// assert_eq!(tag.next().tag(), "v1.5");
/// assert_eq!(Release::parse_tag("2.0.3").unwrap().next().tag(), "2.1.0");
/// assert!(Release::parse_tag("nightly").is_none());
/// assert!(Release::parse_tag("1.4-rc1").is_none());
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Release {
    parts: Vec<u64>,
    prefix: &'static str,
}

impl Release {
    /// The first release of a project that has none: `0.1`.
    pub fn first() -> Self {
        Self {
            parts: vec![0, 1],
            prefix: "",
        }
    }

    /// Reads a tag name as a release, or `None` when it is not one.
    pub fn parse_tag(tag: &str) -> Option<Self> {
        let (prefix, number) = match tag.strip_prefix('v').or_else(|| tag.strip_prefix('V')) {
            Some(rest) => ("v", rest),
            None => ("", tag),
        };
        if number.is_empty() {
            return None;
        }
        let parts = number
            .split('.')
            .map(|p| {
                if p.is_empty() || !p.bytes().all(|b| b.is_ascii_digit()) || p.len() > 18 {
                    None
                } else {
                    p.parse().ok()
                }
            })
            .collect::<Option<Vec<u64>>>()?;
        Some(Self { parts, prefix })
    }

    /// The number without a prefix: `1.4`.
    pub fn number(&self) -> String {
        self.parts
            .iter()
            .map(u64::to_string)
            .collect::<Vec<_>>()
            .join(".")
    }

    /// The tag name, with the prefix the project uses: `v1.4` or `1.4`.
    pub fn tag(&self) -> String {
        format!("{}{}", self.prefix, self.number())
    }

    /// The next minor release: the second number goes up by one, later ones go to
    /// zero, a missing second number becomes 1 (`2` -> `2.1`).
    pub fn next(&self) -> Self {
        let mut parts = self.parts.clone();
        if parts.len() < 2 {
            parts.resize(2, 0);
        }
        parts[1] += 1;
        for p in &mut parts[2..] {
            *p = 0;
        }
        Self {
            parts,
            prefix: self.prefix,
        }
    }

    /// Orders two releases by their numbers (`1.10` after `1.9`, `1.4.0` after `1.4`).
    pub fn cmp_number(&self, other: &Self) -> std::cmp::Ordering {
        self.parts.cmp(&other.parts)
    }
}

impl fmt::Display for Release {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.number())
    }
}

/// The version of a build, as [`crate::git::project_version`] reads it from git.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProjectVersion {
    /// The nearest release tag among HEAD's ancestors (HEAD included), if any.
    pub tag: Option<String>,
    /// Commits reachable from HEAD but not from that tag (all commits without a tag).
    pub commits_since_tag: u64,
    /// HEAD's commit id, in full hex.
    pub commit: String,
    /// A fingerprint of the uncommitted changes, when the tree is dirty.
    pub dirty: Option<String>,
}

impl ProjectVersion {
    /// Whether this build is exactly a release: at a tag with a clean tree.
    pub fn is_release(&self) -> bool {
        self.tag.is_some() && self.commits_since_tag == 0 && self.dirty.is_none()
    }

    /// The commit abbreviated to 8 hex digits.
    pub fn short_commit(&self) -> &str {
        &self.commit[..self.commit.len().min(8)]
    }

    /// The version string: the release number at a clean tag, otherwise the snapshot
    /// version described in the [module docs](self).
    ///
    /// ```
    /// use riffle_project::version::ProjectVersion;
    ///
    /// let mut v = ProjectVersion {
    ///     tag: Some("v1.4".into()),
    ///     commits_since_tag: 0,
    ///     commit: "1a2b3c4d5e6f".into(),
    ///     dirty: None,
    /// };
    /// assert_eq!(v.to_string(), "1.4");
    /// v.commits_since_tag = 3;
    /// assert_eq!(v.to_string(), "1.5.dev3+g1a2b3c4d");
    /// v.dirty = Some("0f3e2a1b".into());
    /// assert_eq!(v.to_string(), "1.5.dev3+g1a2b3c4d.dirty.0f3e2a1b");
    /// v.tag = None;
    /// assert_eq!(v.to_string(), "0.1.dev3+g1a2b3c4d.dirty.0f3e2a1b");
    /// ```
    pub fn version(&self) -> String {
        let release = self.tag.as_deref().and_then(Release::parse_tag);
        if let (true, Some(release)) = (self.is_release(), &release) {
            return release.number();
        }
        let next = release.map(|r| r.next()).unwrap_or_else(Release::first);
        let mut text = format!(
            "{}.dev{}+g{}",
            next.number(),
            self.commits_since_tag,
            self.short_commit()
        );
        if let Some(dirty) = &self.dirty {
            text.push_str(".dirty.");
            text.push_str(dirty);
        }
        text
    }
}

impl fmt::Display for ProjectVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.version())
    }
}

/// A version made safe for names that allow only `[A-Za-z0-9_.-]` (Airflow DAG ids,
/// image tags): every other character becomes `_`.
///
/// ```
/// assert_eq!(riffle_project::version::name_safe("1.5.dev3+g1a2b"), "1.5.dev3_g1a2b");
/// ```
pub fn name_safe(version: &str) -> String {
    version
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-') {
                c
            } else {
                '_'
            }
        })
        .collect()
}
