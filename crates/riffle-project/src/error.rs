//! The one error type of this crate and its [`Result`] alias.
//!
//! Every variant names what it was about (a folder, a tag, a pipeline, a remote) and
//! why, so the message alone is enough to act on.

use std::path::PathBuf;

/// What can go wrong while reading a project's version, releasing it, or writing its
/// deployment files.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The folder is not inside a git repository.
    #[error("{dir} is not inside a git repository (run `git init` and commit first)")]
    NotARepository {
        /// The folder that was asked about.
        dir: PathBuf,
        /// What the repository discovery said.
        #[source]
        source: gix::Error,
    },
    /// The repository has no commit yet, so there is nothing to version.
    #[error("the git repository at {repo} has no commits yet")]
    NoCommits {
        /// The repository's working tree.
        repo: PathBuf,
    },
    /// Reading or writing the repository failed.
    #[error("git repository at {repo}: cannot {what}")]
    Git {
        /// The repository's working tree.
        repo: PathBuf,
        /// What was being done ("read HEAD", "list tags", ...).
        what: &'static str,
        /// The cause.
        #[source]
        source: gix::Error,
    },
    /// A release was asked for on a tree with uncommitted changes.
    #[error(
        "the working tree at {repo} has uncommitted changes ({}); commit or stash them before releasing",
        changed.join(", ")
    )]
    DirtyTree {
        /// The repository's working tree.
        repo: PathBuf,
        /// The changed paths (at most a few).
        changed: Vec<String>,
    },
    /// A release was asked for on a commit that already carries a version tag.
    #[error("HEAD ({commit}) is already released as {tag}; commit something new first")]
    AlreadyReleased {
        /// The tag on HEAD.
        tag: String,
        /// HEAD's commit, abbreviated.
        commit: String,
    },
    /// The tag a release would create already exists (on another commit).
    #[error("tag {tag} already exists in {repo}; the next release after it needs a newer base")]
    TagExists {
        /// The tag name.
        tag: String,
        /// The repository's working tree.
        repo: PathBuf,
    },
    /// Pushing a tag failed.
    #[error("cannot push tag {tag} to remote {remote}: {why}")]
    Push {
        /// The tag name.
        tag: String,
        /// The remote name or URL.
        remote: String,
        /// What `git push` said.
        why: String,
    },
}

/// This crate's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;
