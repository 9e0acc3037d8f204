//! Versions and releases read from real git repositories that each test makes with
//! the `git` program (commits, lightweight and annotated tags, dirty files), then
//! reads with `riffle_project::git` (which does not use `git`).

use std::path::Path;
use std::process::Command;

use riffle_project::Error;
use riffle_project::git::{Checkout, project_version, push_tag};

fn git(dir: &Path, args: &[&str]) -> String {
    let out = Command::new("git")
        .arg("-C")
        .arg(dir)
        .args([
            "-c",
            "user.name=Test",
            "-c",
            "user.email=test@example.invalid",
            "-c",
            "init.defaultBranch=main",
            "-c",
            "tag.gpgSign=false",
            "-c",
            "commit.gpgSign=false",
        ])
        .args(args)
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .output()
        .expect("git runs");
    assert!(
        out.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

fn commit(dir: &Path, file: &str, text: &str) -> String {
    std::fs::write(dir.join(file), text).unwrap();
    git(dir, &["add", file]);
    git(dir, &["commit", "-q", "-m", &format!("change {file}")]);
    git(dir, &["rev-parse", "HEAD"])
}

fn repo() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    git(dir.path(), &["init", "-q"]);
    dir
}

#[test]
fn not_a_repository_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let err = project_version(dir.path()).unwrap_err();
    assert!(matches!(err, Error::NotARepository { .. }), "{err:?}");
    let text = err.to_string();
    assert!(text.contains(&dir.path().display().to_string()), "{text}");
    assert!(text.contains("not inside a git repository"), "{text}");
}

#[test]
fn a_repository_without_commits_has_no_version() {
    let dir = repo();
    let err = project_version(dir.path()).unwrap_err();
    assert!(matches!(err, Error::NoCommits { .. }), "{err:?}");
}

#[test]
fn without_a_tag_the_version_is_zero_with_the_commit() {
    let dir = repo();
    commit(dir.path(), "a.txt", "a");
    let head = commit(dir.path(), "b.txt", "b");
    // A tag that is not a release is ignored.
    git(dir.path(), &["tag", "nightly"]);
    let v = project_version(dir.path()).unwrap();
    assert_eq!(v.tag, None);
    assert_eq!(v.commits_since_tag, 2);
    assert_eq!(v.commit, head);
    assert_eq!(v.version(), format!("0.1.dev2+g{}", &head[..8]));
}

#[test]
fn exactly_at_a_tag_on_a_clean_tree_the_version_is_the_tag() {
    let dir = repo();
    commit(dir.path(), "a.txt", "a");
    git(dir.path(), &["tag", "v1.4"]);
    let v = project_version(dir.path()).unwrap();
    assert!(v.is_release());
    assert_eq!(v.version(), "1.4");
    // From a subfolder too.
    std::fs::create_dir(dir.path().join("sub")).unwrap();
    assert_eq!(
        project_version(&dir.path().join("sub")).unwrap().version(),
        "1.4"
    );
    // An annotated tag reads the same.
    commit(dir.path(), "b.txt", "b");
    git(dir.path(), &["tag", "-a", "2.0.3", "-m", "release 2.0.3"]);
    assert_eq!(project_version(dir.path()).unwrap().version(), "2.0.3");
}

#[test]
fn after_a_tag_the_snapshot_counts_commits_towards_the_next_release() {
    let dir = repo();
    commit(dir.path(), "a.txt", "a");
    git(dir.path(), &["tag", "v1.4"]);
    commit(dir.path(), "b.txt", "b");
    commit(dir.path(), "c.txt", "c");
    let head = commit(dir.path(), "d.txt", "d");
    let v = project_version(dir.path()).unwrap();
    assert_eq!(v.tag.as_deref(), Some("v1.4"));
    assert_eq!(v.commits_since_tag, 3);
    assert_eq!(v.version(), format!("1.5.dev3+g{}", &head[..8]));
    assert!(!v.is_release());
}

#[test]
fn the_nearest_tag_wins_and_merged_branches_are_counted() {
    let dir = repo();
    commit(dir.path(), "a.txt", "a");
    git(dir.path(), &["tag", "1.9"]);
    commit(dir.path(), "b.txt", "b");
    git(dir.path(), &["tag", "1.10"]);
    git(dir.path(), &["checkout", "-q", "-b", "side"]);
    commit(dir.path(), "side.txt", "s");
    git(dir.path(), &["checkout", "-q", "main"]);
    commit(dir.path(), "c.txt", "c");
    git(dir.path(), &["merge", "-q", "--no-edit", "side"]);
    let v = project_version(dir.path()).unwrap();
    assert_eq!(v.tag.as_deref(), Some("1.10"));
    // side.txt, c.txt and the merge commit.
    assert_eq!(v.commits_since_tag, 3);
    assert!(v.version().starts_with("1.11.dev3+g"), "{}", v.version());
}

#[test]
fn a_dirty_tree_is_fingerprinted_by_its_changes() {
    let dir = repo();
    commit(dir.path(), "a.txt", "a");
    git(dir.path(), &["tag", "v1.4"]);
    // An untracked file does not make the tree dirty.
    std::fs::write(dir.path().join("stray.txt"), "x").unwrap();
    assert_eq!(project_version(dir.path()).unwrap().version(), "1.4");

    std::fs::write(dir.path().join("a.txt"), "changed").unwrap();
    let first = project_version(dir.path()).unwrap();
    let fingerprint = first.dirty.clone().expect("dirty");
    assert_eq!(fingerprint.len(), 8);
    assert_eq!(
        first.version(),
        format!("1.5.dev0+g{}.dirty.{fingerprint}", first.short_commit())
    );
    // The same changes give the same fingerprint; other changes another.
    assert_eq!(project_version(dir.path()).unwrap(), first);
    std::fs::write(dir.path().join("a.txt"), "changed again").unwrap();
    let second = project_version(dir.path()).unwrap();
    assert_ne!(second.dirty, first.dirty);
    // A staged change is dirty too.
    git(dir.path(), &["add", "a.txt"]);
    assert!(project_version(dir.path()).unwrap().dirty.is_some());
    // As is a deleted tracked file.
    git(dir.path(), &["reset", "-q", "--hard"]);
    assert_eq!(project_version(dir.path()).unwrap().dirty, None);
    std::fs::remove_file(dir.path().join("a.txt")).unwrap();
    assert!(project_version(dir.path()).unwrap().dirty.is_some());
}

#[test]
fn release_tags_the_next_minor_version_on_a_clean_tree() {
    let dir = repo();
    commit(dir.path(), "a.txt", "a");
    // No tag yet: the first release is 0.1.
    let checkout = Checkout::open(dir.path()).unwrap();
    assert_eq!(checkout.tag_next_release().unwrap().tag(), "0.1");
    // At a tag already: refused.
    let err = checkout.tag_next_release().unwrap_err();
    assert!(matches!(err, Error::AlreadyReleased { .. }), "{err:?}");
    assert!(err.to_string().contains("already released as 0.1"), "{err}");

    commit(dir.path(), "b.txt", "b");
    git(dir.path(), &["tag", "v1.4"]);
    commit(dir.path(), "c.txt", "c");
    // A dirty tree: refused, naming the changed file; no tag is made.
    std::fs::write(dir.path().join("c.txt"), "changed").unwrap();
    let err = checkout.tag_next_release().unwrap_err();
    assert!(matches!(err, Error::DirtyTree { .. }), "{err:?}");
    assert!(err.to_string().contains("c.txt"), "{err}");
    assert!(git(dir.path(), &["tag", "--list", "v1.5"]).is_empty());

    git(dir.path(), &["checkout", "-q", "--", "c.txt"]);
    let release = checkout.tag_next_release().unwrap();
    assert_eq!(release.tag(), "v1.5");
    // `git` sees the tag on HEAD, and the version is now the release.
    assert_eq!(
        git(dir.path(), &["rev-parse", "v1.5^{commit}"]),
        git(dir.path(), &["rev-parse", "HEAD"])
    );
    assert_eq!(project_version(dir.path()).unwrap().version(), "1.5");

    // The next release would be v1.6; if it exists elsewhere, refused.
    git(dir.path(), &["checkout", "-q", "-b", "other"]);
    commit(dir.path(), "d.txt", "d");
    git(dir.path(), &["tag", "v1.6"]);
    git(dir.path(), &["checkout", "-q", "main"]);
    commit(dir.path(), "e.txt", "e");
    let err = checkout.tag_next_release().unwrap_err();
    assert!(matches!(err, Error::TagExists { .. }), "{err:?}");
}

#[test]
fn push_tag_sends_the_tag_to_a_remote_and_names_a_failure() {
    let dir = repo();
    let remote = tempfile::tempdir().unwrap();
    git(remote.path(), &["init", "-q", "--bare"]);
    git(
        dir.path(),
        &[
            "remote",
            "add",
            "origin",
            &remote.path().display().to_string(),
        ],
    );
    commit(dir.path(), "a.txt", "a");
    let checkout = Checkout::open(dir.path()).unwrap();
    let release = checkout.tag_next_release().unwrap();
    push_tag(checkout.root(), "origin", &release.tag()).unwrap();
    assert_eq!(
        git(remote.path(), &["rev-parse", "0.1^{commit}"]),
        git(dir.path(), &["rev-parse", "HEAD"])
    );
    let err = push_tag(checkout.root(), "nowhere", "0.1").unwrap_err();
    assert!(matches!(err, Error::Push { .. }), "{err:?}");
    assert!(err.to_string().contains("nowhere"), "{err}");
}
