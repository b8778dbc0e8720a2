//! The command line. The doc comments here are the help text: `cargo xtask --help`.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

/// Build, push and deploy the container Lambdas of this repository with Terraform.
///
/// Every command reads infrastructure/environments.toml and acts on one environment and its
/// functions ([functions.NAME] tables). The default environment is `local`, the stack on this
/// machine, so a bare command never touches a real AWS account.
#[derive(Debug, Parser)]
#[command(name = "cargo xtask", bin_name = "cargo xtask")]
#[command(version, propagate_version = true)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
    #[command(flatten)]
    pub global: Global,
}

#[derive(Debug, Args, Clone)]
pub struct Global {
    /// Environment to act on, a table in the settings file.
    #[arg(long = "env", global = true)]
    #[arg(default_value = "local", value_name = "NAME")]
    pub env: String,
    /// Settings file [default: infrastructure/environments.toml in the repository].
    #[arg(long, global = true, env = "XTASK_CONFIG", value_name = "PATH")]
    pub config: Option<PathBuf>,
    /// Print the plan (every command line, in order) and change nothing.
    #[arg(long, global = true)]
    pub dry_run: bool,
    /// Print one machine-readable JSON result on stdout; progress goes to stderr.
    #[arg(long, global = true)]
    pub json: bool,
    /// More output: the facts gathered and every command as it starts.
    #[arg(short, long, global = true)]
    pub verbose: bool,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Build every function's image in one docker buildx bake and push each to its repository.
    ///
    /// Functions whose content tag is already in the registry are skipped, one by one.
    ///
    /// Example: cargo xtask image --env preprod --function web
    Image(ImageArgs),
    /// Terraform init, the repositories on a first deploy, the images, then plan and apply
    /// with every function pinned to its digest.
    ///
    /// Example: cargo xtask deploy --env preprod
    Deploy(ImageArgs),
    /// Deploy images already in the registry (default: each function's previous one), with no
    /// build; functions not named by --function stay as they are.
    ///
    /// Example: cargo xtask rollback --env prod --function web --to src-0123456789ab
    Rollback(RollbackArgs),
    /// Deploy exactly the digests another environment runs: each function's `live` image is
    /// copied registry to registry (no build), checked to be that digest, scanned, applied
    /// and tagged `promoted-from-<source>-<time>`.
    ///
    /// Example: cargo xtask promote --from preprod --to prod
    Promote(PromoteArgs),
    /// Prepare an AWS account for deploys from CI (once, with administrator credentials).
    ///
    /// Applies the account layer (infrastructure/bootstrap): the Terraform state bucket, the
    /// GitHub OIDC provider, the deploy role CI assumes and the execution roles CI may only
    /// pass; the first run's local state then moves into the new bucket. It prints the role
    /// ARN for the GitHub environment's AWS_DEPLOY_ROLE_ARN. A second run changes nothing.
    ///
    /// Example: cargo xtask bootstrap --env prod
    Bootstrap(BootstrapArgs),
    /// Start, stop or inspect the local stack (Docker engine, registry, AWS emulator, Terraform).
    ///
    /// Example: cargo xtask local up
    #[command(subcommand)]
    Local(LocalAction),
    /// Everything CI checks, in order: format, lint, tests, linters, end-to-end on the local stack.
    ///
    /// Example: cargo xtask ci
    Ci(CiArgs),
    /// Time `image` (or `deploy`, see --suite) on the local stack: a clean bake of every
    /// function against the same images built one by one, registry-cache and warm rebuilds,
    /// and the skip; results go to target/bench/.
    ///
    /// Example: cargo xtask bench --runs 3
    Bench(BenchArgs),
}

#[derive(Debug, Args, Clone, Default)]
pub struct ImageArgs {
    /// Only this function (repeat for several; default: every function of the environment).
    #[arg(long = "function", value_name = "NAME")]
    pub functions: Vec<String>,
    /// Build and push even when the content tag is already in the registry.
    #[arg(long)]
    pub force: bool,
    /// Allow a dirty working tree in a protected environment (the image gets a `dirty-` tag).
    #[arg(long)]
    pub allow_dirty: bool,
    /// Do not run the pushed image's smoke test.
    #[arg(long)]
    pub no_smoke: bool,
    /// Apply without asking, in a protected environment outside CI (the first run's ECR
    /// repository bootstrap, and for `deploy` the Terraform apply).
    #[arg(long, short = 'y')]
    pub yes: bool,
}

#[derive(Debug, Args, Clone, Default)]
pub struct RollbackArgs {
    /// Image to deploy: a tag in each function's repository, or a sha256 digest (with one
    /// --function). Default: the `previous` tag.
    #[arg(long, value_name = "TAG|DIGEST")]
    pub to: Option<String>,
    /// Only this function (repeat for several; default: every function).
    #[arg(long = "function", value_name = "NAME")]
    pub functions: Vec<String>,
    /// Apply without asking, in a protected environment outside CI.
    #[arg(long, short = 'y')]
    pub yes: bool,
}

#[derive(Debug, Args, Clone, Default)]
pub struct PromoteArgs {
    /// The environment whose live images are promoted.
    #[arg(long, value_name = "ENV")]
    pub from: String,
    /// The environment they are deployed to (it must set promote_from = "<from>").
    #[arg(long, value_name = "ENV")]
    pub to: String,
    /// Only this function (repeat for several; default: every function of the target).
    #[arg(long = "function", value_name = "NAME")]
    pub functions: Vec<String>,
    /// Apply without asking, in a protected environment outside CI.
    #[arg(long, short = 'y')]
    pub yes: bool,
}

#[derive(Debug, Args, Clone, Default)]
pub struct BootstrapArgs {
    /// Apply without asking, in a protected environment outside CI.
    #[arg(long, short = 'y')]
    pub yes: bool,
}

#[derive(Debug, Subcommand, Clone, PartialEq, Eq)]
pub enum LocalAction {
    /// Start every service (registry, AWS emulator, Lambda emulator) on the Docker engine,
    /// building offline stand-ins where nothing can be pulled; only checks when all are healthy.
    Up,
    /// Remove every container, network and volume of the stack (images stay).
    Down,
    /// Each service, its image digest and its health, and each served function.
    Status,
    /// A function's log as Lambda keeps it: its container's output and the emulator's lines
    /// for it (`Task timed out after N.NN seconds`), in time order.
    Logs {
        /// The Lambda function's name, as `local status` lists it.
        function: String,
    },
}

#[derive(Debug, Args, Clone)]
pub struct BenchArgs {
    /// Rounds of every scenario; the report gives the median of each.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..=20))]
    pub runs: u32,
    /// `image`: the four image scenarios. `deploy`: a no-change `deploy` against a bare
    /// `terraform plan` with the same variables, side by side.
    #[arg(long, value_enum, default_value_t = BenchSuite::Image)]
    pub suite: BenchSuite,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum BenchSuite {
    #[default]
    Image,
    Deploy,
}

#[derive(Debug, Args, Clone, Default)]
pub struct CiArgs {
    /// Skip the end-to-end tests (refused in CI). The local stack still comes up: terraform
    /// validate uses its offline provider mirror.
    #[arg(long)]
    pub no_e2e: bool,
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::*;

    #[test]
    fn cli_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn env_defaults_to_local() {
        let cli = Cli::try_parse_from(["xtask", "deploy"]).unwrap();
        assert_eq!(cli.global.env, "local");
        assert!(!cli.global.dry_run);
        let cli = Cli::try_parse_from(["xtask", "image", "--env", "prod", "--dry-run"]).unwrap();
        assert_eq!(cli.global.env, "prod");
        assert!(cli.global.dry_run);
    }

    #[test]
    fn every_command_has_an_example() {
        let cmd = Cli::command();
        for sub in cmd.get_subcommands() {
            let help = sub
                .get_long_about()
                .map(ToString::to_string)
                .unwrap_or_default();
            assert!(
                help.contains("Example: cargo xtask"),
                "{} has no example",
                sub.get_name()
            );
        }
    }
}
