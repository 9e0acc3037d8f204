//! Reading a project's git repository: HEAD, release tags, the commits since the
//! nearest one, and whether the working tree has uncommitted changes; and tagging a
//! release.
//!
//! Everything is read with `gix` (pure Rust): no libgit2 and no `git` program. Only
//! [`push_tag`] runs `git push`, since pushing needs the user's transport and
//! credentials setup, which is `git`'s.
//!
//! Untracked files do not make a tree dirty (as with `git describe --dirty`): a
//! stray file beside the project does not change what was committed, and a release
//! should not be refused for it. Staged and unstaged changes to tracked files do.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use gix::ObjectId;
use gix::refs::transaction::PreviousValue;
use sha2::{Digest, Sha256};

use crate::error::{Error, Result};
use crate::version::{ProjectVersion, Release};

/// An opened repository and the folder it was found from.
pub struct Checkout {
    repo: gix::Repository,
    root: PathBuf,
}

/// A release tag and the commit it points to.
#[derive(Debug, Clone)]
struct TagInfo {
    name: String,
    release: Release,
}

impl Checkout {
    /// Finds the repository that contains `dir` (searching upwards).
    pub fn open(dir: &Path) -> Result<Self> {
        let repo = gix::discover(dir).map_err(|source| Error::NotARepository {
            dir: dir.to_path_buf(),
            source,
        })?;
        let root = repo
            .workdir()
            .map(Path::to_path_buf)
            .unwrap_or_else(|| repo.git_dir().to_path_buf());
        Ok(Self { repo, root })
    }

    /// The working tree's root folder.
    pub fn root(&self) -> &Path {
        &self.root
    }

    fn git(&self, what: &'static str) -> impl FnOnce(gix::Error) -> Error + '_ {
        move |source| Error::Git {
            repo: self.root.clone(),
            what,
            source,
        }
    }

    /// HEAD's commit.
    pub fn head(&self) -> Result<ObjectId> {
        let head = self.repo.head().map_err(self.git("read HEAD"))?;
        if head.is_unborn() {
            return Err(Error::NoCommits {
                repo: self.root.clone(),
            });
        }
        let id = head.into_peeled_id().map_err(self.git("read HEAD"))?;
        Ok(id.detach())
    }

    /// Release tags by the commit they point to (annotated tags peeled).
    fn release_tags(&self) -> Result<HashMap<ObjectId, Vec<TagInfo>>> {
        let mut by_commit: HashMap<ObjectId, Vec<TagInfo>> = HashMap::new();
        let refs = self.repo.references().map_err(self.git("list tags"))?;
        for reference in refs.tags().map_err(self.git("list tags"))? {
            let mut reference = reference.map_err(self.git("list tags"))?;
            let name = reference.name().shorten().to_string();
            let Some(release) = Release::parse_tag(&name) else {
                continue;
            };
            let id = reference
                .peel_to_id()
                .map_err(self.git("read a tag"))?
                .detach();
            by_commit
                .entry(id)
                .or_default()
                .push(TagInfo { name, release });
        }
        for tags in by_commit.values_mut() {
            tags.sort_by(|a, b| b.release.cmp_number(&a.release));
        }
        Ok(by_commit)
    }

    /// The nearest release tag among `head`'s ancestors (fewest parent steps; at a
    /// commit with several, the highest), and the commit it is on.
    fn nearest_tag(&self, head: ObjectId) -> Result<Option<(ObjectId, TagInfo)>> {
        let mut tags = self.release_tags()?;
        if tags.is_empty() {
            return Ok(None);
        }
        let walk = self
            .repo
            .rev_walk([head])
            .all()
            .map_err(self.git("walk the history"))?;
        for info in walk {
            let info = info.map_err(self.git("walk the history"))?;
            if let Some(mut found) = tags.remove(&info.id) {
                return Ok(Some((info.id, found.swap_remove(0))));
            }
        }
        Ok(None)
    }

    /// Commits reachable from `head` but not from `base` (all of them without one).
    fn count_commits(&self, head: ObjectId, base: Option<ObjectId>) -> Result<u64> {
        let walk = self.repo.rev_walk([head]).with_hidden(base);
        let mut count = 0;
        for info in walk.all().map_err(self.git("walk the history"))? {
            info.map_err(self.git("walk the history"))?;
            count += 1;
        }
        Ok(count)
    }

    /// The tracked paths with uncommitted changes (staged or not), sorted.
    pub fn changed_paths(&self) -> Result<Vec<String>> {
        let status = self
            .repo
            .status(gix::progress::Discard)
            .map_err(self.git("read the status"))?
            .untracked_files(gix::status::UntrackedFiles::None)
            .index_worktree_rewrites(None)
            .index_worktree_options_mut(|opts| opts.dirwalk_options = None);
        let mut paths = Vec::new();
        for item in status
            .into_iter(Vec::new())
            .map_err(self.git("read the status"))?
        {
            let item = item.map_err(self.git("read the status"))?;
            paths.push(item.location().to_string());
        }
        paths.sort();
        paths.dedup();
        Ok(paths)
    }

    /// A fingerprint of the uncommitted changes: SHA-256 over each changed path and
    /// its current content (or its absence), 8 hex digits. `None` on a clean tree.
    fn dirty_fingerprint(&self) -> Result<Option<String>> {
        let paths = self.changed_paths()?;
        if paths.is_empty() {
            return Ok(None);
        }
        let mut hash = Sha256::new();
        for path in &paths {
            hash.update(path.as_bytes());
            hash.update([0]);
            match std::fs::read(self.root.join(path)) {
                Ok(bytes) => {
                    hash.update((bytes.len() as u64).to_le_bytes());
                    hash.update(&bytes);
                }
                Err(_) => hash.update(b"(absent)"),
            }
        }
        let digest = hash.finalize();
        Ok(Some(
            digest[..4].iter().map(|b| format!("{b:02x}")).collect(),
        ))
    }

    /// The project's version as git says it (see [`crate::version`]).
    pub fn version(&self) -> Result<ProjectVersion> {
        let head = self.head()?;
        let nearest = self.nearest_tag(head)?;
        let commits_since_tag = self.count_commits(head, nearest.as_ref().map(|(id, _)| *id))?;
        Ok(ProjectVersion {
            tag: nearest.map(|(_, t)| t.name),
            commits_since_tag,
            commit: head.to_string(),
            dirty: self.dirty_fingerprint()?,
        })
    }

    /// Tags HEAD with the next minor release after the nearest release tag (`0.1`
    /// when there is none). Refuses a dirty tree, a HEAD that is already a release,
    /// and a tag name that already exists.
    pub fn tag_next_release(&self) -> Result<Release> {
        let changed = self.changed_paths()?;
        if !changed.is_empty() {
            let mut shown: Vec<String> = changed.iter().take(5).cloned().collect();
            if changed.len() > 5 {
                shown.push(format!("and {} more", changed.len() - 5));
            }
            return Err(Error::DirtyTree {
                repo: self.root.clone(),
                changed: shown,
            });
        }
        let head = self.head()?;
        let next = match self.nearest_tag(head)? {
            Some((id, tag)) if id == head => {
                return Err(Error::AlreadyReleased {
                    tag: tag.name,
                    commit: head.to_hex_with_len(8).to_string(),
                });
            }
            Some((_, tag)) => tag.release.next(),
            None => Release::first(),
        };
        let name = next.tag();
        let exists = self
            .repo
            .try_find_reference(format!("refs/tags/{name}").as_str())
            .map_err(self.git("look up a tag"))?
            .is_some();
        if exists {
            return Err(Error::TagExists {
                tag: name,
                repo: self.root.clone(),
            });
        }
        self.repo
            .tag_reference(&name, head, PreviousValue::MustNotExist)
            .map_err(self.git("create the tag"))?;
        Ok(next)
    }
}

/// The version of the project in `dir` (any folder inside its git repository).
///
/// ```no_run
/// let version = riffle_project::git::project_version(std::path::Path::new("."))?;
/// println!("{version}"); // 1.4, or 1.5.dev3+g1a2b3c4d, ...
/// # Ok::<(), riffle_project::Error>(())
/// ```
pub fn project_version(dir: &Path) -> Result<ProjectVersion> {
    Checkout::open(dir)?.version()
}

/// Pushes `refs/tags/TAG` to `remote` (a remote's name or a URL) with `git push`.
pub fn push_tag(root: &Path, remote: &str, tag: &str) -> Result<()> {
    let failed = |why: String| Error::Push {
        tag: tag.to_string(),
        remote: remote.to_string(),
        why,
    };
    let output = Command::new("git")
        .arg("-C")
        .arg(root)
        .args(["push", "--quiet", remote])
        .arg(format!("refs/tags/{tag}:refs/tags/{tag}"))
        .output()
        .map_err(|e| failed(format!("cannot run git: {e}")))?;
    if !output.status.success() {
        let stderr = String::from_utf8_lossy(&output.stderr);
        return Err(failed(stderr.trim().to_string()));
    }
    Ok(())
}
