//! The content tag (`src-<12 hex>`) decides whether `image` builds at all, so anything that
//! changes the image must change it: here, a new base-image digest pinned in the Dockerfile's
//! `ARG` default, and a changed build arg. Each case runs `facts::git` on a throw-away git
//! repository, as xtask does on the real one.

use std::path::{Path, PathBuf};

use xshell::{Shell, cmd};
use xtask::facts;
use xtask::settings::{Environment, Settings};

const PINNED_A: &str = "sha256:8d9d0b8bcf6506481eae4907c18f5e3e7902e629f5f6d684f9e7c32e85e3ddf0";
const PINNED_B: &str = "sha256:1111111111111111111111111111111111111111111111111111111111111111";

fn dockerfile(digest: &str) -> String {
    format!(
        "ARG PYTHON_IMAGE=python:3.13-slim@{digest}\nFROM ${{PYTHON_IMAGE}}\nCOPY handler.py .\n"
    )
}

/// A git repository with `app/Dockerfile` and `app/handler.py`, committed.
struct Repo {
    dir: PathBuf,
    sh: Shell,
}

impl Repo {
    fn new(name: &str) -> Repo {
        let dir =
            std::env::temp_dir().join(format!("xtask-content-tag-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("app")).unwrap();
        let sh = Shell::new().unwrap();
        sh.change_dir(&dir);
        cmd!(sh, "git init --quiet").run().unwrap();
        let repo = Repo { dir, sh };
        repo.write("app/handler.py", "print('hello')\n");
        repo.write("app/Dockerfile", &dockerfile(PINNED_A));
        repo.commit("first");
        repo
    }

    fn write(&self, path: &str, text: &str) {
        std::fs::write(self.dir.join(path), text).unwrap();
    }

    fn commit(&self, message: &str) {
        let sh = &self.sh;
        cmd!(sh, "git add --all").quiet().run().unwrap();
        cmd!(
            sh,
            "git -c user.name=test -c user.email=test@example.com commit --quiet -m {message}"
        )
        .quiet()
        .run()
        .unwrap();
    }

    fn content_tag(&self, env: &Environment) -> String {
        let (_, contents) = facts::git(&self.sh, env).unwrap();
        let content = &contents[&env.functions[0].name];
        assert!(!content.dirty, "everything is committed");
        format!("src-{}", &content.hash[..12])
    }
}

impl Drop for Repo {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn environment(repo: &Repo, build_args: &str) -> Environment {
    let text = format!(
        r#"
project = "app"
[functions.app]
build_context = "app"
dockerfile = "app/Dockerfile"
invoke_mode = "BUFFERED"
[defaults]
region = "eu-west-1"
[defaults.terraform]
dir = "infrastructure/terraform"
lock_timeout = "5m"
[defaults.terraform.backend]
bucket = "{{env}}-state"
[defaults.bootstrap]
dir = "infrastructure/bootstrap"
[environments.prod]
account_id = "222222222222"
{build_args}
"#
    );
    Settings::parse_in(&repo.dir, Path::new("environments.toml"), &text)
        .unwrap()
        .environments
        .remove("prod")
        .unwrap()
}

#[test]
fn a_new_pinned_base_digest_in_the_dockerfile_changes_the_content_tag() {
    let repo = Repo::new("digest");
    let env = environment(&repo, "");
    let before = repo.content_tag(&env);
    assert!(before.starts_with("src-") && before.len() == 16, "{before}");
    assert_eq!(
        repo.content_tag(&env),
        before,
        "the same tree hashes the same"
    );

    repo.write("app/Dockerfile", &dockerfile(PINNED_B));
    repo.commit("bump the python base");
    let after = repo.content_tag(&env);
    assert_ne!(after, before, "a new base digest must rebuild the image");

    // A file outside the build context and the Dockerfile changes nothing.
    repo.write("README.md", "notes\n");
    repo.commit("docs");
    assert_eq!(repo.content_tag(&env), after);
}

#[test]
fn a_changed_build_arg_changes_the_content_tag() {
    let repo = Repo::new("args");
    let pinned = repo.content_tag(&environment(&repo, ""));
    let stand_in = environment(
        &repo,
        "[environments.prod.build_args]\nPYTHON_IMAGE = \"python:3.13-slim\"\n",
    );
    let other = environment(
        &repo,
        "[environments.prod.build_args]\nPYTHON_IMAGE = \"python:3.12-slim\"\n",
    );
    let with_stand_in = repo.content_tag(&stand_in);
    assert_ne!(
        with_stand_in, pinned,
        "overriding the base must not reuse the pinned image's tag"
    );
    assert_ne!(repo.content_tag(&other), with_stand_in);
    assert_eq!(repo.content_tag(&stand_in), with_stand_in);
}
