//! Fault injection: which simulated containers misbehave, how and when.
//!
//! A rule names a [`FaultKind`], an agent id pattern (`*` matches any run of characters), a
//! probability and a delay after the container starts. For each dispatch the first rule whose
//! pattern matches the agent and whose draw succeeds applies. The draw is a hash of the seed, the
//! town, the agent, the action id and the rule's position: the same seed and the same actions give
//! the same faults, run after run.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use gastown_core::ids::fnv1a;

use crate::error::SimError;

/// How a container misbehaves once its fault strikes. The first heartbeat of a container is always
/// healthy, so the agent is seen alive before it fails.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FaultKind {
    /// The container falls silent: no more heartbeats, no report (ingest sees the expiry marker:
    /// `agent_heartbeat_lost{expired}`).
    Crash,
    /// The container heartbeats `exited` a few times, then falls silent, without a report
    /// (`container_status{exited}`, then `agent_heartbeat_lost{expired}`).
    Exit,
    /// Heartbeats continue `running` but the SDK watermark stops and the work never ends (no
    /// `agent_activity`, no `agent_done`).
    Hang,
    /// Heartbeats alternate `running` and `unknown` (one `container_status{unknown}` per swing);
    /// the work goes on and is reported.
    Flap,
}

impl FaultKind {
    /// Every kind, by wire name.
    pub const ALL: [FaultKind; 4] = [FaultKind::Crash, FaultKind::Exit, FaultKind::Hang, FaultKind::Flap];

    /// The name used in rules and logs.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            FaultKind::Crash => "crash",
            FaultKind::Exit => "exit",
            FaultKind::Hang => "hang",
            FaultKind::Flap => "flap",
        }
    }
}

impl fmt::Display for FaultKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for FaultKind {
    type Err = SimError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        FaultKind::ALL
            .into_iter()
            .find(|k| k.as_str() == s)
            .ok_or_else(|| SimError::invalid("fault kind", format!("{s:?} is not one of crash, exit, hang, flap")))
    }
}

/// One fault rule.
#[derive(Debug, Clone, PartialEq)]
pub struct FaultRule {
    /// What happens.
    pub kind: FaultKind,
    /// Agent ids it applies to; `*` matches any run of characters (`pc-*`, `*`).
    pub agents: String,
    /// Chance, per dispatch of a matching agent, that the fault strikes (0.0 ..= 1.0).
    pub probability: f64,
    /// How long after the container starts the fault strikes (at the first heartbeat from then on,
    /// never the first heartbeat).
    pub after: Duration,
}

impl FaultRule {
    /// A rule that always strikes matching agents, right after their first heartbeat.
    #[must_use]
    pub fn new(kind: FaultKind, agents: &str) -> Self {
        Self { kind, agents: agents.to_owned(), probability: 1.0, after: Duration::ZERO }
    }

    /// Sets the probability (clamped to 0..=1; NaN counts as 0).
    #[must_use]
    pub fn probability(mut self, p: f64) -> Self {
        self.probability = if p.is_nan() { 0.0 } else { p.clamp(0.0, 1.0) };
        self
    }

    /// Sets the delay after the container starts.
    #[must_use]
    pub fn after(mut self, after: Duration) -> Self {
        self.after = after;
        self
    }
}

/// Parses `<kind>:<agent pattern>[:<probability>[:<after>]]`, e.g. `crash:pc-*`, `hang:*:0.1:30s`;
/// `<after>` is milliseconds or a number with `ms` or `s`.
impl FromStr for FaultRule {
    type Err = SimError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let mut parts = s.split(':');
        let kind: FaultKind = parts.next().unwrap_or_default().parse()?;
        let agents = parts
            .next()
            .filter(|p| !p.is_empty())
            .ok_or_else(|| SimError::invalid("fault rule", format!("{s:?}: missing agent pattern")))?;
        let mut rule = FaultRule::new(kind, agents);
        if let Some(p) = parts.next() {
            let p: f64 = p.parse().map_err(|_| SimError::invalid("fault rule", format!("{s:?}: bad probability {p:?}")))?;
            if !(0.0..=1.0).contains(&p) {
                return Err(SimError::invalid("fault rule", format!("{s:?}: probability must be within 0..1")));
            }
            rule = rule.probability(p);
        }
        if let Some(a) = parts.next() {
            rule =
                rule.after(parse_duration(a).ok_or_else(|| SimError::invalid("fault rule", format!("{s:?}: bad delay {a:?}")))?);
        }
        if parts.next().is_some() {
            return Err(SimError::invalid("fault rule", format!("{s:?}: too many parts")));
        }
        Ok(rule)
    }
}

fn parse_duration(s: &str) -> Option<Duration> {
    if let Some(ms) = s.strip_suffix("ms") {
        return ms.parse().ok().map(Duration::from_millis);
    }
    if let Some(secs) = s.strip_suffix('s') {
        return secs.parse::<f64>().ok().filter(|v| v.is_finite() && *v >= 0.0).map(Duration::from_secs_f64);
    }
    s.parse().ok().map(Duration::from_millis)
}

/// The fault rules and the seed of their draws.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Faults {
    /// Seed of the draws: the same seed gives the same faults for the same actions.
    pub seed: u64,
    /// Rules, first match wins.
    pub rules: Vec<FaultRule>,
}

/// A fault decided for one container.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FaultPlan {
    /// What happens.
    pub kind: FaultKind,
    /// When, after the container starts.
    pub after: Duration,
}

impl Faults {
    /// No faults.
    #[must_use]
    pub fn none() -> Self {
        Self::default()
    }

    /// Adds a rule.
    #[must_use]
    pub fn with(mut self, rule: FaultRule) -> Self {
        self.rules.push(rule);
        self
    }

    /// The fault of the container started by dispatch `action_id` of `agent` in `town`, if any.
    #[must_use]
    pub fn decide(&self, town: &str, agent: &str, action_id: &str) -> Option<FaultPlan> {
        self.rules.iter().enumerate().find_map(|(i, r)| {
            (glob(&r.agents, agent) && draw(self.seed, town, agent, action_id, i) < r.probability)
                .then_some(FaultPlan { kind: r.kind, after: r.after })
        })
    }
}

/// A uniform number in [0, 1) from the inputs (FNV-1a, then the SplitMix64 finaliser).
fn draw(seed: u64, town: &str, agent: &str, action_id: &str, rule: usize) -> f64 {
    let mut z = fnv1a(&format!("{seed}/{town}/{agent}/{action_id}/{rule}")).wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^= z >> 31;
    #[allow(clippy::cast_precision_loss, reason = "53 bits fit an f64 mantissa exactly")]
    let u = (z >> 11) as f64 / (1u64 << 53) as f64;
    u
}

/// `*`-glob match (any run of characters), linear with backtracking to the last star.
fn glob(pattern: &str, s: &str) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    let t: Vec<char> = s.chars().collect();
    let (mut i, mut j) = (0usize, 0usize);
    let mut star: Option<(usize, usize)> = None;
    while j < t.len() {
        match (p.get(i), t.get(j)) {
            (Some('*'), _) => {
                star = Some((i, j));
                i += 1;
            }
            (Some(a), Some(b)) if a == b => {
                i += 1;
                j += 1;
            }
            _ => match star {
                Some((si, sj)) => {
                    i = si + 1;
                    j = sj + 1;
                    star = Some((si, sj + 1));
                }
                None => return false,
            },
        }
    }
    p.get(i..).is_some_and(|rest| rest.iter().all(|c| *c == '*'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn glob_matches_stars_anywhere() {
        assert!(glob("*", "pc-1"));
        assert!(glob("pc-*", "pc-12"));
        assert!(glob("*-1", "crash-1"));
        assert!(glob("a*b*c", "axxbyyc"));
        assert!(glob("pc-1", "pc-1"));
        assert!(!glob("pc-1", "pc-12"));
        assert!(!glob("pc-*", "ref-r1"));
        assert!(!glob("a*b", "a"));
        assert!(glob("**", ""));
    }

    #[test]
    fn decisions_are_deterministic_given_the_seed() {
        let faults = Faults { seed: 7, rules: vec![FaultRule::new(FaultKind::Crash, "*").probability(0.5)] };
        let first: Vec<_> = (0..200).map(|i| faults.decide("t1", "pc-1", &format!("{i}:0"))).collect();
        let again: Vec<_> = (0..200).map(|i| faults.decide("t1", "pc-1", &format!("{i}:0"))).collect();
        assert_eq!(first, again);
        let struck = first.iter().filter(|f| f.is_some()).count();
        assert!((60..=140).contains(&struck), "a 0.5 probability struck {struck} of 200");
        let other = Faults { seed: 8, ..faults.clone() };
        let differs = (0..200).any(|i| other.decide("t1", "pc-1", &format!("{i}:0")) != first[i]);
        assert!(differs, "another seed should give other draws");
    }

    #[test]
    fn first_matching_rule_wins_and_certain_rules_always_strike() {
        let faults = Faults::none()
            .with(FaultRule::new(FaultKind::Hang, "hang-*").after(Duration::from_secs(2)))
            .with(FaultRule::new(FaultKind::Crash, "*").probability(0.0))
            .with(FaultRule::new(FaultKind::Flap, "*"));
        assert_eq!(faults.decide("t", "hang-1", "1:0"), Some(FaultPlan { kind: FaultKind::Hang, after: Duration::from_secs(2) }));
        assert_eq!(faults.decide("t", "pc-1", "1:0").map(|p| p.kind), Some(FaultKind::Flap));
        assert_eq!(Faults::none().decide("t", "pc-1", "1:0"), None);
    }

    #[test]
    fn rules_parse_from_their_text_form() {
        let r: FaultRule = "crash:pc-*".parse().unwrap();
        assert_eq!(r, FaultRule::new(FaultKind::Crash, "pc-*"));
        let r: FaultRule = "hang:*:0.25:1500".parse().unwrap();
        assert_eq!(r, FaultRule::new(FaultKind::Hang, "*").probability(0.25).after(Duration::from_millis(1500)));
        let r: FaultRule = "flap:ref-*:1:2s".parse().unwrap();
        assert_eq!(r.after, Duration::from_secs(2));
        for bad in ["boom:*", "crash", "crash:", "crash:*:2", "crash:*:x", "crash:*:1:soon", "crash:*:1:1s:extra"] {
            assert!(bad.parse::<FaultRule>().is_err(), "{bad} should be refused");
        }
    }
}
