//! `riffle new NAME`: a project that builds and whose tests pass at once.
//!
//! ```text
//! NAME/
//!   Cargo.toml          depends on Riffle's crates (by path to a Riffle checkout)
//!   Cargo.lock          Riffle's own, so the project builds with the versions Riffle was tested with
//!   src/main.rs         the app entry: registers the dataflow, the pipeline and the Flow
//!   src/lib.rs, src/dataflows.rs, src/pipelines.rs, src/flows.rs
//!                       one dataflow, one pipeline, one Flow, their unit tests
//!   tests/cli.rs        the binary run as a user runs it
//!   resources/words.txt the data the pipeline reads
//!   riffle.toml         the deployment environments, dev and prod
//!   README.md, .gitignore
//! ```
//!
//! The project is written into a new folder beside the target and renamed into place,
//! so a failure leaves nothing half-written.

use std::path::{Path, PathBuf};

/// What to generate.
#[derive(Debug, Clone)]
pub struct NewProject {
    /// The project's name: the package, the binary and the folder.
    pub name: String,
    /// The Riffle checkout the project depends on (its workspace root).
    pub riffle: PathBuf,
}

/// Why a project could not be made.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ScaffoldError {
    /// The name is not usable as a package and binary name.
    #[error(
        "project name {name:?} is not valid: use a lower-case letter, then lower-case letters, digits, - or _"
    )]
    InvalidName {
        /// The name given.
        name: String,
    },
    /// The target folder exists already.
    #[error("{dir} exists already; choose another name or folder")]
    Exists {
        /// The folder.
        dir: PathBuf,
    },
    /// The Riffle checkout is not one.
    #[error("{dir} is not a Riffle checkout (no crates/riffle-cli/Cargo.toml there)")]
    NotRiffle {
        /// The folder.
        dir: PathBuf,
    },
    /// Writing failed.
    #[error("cannot write {path}: {source}")]
    Write {
        /// The file or folder.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
}

const WORDS: &str = "apple banana cherry apple\ndate elder banana\n";
const GITIGNORE: &str = "/target\n/.riffle\n/build\n";

fn fill(template: &str, name: &str, deps: &str) -> String {
    template
        .replace("{{name}}", name)
        .replace("{{crate}}", &name.replace('-', "_"))
        .replace("{{deps}}", deps)
}

/// Checks a project name: `[a-z][a-z0-9_-]*`, at most 64 characters.
pub fn check_name(name: &str) -> Result<(), ScaffoldError> {
    let ok = name.len() <= 64
        && name.starts_with(|c: char| c.is_ascii_lowercase())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_');
    if ok {
        Ok(())
    } else {
        Err(ScaffoldError::InvalidName {
            name: name.to_string(),
        })
    }
}

/// The files of the project, as (relative path, content).
pub fn project_files(project: &NewProject) -> Vec<(&'static str, String)> {
    let riffle = project.riffle.display().to_string();
    let deps: String = ["riffle", "riffle-cli", "riffle-flow", "riffle-pipeline"]
        .iter()
        .map(|c| format!("{c} = {{ path = {:?} }}\n", format!("{riffle}/crates/{c}")))
        .collect();
    let name = project.name.as_str();
    vec![
        (
            "Cargo.toml",
            fill(include_str!("Cargo.toml.txt"), name, &deps),
        ),
        ("src/main.rs", fill(include_str!("main.rs.txt"), name, "")),
        ("src/lib.rs", fill(include_str!("lib.rs.txt"), name, "")),
        (
            "src/dataflows.rs",
            fill(include_str!("dataflows.rs.txt"), name, ""),
        ),
        (
            "src/pipelines.rs",
            fill(include_str!("pipelines.rs.txt"), name, ""),
        ),
        ("src/flows.rs", fill(include_str!("flows.rs.txt"), name, "")),
        (
            "tests/cli.rs",
            fill(include_str!("cli_test.rs.txt"), name, ""),
        ),
        ("resources/words.txt", WORDS.to_string()),
        (
            "riffle.toml",
            fill(include_str!("riffle.toml.txt"), name, ""),
        ),
        ("README.md", fill(include_str!("README.md.txt"), name, "")),
        (".gitignore", GITIGNORE.to_string()),
    ]
}

/// Writes the project into `dir` (which must not exist).
pub fn create_project(dir: &Path, project: &NewProject) -> Result<(), ScaffoldError> {
    check_name(&project.name)?;
    if dir.exists() {
        return Err(ScaffoldError::Exists {
            dir: dir.to_path_buf(),
        });
    }
    if !project
        .riffle
        .join("crates/riffle-cli/Cargo.toml")
        .is_file()
    {
        return Err(ScaffoldError::NotRiffle {
            dir: project.riffle.clone(),
        });
    }
    let parent = match dir.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let staging = parent.join(format!(".{}.new-{}", project.name, std::process::id()));
    let written = (|| -> Result<(), (PathBuf, std::io::Error)> {
        let at = |p: &Path, e| (p.to_path_buf(), e);
        std::fs::create_dir_all(&staging).map_err(|e| at(&staging, e))?;
        for (path, content) in project_files(project) {
            let file = staging.join(path);
            if let Some(folder) = file.parent() {
                std::fs::create_dir_all(folder).map_err(|e| at(folder, e))?;
            }
            std::fs::write(&file, content).map_err(|e| at(&file, e))?;
        }
        let lock = project.riffle.join("Cargo.lock");
        if lock.is_file() {
            std::fs::copy(&lock, staging.join("Cargo.lock")).map_err(|e| at(&lock, e))?;
        }
        std::fs::rename(&staging, dir).map_err(|e| at(dir, e))
    })();
    written.map_err(|(path, source)| {
        let _ = std::fs::remove_dir_all(&staging);
        ScaffoldError::Write { path, source }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_checked_and_templates_filled() {
        assert!(check_name("my-project").is_ok());
        for bad in ["", "My", "1x", "a b", "a/b"] {
            assert!(check_name(bad).is_err(), "{bad}");
        }
        let files = project_files(&NewProject {
            name: "my-proj".into(),
            riffle: "/src/riffle".into(),
        });
        let text: String = files.iter().map(|(_, c)| c.as_str()).collect();
        assert!(!text.contains("{{"), "a template left unfilled");
        assert!(text.contains("my_proj::dataflows::hello"));
        assert!(text.contains(r#"riffle-cli = { path = "/src/riffle/crates/riffle-cli" }"#));
    }

    #[test]
    fn an_existing_folder_is_refused_and_left_alone() {
        let dir = tempfile::tempdir().unwrap();
        let project = NewProject {
            name: "demo".into(),
            riffle: dir.path().to_path_buf(),
        };
        let err = create_project(dir.path(), &project).unwrap_err();
        assert!(err.to_string().contains("exists already"), "{err}");
        let err = create_project(&dir.path().join("demo"), &project).unwrap_err();
        assert!(err.to_string().contains("not a Riffle checkout"), "{err}");
        assert!(!dir.path().join("demo").exists());
    }
}
