//! What the credential chain and the HTTP client read (the profile and the shared files,
//! IMDS, the endpoint overrides, the proxy variables), read once per `Aws` to name it when a
//! call fails.

/// The variables that send requests through a proxy, in hyper-util's order of precedence.
const PROXY_VARS: &str = "HTTPS_PROXY https_proxy HTTP_PROXY http_proxy ALL_PROXY all_proxy \
                          NO_PROXY no_proxy";

#[derive(Debug, Clone, Default)]
pub struct Setup {
    pub region: String,
    /// The local stack's endpoint and where it is set.
    pub local: Option<(String, String)>,
    pub profile: Profile,
    pub config_file: String,
    pub credentials_file: String,
    pub imds_disabled: bool,
    /// In GitHub Actions, credentials come from configure-aws-credentials.
    pub github: bool,
    /// `AWS_ENDPOINT_URL*` and the proxy variables that are set (credentials in them removed).
    pub vars: Vec<(String, String)>,
}

/// The profile the chain selects: `AWS_PROFILE`'s (`explicit`) or `default`, and every
/// profile the shared files define.
#[derive(Debug, Clone, Default)]
pub struct Profile {
    pub name: String,
    pub explicit: bool,
    pub exists: bool,
    pub sso: bool,
    pub known: Vec<String>,
}

/// How a request reaches its endpoint: directly, through a proxy (its URL), or at an
/// override (where it is set: a variable, or the settings).
#[derive(Debug, Clone, PartialEq)]
pub enum Via {
    Direct,
    Proxy(String),
    Override(String),
}

impl Setup {
    /// As the SDK reads them. The local stack's fixed keys need no profile.
    pub async fn read(region: &str, local: Option<(String, String)>) -> Setup {
        let var = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
        let mut vars: Vec<_> = std::env::vars()
            .filter(|(k, v)| k.starts_with("AWS_ENDPOINT_URL") && !v.is_empty())
            .collect();
        vars.sort();
        let proxies = PROXY_VARS
            .split(' ')
            .filter_map(|k| Some((k.to_string(), var(k)?)));
        vars.extend(proxies.map(|(k, v)| (k, without_userinfo(&v))));
        let profile = match local {
            Some(_) => Profile::default(),
            None => read_profile(var("AWS_PROFILE").is_some()).await,
        };
        let file = |key, default: &str| var(key).unwrap_or_else(|| default.into());
        Setup {
            region: region.to_string(),
            local,
            profile,
            config_file: file("AWS_CONFIG_FILE", "~/.aws/config"),
            credentials_file: file("AWS_SHARED_CREDENTIALS_FILE", "~/.aws/credentials"),
            imds_disabled: var("AWS_EC2_METADATA_DISABLED")
                .is_some_and(|v| v.eq_ignore_ascii_case("true")),
            github: var("GITHUB_ACTIONS").is_some_and(|v| v == "true"),
            vars,
        }
    }

    /// `AWS_PROFILE` names a profile that the shared files do not have.
    pub fn missing_profile(&self) -> bool {
        self.local.is_none() && self.profile.explicit && !self.profile.exists
    }

    fn var(&self, key: &str) -> Option<&str> {
        self.vars.iter().find(|(k, _)| k == key).map(|(_, v)| &**v)
    }

    /// Where a call to `service` (or to `url`) goes, and through what.
    pub fn endpoint(&self, service: &str, url: Option<&str>) -> (String, Via) {
        let own = format!("AWS_ENDPOINT_URL_{}", service.to_ascii_uppercase());
        let set = [&*own, "AWS_ENDPOINT_URL"]
            .into_iter()
            .find(|k| self.var(k).is_some());
        match (&self.local, url, set) {
            (Some((url, set_by)), _, _) => (url.clone(), Via::Override(set_by.clone())),
            (None, Some(url), _) => (url.to_string(), self.proxy(url)),
            (None, None, Some(key)) => (
                self.var(key).unwrap_or_default().into(),
                Via::Override(key.into()),
            ),
            (None, None, None) => {
                let host = if service == "ecr" { "api.ecr" } else { service };
                let url = format!("https://{host}.{}.amazonaws.com", self.region);
                (url.clone(), self.proxy(&url))
            }
        }
    }

    /// The proxy hyper-util picks for `url`, if any.
    fn proxy(&self, url: &str) -> Via {
        let keys = match url.starts_with("https://") {
            true => ["HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy"],
            false => ["HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy"],
        };
        let bypass = self.var("NO_PROXY").or(self.var("no_proxy"));
        match keys.iter().find_map(|k| self.var(k)) {
            Some(_) if bypass.is_some_and(|list| no_proxy(list, host(url))) => Via::Direct,
            Some(proxy) => Via::Proxy(proxy.to_string()),
            None => Via::Direct,
        }
    }

    /// `set: HTTPS_PROXY=…, NO_PROXY=…`, or that none is set.
    pub fn proxies(&self) -> String {
        let set = self
            .vars
            .iter()
            .filter(|(k, _)| PROXY_VARS.split(' ').any(|p| p == k));
        let set: Vec<_> = set.map(|(k, v)| format!("{k}={v}")).collect();
        match set.is_empty() {
            true => "no proxy variable set".into(),
            false => format!("set: {}", set.join(", ")),
        }
    }
}

async fn read_profile(explicit: bool) -> Profile {
    // `Default` is the SDK's own: the real file system and environment, and the default
    // file locations (or AWS_CONFIG_FILE / AWS_SHARED_CREDENTIALS_FILE).
    let (fs, env) = (Default::default(), Default::default());
    let Ok(set) = aws_config::profile::load(&fs, &env, &Default::default(), None).await else {
        // A file that does not parse: the chain reports it itself.
        return Profile {
            explicit,
            exists: true,
            ..Profile::default()
        };
    };
    let name = set.selected_profile().to_string();
    let found = set.get_profile(&name);
    let sso = found.is_some_and(|p| p.get("sso_session").or(p.get("sso_start_url")).is_some());
    let mut known: Vec<String> = set.profiles().map(String::from).collect();
    known.sort();
    Profile {
        exists: found.is_some(),
        sso,
        name,
        explicit,
        known,
    }
}

/// `host[:port]` of a URL, without scheme or path.
pub fn host(url: &str) -> &str {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    rest.split('/').next().unwrap_or(rest)
}

/// `NO_PROXY` as curl and hyper-util read it: `*`, or hosts and domains (a leading dot or
/// not) that match the host or a parent domain.
fn no_proxy(list: &str, hostport: &str) -> bool {
    let host = hostport.rsplit_once(':').map_or(hostport, |(h, _)| h);
    let mut entries = list.split(',').map(|e| e.trim().trim_start_matches('.'));
    let parent = |e: &str| host.strip_suffix(e).is_some_and(|r| r.ends_with('.'));
    entries.any(|e| !e.is_empty() && (e == "*" || host == e || parent(e)))
}

/// A proxy URL without its `user:password@`.
pub fn without_userinfo(url: &str) -> String {
    let (scheme, rest) = url.split_once("://").unwrap_or(("", url));
    let host = rest.rsplit_once('@').map_or(rest, |(_, h)| h);
    match scheme {
        "" => host.to_string(),
        _ => format!("{scheme}://{host}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proxy_credentials_never_show_and_no_proxy_matches_domains() {
        assert_eq!(
            without_userinfo("http://u:secret@proxy:3128"),
            "http://proxy:3128"
        );
        assert_eq!(without_userinfo("u:secret@proxy:3128"), "proxy:3128");
        assert_eq!(without_userinfo("http://proxy:3128"), "http://proxy:3128");
        assert!(no_proxy("*", "sts.eu-west-1.amazonaws.com"));
        assert!(no_proxy(
            "localhost, .amazonaws.com",
            "sts.eu-west-1.amazonaws.com:443"
        ));
        assert!(no_proxy("amazonaws.com", "sts.eu-west-1.amazonaws.com"));
        assert!(!no_proxy(
            "zonaws.com,localhost",
            "sts.eu-west-1.amazonaws.com"
        ));
    }
}
