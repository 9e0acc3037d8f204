//! The project commands: `project-version`, `release` and `build-dags` (the work
//! itself is in the `riffle-project` crate; this module reads the arguments and
//! prints).
//!
//! ```text
//! riffle project-version                    # 1.4, or 1.5.dev3+g1a2b3c4d, ... from git
//! riffle release --push origin              # tag the next minor release and push it
//! riffle build                              # tests (build/junit.xml), release binary, image, DAGs
//! riffle build-dags                         # build/dags/: KubernetesPodOperator DAGs
//! riffle build-dags --operator bash --out dags   # BashOperator DAGs running this binary
//! riffle build-image                        # build/image.tar: OCI layout + docker load archive
//! riffle build-image --push registry.example/team/app
//! riffle build-manifests wordcount --processes 3   # build/manifests/wordcount.yaml
//! riffle new my-project                     # a project that builds and passes its tests
//! riffle deploy --env prod                  # push build/image.tar, copy build/dags/ (riffle.toml)
//! ```

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, bail};
use riffle_pipeline::Runtime;
use riffle_project::dags::{self, DagOptions, Operator};
use riffle_project::deploy::{self, Settings};
use riffle_project::git::{self, Checkout};
use riffle_project::image::{self, ImageSpec, push::PushTarget};
use riffle_project::manifests::{self, ClusterSpec, RecoverySpec};
use riffle_project::scaffold::{self, NewProject};
use riffle_project::version::name_safe;

use crate::App;

/// The project folder (any folder inside its git repository).
#[derive(Debug, Clone, clap::Args, Default)]
pub struct ProjectDir {
    /// The project folder (default: the current folder).
    #[arg(long = "project", value_name = "DIR")]
    pub project: Option<PathBuf>,
}

impl ProjectDir {
    fn path(&self) -> PathBuf {
        self.project.clone().unwrap_or_else(|| PathBuf::from("."))
    }
}

/// `riffle project-version [--json]`
#[derive(Debug, clap::Args)]
pub struct VersionArgs {
    /// Print the tag, commit count, commit and dirty fingerprint too, as JSON.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub dir: ProjectDir,
}

/// `riffle release [--push REMOTE]`
#[derive(Debug, clap::Args)]
pub struct ReleaseArgs {
    /// Push the new tag to this remote (a name such as `origin`, or a URL).
    #[arg(long, value_name = "REMOTE")]
    pub push: Option<String>,
    #[command(flatten)]
    pub dir: ProjectDir,
}

/// How `build-dags` tasks run the binary.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum OperatorKind {
    /// KubernetesPodOperator in the project's image.
    Kubernetes,
    /// BashOperator running the binary on the Airflow worker.
    Bash,
}

/// `riffle build-dags [--workflow ID ...] [--operator kubernetes|bash] [--out DIR]`
#[derive(Debug, clap::Args)]
pub struct BuildDagsArgs {
    /// Only these pipelines (repeatable; each must have a schedule). Default: every
    /// pipeline with a schedule.
    #[arg(long, value_name = "ID")]
    pub workflow: Vec<String>,
    /// How tasks run the binary.
    #[arg(long, value_enum, default_value_t = OperatorKind::Kubernetes)]
    pub operator: OperatorKind,
    /// The DAG folder to write (replaced whole). Default: build/dags in the project.
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
    /// The version in DAG ids (default: from git, as `riffle project-version`).
    #[arg(long = "project-version", value_name = "VERSION")]
    pub version: Option<String>,
    /// The image tasks run in (kubernetes). Default: NAME:VERSION, NAME the app's name.
    #[arg(long, value_name = "REF")]
    pub image: Option<String>,
    /// The pods' Kubernetes namespace (kubernetes).
    #[arg(long, value_name = "NS")]
    pub namespace: Option<String>,
    /// The Kubernetes secret holding the pipelines' secrets (default: APP-PIPELINE).
    #[arg(long, value_name = "NAME")]
    pub secret: Option<String>,
    /// The binary tasks run (bash). Default: this binary.
    #[arg(long, value_name = "PATH")]
    pub binary: Option<PathBuf>,
    /// The folder tasks run in (bash): its .riffle/ holds the stores. Default: the
    /// project folder.
    #[arg(long, value_name = "DIR")]
    pub workdir: Option<PathBuf>,
    /// The Airflow Variable holding the config environment.
    #[arg(long, value_name = "NAME", default_value = "riffle_env")]
    pub env_variable: String,
    /// An environment variable for every task, as KEY=VALUE (repeatable; written in
    /// the DAG file, so never a secret).
    #[arg(long = "env", value_name = "KEY=VALUE", value_parser = super::run::parse_param)]
    pub env: Vec<(String, String)>,
    /// The start date of pipelines whose schedule has none (default: today, UTC).
    #[arg(long, value_name = "DATE")]
    pub start_date: Option<String>,
    #[command(flatten)]
    pub dir: ProjectDir,
}

/// `riffle build [--profile P] [--bin NAME] [--project-version V] [--skip-tests]`
#[derive(Debug, clap::Args)]
pub struct BuildArgs {
    /// Cargo's profile for the binary.
    #[arg(long, default_value = "release")]
    pub profile: String,
    /// The binary to build, when the project has several.
    #[arg(long, value_name = "NAME")]
    pub bin: Option<String>,
    /// The version stamped in (default: from git, as `riffle project-version`).
    #[arg(long = "project-version", value_name = "VERSION")]
    pub version: Option<String>,
    /// Build without running the tests first.
    #[arg(long)]
    pub skip_tests: bool,
    #[command(flatten)]
    pub dir: ProjectDir,
}

/// Runs `riffle build`: the tests (a JUnit report in build/junit.xml), the
/// binary with the version stamped in, then that binary's own `build-image` and
/// `build-dags` (its pipelines, not this one's), all under build/.
pub fn build(args: &BuildArgs) -> anyhow::Result<ExitCode> {
    let project = absolute(&args.dir.path())?;
    let version = given_or_git(&args.version, &project, "the build stamps")?;
    let out = project.join("build");
    if args.skip_tests {
        println!("== tests skipped");
    } else {
        println!("== tests");
        let report = riffle_project::build::run_tests(&project, &out.join("junit.xml"))?;
        println!(
            "{} tests: {} failed, {} skipped; report {}",
            report.tests(),
            report.failures(),
            report.skipped(),
            out.join("junit.xml").display()
        );
    }
    println!("== binary ({} profile, version {version})", args.profile);
    let binary = riffle_project::build::build_binary(
        &project,
        &args.profile,
        &version,
        args.bin.as_deref(),
    )?;
    println!("{}", binary.display());
    let project_arg = project.to_string_lossy().into_owned();
    let binary_arg = binary.to_string_lossy().into_owned();
    for (what, extra) in [
        (
            "image",
            vec!["build-image", "--binary", binary_arg.as_str()],
        ),
        ("DAGs", vec!["build-dags"]),
    ] {
        println!("== {what}");
        let status = std::process::Command::new(&binary)
            .args(&extra)
            .args([
                "--project-version",
                version.as_str(),
                "--project",
                project_arg.as_str(),
            ])
            .current_dir(&project)
            .status()
            .with_context(|| format!("cannot run {}", binary.display()))?;
        if !status.success() {
            bail!(
                "`{} {}` failed ({status}); see its message above",
                binary.display(),
                extra[0]
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `riffle build-image [--binary PATH] [--out FILE] [--push REGISTRY/REPO]`
#[derive(Debug, clap::Args)]
pub struct BuildImageArgs {
    /// The binary to put in the image (default: this binary).
    #[arg(long, value_name = "PATH")]
    pub binary: Option<PathBuf>,
    /// The image tar to write. Default: build/image.tar in the project.
    #[arg(long, value_name = "FILE")]
    pub out: Option<PathBuf>,
    /// The version (label and tag; default: from git, as `riffle project-version`).
    #[arg(long = "project-version", value_name = "VERSION")]
    pub version: Option<String>,
    /// The name: the binary's path /usr/local/bin/NAME and the image's (default: the app's).
    #[arg(long, value_name = "NAME")]
    pub name: Option<String>,
    /// The CA bundle to copy into the image.
    #[arg(
        long,
        value_name = "FILE",
        default_value = "/etc/ssl/certs/ca-certificates.crt"
    )]
    pub ca_certs: PathBuf,
    /// The time zone database to copy into the image.
    #[arg(long, value_name = "DIR", default_value = "/usr/share/zoneinfo")]
    pub zoneinfo: PathBuf,
    /// Also push it to this registry: [http(s)://]REGISTRY/REPO[:TAG].
    #[arg(long, value_name = "REGISTRY/REPO", value_parser = PushTarget::parse)]
    pub push: Option<PushTarget>,
    #[command(flatten)]
    pub dir: ProjectDir,
}

/// Runs `riffle build-image`.
pub fn build_image(app: &App, args: &BuildImageArgs) -> anyhow::Result<ExitCode> {
    let project = args.dir.path();
    let from_git = git::project_version(&project);
    let (version, commit) = match (&args.version, from_git) {
        (Some(v), _) if v.trim().is_empty() => bail!("--project-version is empty"),
        (Some(v), git) => (v.clone(), git.ok().map(|g| g.commit)),
        (None, Ok(g)) => (g.version(), Some(g.commit)),
        (None, Err(e)) => {
            return Err(anyhow::Error::new(e)
                .context("the image carries the project's version (or give --project-version)"));
        }
    };
    let binary = match &args.binary {
        Some(b) => b.clone(),
        None => std::env::current_exe().context("cannot find this binary's path")?,
    };
    let name = args.name.clone().unwrap_or_else(|| app.name().to_string());
    if name.is_empty() || name.contains('/') {
        bail!("--name {name:?} must be a plain file name");
    }
    let mut spec = ImageSpec::new(&name, &binary, &version);
    spec.commit = commit;
    spec.ca_certs = args.ca_certs.clone();
    spec.zoneinfo = args.zoneinfo.clone();
    let built = image::build_image(&spec)?;
    let out = args
        .out
        .clone()
        .unwrap_or_else(|| project.join("build").join("image.tar"));
    image::write_image(&out, &built)?;
    println!(
        "{}:{}  {}  {} bytes  {}",
        spec.repository(),
        built.tag,
        built.digest,
        built.archive.len(),
        out.display()
    );
    if let Some(target) = &args.push {
        let digest = image::push::push_image(&built, target)?;
        let tag = target.tag.clone().unwrap_or_else(|| built.tag.clone());
        println!(
            "pushed {}/{}:{tag}@{digest}",
            target.base, target.repository
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// `riffle build-manifests DATAFLOW --processes N [--workers W] [--recovery-size SIZE]`
#[derive(Debug, clap::Args)]
pub struct BuildManifestsArgs {
    /// The registered dataflow to run as a cluster.
    pub dataflow: String,
    /// Processes (pods of the StatefulSet).
    #[arg(long, default_value_t = 2)]
    pub processes: u32,
    /// Worker threads per process.
    #[arg(short = 'w', long, default_value_t = 1)]
    pub workers: u32,
    /// The image (default: APP:VERSION, as `build-image` tags it).
    #[arg(long, value_name = "REF")]
    pub image: Option<String>,
    /// The version in the default image tag (default: from git).
    #[arg(long = "project-version", value_name = "VERSION")]
    pub version: Option<String>,
    /// The objects' name (default: the flow's name).
    #[arg(long, value_name = "NAME")]
    pub name: Option<String>,
    /// The namespace written in the manifests.
    #[arg(long, value_name = "NS")]
    pub namespace: Option<String>,
    /// The port the processes talk on.
    #[arg(long, default_value_t = 2101)]
    pub port: u16,
    /// A parameter for the flow, as key=value (repeatable).
    #[arg(short = 'P', long = "param", value_parser = super::run::parse_param)]
    pub params: Vec<(String, String)>,
    /// Run with a recovery store on a ReadWriteMany volume of this size (e.g. 10Gi).
    #[arg(long, value_name = "SIZE")]
    pub recovery_size: Option<String>,
    /// The recovery volume's storage class.
    #[arg(long, value_name = "CLASS", requires = "recovery_size")]
    pub storage_class: Option<String>,
    /// The recovery store's partitions.
    #[arg(long, default_value_t = 4, requires = "recovery_size")]
    pub partitions: u32,
    /// The snapshot interval under recovery.
    #[arg(long, default_value = "10s", requires = "recovery_size")]
    pub snapshot_interval: String,
    /// The file to write. Default: build/manifests/DATAFLOW.yaml in the project.
    #[arg(long, value_name = "FILE")]
    pub out: Option<PathBuf>,
    #[command(flatten)]
    pub dir: ProjectDir,
}

/// Runs `riffle build-manifests`.
pub fn build_manifests(app: &App, args: &BuildManifestsArgs) -> anyhow::Result<ExitCode> {
    if !app.dataflows.contains_key(&args.dataflow) {
        let known: Vec<&str> = app.dataflows.keys().map(String::as_str).collect();
        bail!(
            "no dataflow named {:?}; registered: {}",
            args.dataflow,
            known.join(", ")
        );
    }
    let project = args.dir.path();
    let image = match &args.image {
        Some(image) => image.clone(),
        None => {
            let version = match &args.version {
                Some(v) => v.clone(),
                None => git::project_version(&project)
                    .context("the default image tag is the project's version (or give --image or --project-version)")?
                    .version(),
            };
            format!("{}:{}", app.name(), name_safe(&version))
        }
    };
    let mut spec = ClusterSpec::new(&args.dataflow, &image, args.processes);
    if let Some(name) = &args.name {
        spec.name = name.clone();
    }
    spec.workers = args.workers;
    spec.namespace = args.namespace.clone();
    spec.port = args.port;
    spec.params = args.params.clone();
    spec.recovery = args.recovery_size.as_ref().map(|size| RecoverySpec {
        size: size.clone(),
        storage_class: args.storage_class.clone(),
        partitions: args.partitions,
        snapshot_interval: args.snapshot_interval.clone(),
    });
    let yaml = manifests::render_manifests(&spec)?;
    let out = args.out.clone().unwrap_or_else(|| {
        project
            .join("build")
            .join("manifests")
            .join(format!("{}.yaml", spec.name))
    });
    if let Some(parent) = out.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent)
            .with_context(|| format!("cannot create {}", parent.display()))?;
    }
    let tmp = out.with_extension(format!("tmp-{}", std::process::id()));
    std::fs::write(&tmp, yaml)
        .and_then(|()| std::fs::rename(&tmp, &out))
        .with_context(|| format!("cannot write {}", out.display()))?;
    println!("{}", out.display());
    Ok(ExitCode::SUCCESS)
}

/// `riffle new NAME [--riffle DIR]`
#[derive(Debug, clap::Args)]
pub struct NewArgs {
    /// The project's name (package, binary and folder): a lower-case letter, then
    /// lower-case letters, digits, - or _.
    pub name: String,
    /// The folder to create (default: NAME in the current folder).
    #[arg(long, value_name = "DIR")]
    pub dir: Option<PathBuf>,
    /// The Riffle checkout the project depends on (default: the one this binary was
    /// built from).
    #[arg(long, value_name = "DIR")]
    pub riffle: Option<PathBuf>,
}

/// Runs `riffle new`.
pub fn new_project(args: &NewArgs) -> anyhow::Result<ExitCode> {
    let riffle = match &args.riffle {
        Some(dir) => absolute(dir)?,
        None => {
            let built_from = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
            built_from.canonicalize().unwrap_or(built_from)
        }
    };
    let dir = args
        .dir
        .clone()
        .unwrap_or_else(|| PathBuf::from(&args.name));
    scaffold::create_project(
        &dir,
        &NewProject {
            name: args.name.clone(),
            riffle,
        },
    )?;
    println!("created {} in {}", args.name, dir.display());
    println!("next: cd {} && cargo test", dir.display());
    Ok(ExitCode::SUCCESS)
}

/// `riffle deploy --env ENV [--image FILE] [--dags DIR]`
#[derive(Debug, clap::Args)]
pub struct DeployArgs {
    /// The environment of riffle.toml to deploy to.
    #[arg(long = "env", value_name = "ENV")]
    pub env: String,
    /// The image to push (written by build-image). Default: build/image.tar.
    #[arg(long, value_name = "FILE")]
    pub image: Option<PathBuf>,
    /// The DAG files to copy (written by build-dags). Default: build/dags.
    #[arg(long, value_name = "DIR")]
    pub dags: Option<PathBuf>,
    #[command(flatten)]
    pub dir: ProjectDir,
}

/// Runs `riffle deploy`: checks every setting first, then pushes the image, then
/// copies the DAGs (so no DAG ever names an image that is not in the registry).
pub fn deploy(args: &DeployArgs) -> anyhow::Result<ExitCode> {
    let project = args.dir.path();
    let settings = Settings::load(&project)?;
    let env = settings.env(&args.env)?;
    let repository = settings.require(&args.env, "image_repository", &env.image_repository)?;
    let folder = settings.require(&args.env, "dags_folder", &env.dags_folder)?;
    let target = PushTarget::parse(repository).map_err(|why| {
        anyhow::anyhow!("riffle.toml: [env.{}] image_repository: {why}", args.env)
    })?;
    let image_file = args
        .image
        .clone()
        .unwrap_or_else(|| project.join("build").join("image.tar"));
    let dags = args
        .dags
        .clone()
        .unwrap_or_else(|| project.join("build").join("dags"));
    let built = image::read_image(&image_file).context("run build-image first")?;
    let digest = image::push::push_image(&built, &target)?;
    println!(
        "pushed {}/{}:{}@{digest}",
        target.base, target.repository, built.tag
    );
    let copied = deploy::copy_dags(&dags, folder, &project)?;
    println!("copied {} DAG files to {folder}", copied.len());
    Ok(ExitCode::SUCCESS)
}

/// Runs `riffle project-version`.
pub fn project_version(args: &VersionArgs) -> anyhow::Result<ExitCode> {
    let version = git::project_version(&args.dir.path())?;
    if args.json {
        let json = serde_json::json!({
            "version": version.version(),
            "release": version.is_release(),
            "tag": version.tag,
            "commits_since_tag": version.commits_since_tag,
            "commit": version.commit,
            "dirty": version.dirty,
        });
        println!("{json}");
    } else {
        println!("{version}");
    }
    Ok(ExitCode::SUCCESS)
}

/// Runs `riffle release`.
pub fn release(args: &ReleaseArgs) -> anyhow::Result<ExitCode> {
    let checkout = Checkout::open(&args.dir.path())?;
    let release = checkout.tag_next_release()?;
    let tag = release.tag();
    println!("tagged {tag}");
    if let Some(remote) = &args.push {
        git::push_tag(checkout.root(), remote, &tag)?;
        println!("pushed {tag} to {remote}");
    }
    Ok(ExitCode::SUCCESS)
}

/// The version given with `--project-version`, else the project's from git; `what`
/// says what needs it ("the DAG ids carry") in the error.
fn given_or_git(given: &Option<String>, project: &Path, what: &str) -> anyhow::Result<String> {
    match given {
        Some(v) if v.trim().is_empty() => bail!("--project-version is empty"),
        Some(v) => Ok(v.clone()),
        None => Ok(git::project_version(project)
            .with_context(|| format!("{what} the project's version (or give --project-version)"))?
            .version()),
    }
}

fn absolute(path: &Path) -> anyhow::Result<PathBuf> {
    if path.is_absolute() {
        return Ok(path.to_path_buf());
    }
    Ok(std::env::current_dir()
        .context("cannot read the current folder")?
        .join(path))
}

/// Runs `riffle build-dags`.
pub fn build_dags(app: &App, args: &BuildDagsArgs) -> anyhow::Result<ExitCode> {
    let project = args.dir.path();
    let version = given_or_git(&args.version, &project, "the DAG ids carry")?;
    let operator = match args.operator {
        OperatorKind::Kubernetes => Operator::Kubernetes {
            image: args
                .image
                .clone()
                .unwrap_or_else(|| format!("{}:{}", app.name(), name_safe(&version))),
            namespace: args.namespace.clone(),
        },
        OperatorKind::Bash => Operator::Bash {
            binary: match &args.binary {
                Some(b) => absolute(b)?,
                None => std::env::current_exe().context("cannot find this binary's path")?,
            },
            workdir: absolute(args.workdir.as_deref().unwrap_or(&project))?,
        },
    };
    let mut options = DagOptions::new(app.name(), &version, operator);
    options.env_variable = args.env_variable.clone();
    options.env = args.env.clone();
    options.secret_name = args.secret.clone();
    if let Some(start) = &args.start_date {
        options.default_start = start
            .parse::<Runtime>()
            .with_context(|| format!("--start-date {start:?}"))?;
    }
    let mut files = Vec::new();
    if args.workflow.is_empty() {
        for pipeline in app.pipelines().iter() {
            if pipeline.schedule().is_none() {
                eprintln!("{}: no schedule, no DAG", pipeline.id());
                continue;
            }
            files.push(dags::render_dag(pipeline, &options)?);
        }
    } else {
        for id in &args.workflow {
            let pipeline = app.pipelines().lookup(id)?;
            files.push(dags::render_dag(pipeline, &options)?);
        }
    }
    let out = args
        .out
        .clone()
        .unwrap_or_else(|| project.join("build").join("dags"));
    dags::write_dag_folder(&out, &files)?;
    for file in &files {
        println!("{}  {}", file.dag_id, out.join(&file.file_name).display());
    }
    println!("{} DAGs in {}", files.len(), out.display());
    Ok(ExitCode::SUCCESS)
}
