//! The fake SCM: pull requests opened by refineries, reported merged once they are older than the
//! merge delay, merged at once on request.
//!
//! State lives in memory: a PR url the simulator has never seen (another process opened it, or
//! the simulator restarted) is taken as opened when first polled.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

/// The state of a pull request as `poll_pr` reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum PrState {
    Open,
    Merged,
}

impl PrState {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            PrState::Open => "open",
            PrState::Merged => "merged",
        }
    }
}

/// A repository as `<host>/<owner>/<repo>`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct Repo {
    pub(crate) host: String,
    pub(crate) owner: String,
    pub(crate) name: String,
}

impl Repo {
    /// `https://<host>/<owner>/<repo>[.git]` or `git@<host>:<owner>/<repo>[.git]`.
    pub(crate) fn from_git_url(url: &str) -> Option<Repo> {
        let rest = url.strip_prefix("https://").or_else(|| url.strip_prefix("git@"))?;
        let (host, path) = rest.split_once(['/', ':'])?;
        let path = path.trim_end_matches('/');
        let path = path.strip_suffix(".git").unwrap_or(path);
        let (owner, name) = path.split_once('/')?;
        let ok = |s: &str| !s.is_empty() && !s.contains(['/', ':', ' ']);
        (ok(host) && ok(owner) && ok(name)).then(|| Repo {
            host: host.to_owned(),
            owner: owner.to_owned(),
            name: name.to_owned(),
        })
    }

    /// `https://<host>/<owner>/<repo>/pull/<n>` → (repo, n).
    pub(crate) fn from_pr_url(url: &str) -> Option<(Repo, u64)> {
        let rest = url.strip_prefix("https://")?;
        let mut parts = rest.split('/');
        let (host, owner, name, pull, n) = (parts.next()?, parts.next()?, parts.next()?, parts.next()?, parts.next()?);
        if pull != "pull" || parts.next().is_some_and(|p| !p.is_empty()) {
            return None;
        }
        let n = n.parse().ok()?;
        let repo = Repo::from_git_url(&format!("https://{host}/{owner}/{name}"))?;
        Some((repo, n))
    }

    pub(crate) fn pr_url(&self, n: u64) -> String {
        format!("https://{}/{}/{}/pull/{n}", self.host, self.owner, self.name)
    }
}

#[derive(Debug)]
struct Pr {
    opened_at: Instant,
    merged: bool,
}

#[derive(Debug, Default)]
struct State {
    prs: HashMap<String, Pr>,
    next_number: HashMap<Repo, u64>,
}

/// The pull requests of every repository the simulated refineries work on.
#[derive(Debug)]
pub(crate) struct FakeScm {
    merge_delay: Duration,
    state: Mutex<State>,
}

/// What a poll saw.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Poll {
    pub(crate) state: PrState,
    /// This poll is the one that saw the PR merge.
    pub(crate) newly_merged: bool,
}

impl FakeScm {
    pub(crate) fn new(merge_delay: Duration) -> Self {
        Self { merge_delay, state: Mutex::new(State::default()) }
    }

    fn with<R>(&self, f: impl FnOnce(&mut State) -> R) -> R {
        let mut guard = self.state.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        f(&mut guard)
    }

    /// Opens a PR on the repository of `git_url`; its url, or `None` for an unusable git url.
    pub(crate) fn open(&self, git_url: &str) -> Option<String> {
        let repo = Repo::from_git_url(git_url)?;
        let now = Instant::now();
        Some(self.with(|s| {
            let n = s.next_number.entry(repo.clone()).or_insert(0);
            *n += 1;
            let url = repo.pr_url(*n);
            s.prs.insert(url.clone(), Pr { opened_at: now, merged: false });
            url
        }))
    }

    /// Reads a PR; `None` for a url that is not a pull request url.
    pub(crate) fn poll(&self, pr_url: &str) -> Option<Poll> {
        Repo::from_pr_url(pr_url)?;
        let now = Instant::now();
        let delay = self.merge_delay;
        Some(self.with(|s| {
            let pr = s.prs.entry(pr_url.to_owned()).or_insert(Pr { opened_at: now, merged: false });
            let newly_merged = !pr.merged && now.duration_since(pr.opened_at) >= delay;
            pr.merged |= newly_merged;
            Poll { state: if pr.merged { PrState::Merged } else { PrState::Open }, newly_merged }
        }))
    }

    /// Merges a PR of the repository of `git_url`: `Err` names why it refuses.
    pub(crate) fn merge(&self, pr_url: &str, git_url: &str) -> Result<bool, &'static str> {
        let (repo, _) = Repo::from_pr_url(pr_url).ok_or("not a pull request url")?;
        if Repo::from_git_url(git_url).as_ref() != Some(&repo) {
            return Err("pull request outside the rig's repository");
        }
        let now = Instant::now();
        Ok(self.with(|s| {
            let pr = s.prs.entry(pr_url.to_owned()).or_insert(Pr { opened_at: now, merged: false });
            let newly = !pr.merged;
            pr.merged = true;
            newly
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repositories_parse_from_https_and_ssh_urls() {
        let r = Repo::from_git_url("https://github.com/acme/app.git").unwrap();
        assert_eq!((r.host.as_str(), r.owner.as_str(), r.name.as_str()), ("github.com", "acme", "app"));
        assert_eq!(Repo::from_git_url("git@github.com:acme/app.git"), Some(r.clone()));
        assert_eq!(Repo::from_git_url("https://github.com/acme/app"), Some(r.clone()));
        assert_eq!(r.pr_url(3), "https://github.com/acme/app/pull/3");
        assert_eq!(Repo::from_pr_url("https://github.com/acme/app/pull/3"), Some((r, 3)));
        for bad in [
            "ftp://x/y/z",
            "https://github.com/acme",
            "https://github.com/acme/app/pulls/3",
            "https://github.com/acme/app/pull/x",
        ] {
            assert!(Repo::from_pr_url(bad).is_none() || Repo::from_git_url(bad).is_none(), "{bad}");
        }
        assert!(Repo::from_pr_url("https://github.com/acme/app/pull/3/files").is_none());
    }

    #[tokio::test(start_paused = true)]
    async fn a_pr_merges_after_the_delay_and_is_reported_newly_merged_once() {
        let scm = FakeScm::new(Duration::from_secs(60));
        let url = scm.open("https://github.com/acme/app.git").unwrap();
        assert_eq!(url, "https://github.com/acme/app/pull/1");
        assert_eq!(scm.open("https://github.com/acme/app.git").unwrap(), "https://github.com/acme/app/pull/2");
        assert_eq!(scm.poll(&url), Some(Poll { state: PrState::Open, newly_merged: false }));
        tokio::time::advance(Duration::from_secs(60)).await;
        assert_eq!(scm.poll(&url), Some(Poll { state: PrState::Merged, newly_merged: true }));
        assert_eq!(scm.poll(&url), Some(Poll { state: PrState::Merged, newly_merged: false }));
        assert_eq!(scm.poll("not a url"), None);
    }

    #[tokio::test(start_paused = true)]
    async fn merge_refuses_a_pr_of_another_repository() {
        let scm = FakeScm::new(Duration::from_secs(60));
        let url = scm.open("https://github.com/acme/app.git").unwrap();
        assert_eq!(scm.merge(&url, "https://github.com/acme/other.git"), Err("pull request outside the rig's repository"));
        assert_eq!(scm.merge(&url, "https://github.com/acme/app.git"), Ok(true));
        assert_eq!(scm.merge(&url, "https://github.com/acme/app.git"), Ok(false));
        assert_eq!(scm.poll(&url).map(|p| p.state), Some(PrState::Merged));
    }
}
