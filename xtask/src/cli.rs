//! The command line. The doc comments here are the help text: `cargo xtask --help`.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

/// Build, push and deploy the SSE streaming Lambda (container image, Terraform).
///
/// Every command reads infrastructure/environments.toml and acts on one environment.
/// The default environment is `local`, the stack on this machine, so a bare command
/// never touches a real AWS account.
#[derive(Debug, Parser)]
#[command(
    name = "cargo xtask",
    bin_name = "cargo xtask",
    version,
    propagate_version = true
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
    #[command(flatten)]
    pub global: Global,
}

#[derive(Debug, Args, Clone)]
pub struct Global {
    /// Environment to act on, a table in the settings file.
    #[arg(
        long = "env",
        global = true,
        default_value = "local",
        value_name = "NAME"
    )]
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
    /// Build the Lambda image with docker buildx and push it to the environment's ECR repository.
    ///
    /// Skips the build when the content tag is already in the registry.
    ///
    /// Example: cargo xtask image --env prod
    Image(ImageArgs),
    /// Terraform init, ECR bootstrap on first deploy, image, then plan and apply pinned to the digest.
    ///
    /// Example: cargo xtask deploy --env prod
    Deploy(DeployArgs),
    /// Deploy an image that is already in the registry (default: the previous one), with no build.
    ///
    /// Example: cargo xtask rollback --env prod --to src-0123456789ab
    Rollback(RollbackArgs),
    /// Prepare an AWS account for deploys from CI (once, with administrator credentials).
    ///
    /// Applies the account layer (infrastructure/bootstrap): the Terraform state bucket, the
    /// GitHub OIDC provider, the deploy role CI assumes and the execution role CI may only
    /// pass. The first run keeps its state locally, then moves it into the bucket it created.
    /// It ends by printing the role ARN to set as the GitHub environment's AWS_DEPLOY_ROLE_ARN.
    /// Running it again changes nothing.
    ///
    /// Example: cargo xtask bootstrap --env prod
    Bootstrap(BootstrapArgs),
    /// Start, stop or inspect the local stack (Docker engine, registry, AWS emulator, Terraform).
    ///
    /// Example: cargo xtask local up
    Local(LocalArgs),
    /// Everything CI checks, in order: format, lint, tests, linters, end-to-end on the local stack.
    ///
    /// Example: cargo xtask ci
    Ci(CiArgs),
    /// Time `image` on the local stack: clean build (the baseline), registry-cache rebuild,
    /// local-cache rebuild and skip, in the same run; results go to target/bench/.
    ///
    /// Example: cargo xtask bench --runs 3
    Bench(BenchArgs),
}

#[derive(Debug, Args, Clone, Default)]
pub struct ImageArgs {
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
pub struct DeployArgs {
    #[command(flatten)]
    pub image: ImageArgs,
}

#[derive(Debug, Args, Clone, Default)]
pub struct RollbackArgs {
    /// Image to deploy: a tag in the repository or a sha256 digest. Default: the `previous` tag.
    #[arg(long, value_name = "TAG|DIGEST")]
    pub to: Option<String>,
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

#[derive(Debug, Args)]
pub struct LocalArgs {
    #[command(subcommand)]
    pub action: LocalAction,
}

#[derive(Debug, Subcommand, Clone, Copy, PartialEq, Eq)]
pub enum LocalAction {
    /// Install what is missing and start every component; a no-op when all are healthy.
    Up,
    /// Stop the processes `up` started. Registry data stays; emulator state is lost.
    Down,
    /// Say what runs, where, and whether it is healthy.
    Status,
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
