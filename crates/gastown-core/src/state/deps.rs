//! The dependency graph (S6): edges `(bead_id, depends_on, kind)`, unique per pair, indexed in
//! both directions. Only the edge list is serialized; the indexes are rebuilt on load.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

/// The kind of a dependency edge.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub enum DepKind {
    /// `bead_id` may not start while `depends_on` is live (acyclic).
    #[serde(rename = "blocks")]
    Blocks,
    /// MR → source, issue → convoy.
    #[serde(rename = "tracks")]
    Tracks,
    /// Informational.
    #[serde(rename = "parent-child")]
    ParentChild,
}

impl DepKind {
    /// The values as messages list them.
    pub const VALUES: &'static str = "blocks, tracks, parent-child";

    /// The wire name.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Blocks => "blocks",
            Self::Tracks => "tracks",
            Self::ParentChild => "parent-child",
        }
    }

    /// Parses a wire name.
    #[must_use]
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "blocks" => Some(Self::Blocks),
            "tracks" => Some(Self::Tracks),
            "parent-child" => Some(Self::ParentChild),
            _ => None,
        }
    }
}

/// One edge.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Dep {
    /// The dependent bead.
    pub bead_id: String,
    /// What it depends on.
    pub depends_on: String,
    /// Kind.
    pub kind: DepKind,
}

#[derive(Serialize, Deserialize)]
struct DepsWire {
    edges: Vec<Dep>,
}

/// The edge set with forward and reverse indexes.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(from = "DepsWire", into = "DepsWire")]
pub struct Deps {
    forward: BTreeMap<String, BTreeMap<String, DepKind>>,
    reverse: BTreeMap<String, BTreeMap<String, DepKind>>,
}

impl From<DepsWire> for Deps {
    fn from(w: DepsWire) -> Self {
        let mut d = Self::default();
        for e in w.edges {
            d.insert(&e.bead_id, &e.depends_on, e.kind);
        }
        d
    }
}

impl From<Deps> for DepsWire {
    fn from(d: Deps) -> Self {
        Self { edges: d.edges().collect() }
    }
}

impl Deps {
    /// Adds an edge; returns false (and changes nothing) when the pair already has one.
    pub fn insert(&mut self, bead_id: &str, depends_on: &str, kind: DepKind) -> bool {
        let fwd = self.forward.entry(bead_id.to_owned()).or_default();
        if fwd.contains_key(depends_on) {
            return false;
        }
        fwd.insert(depends_on.to_owned(), kind);
        self.reverse.entry(depends_on.to_owned()).or_default().insert(bead_id.to_owned(), kind);
        true
    }

    /// The kind of the edge `bead_id → depends_on`, if any.
    #[must_use]
    pub fn get(&self, bead_id: &str, depends_on: &str) -> Option<DepKind> {
        self.forward.get(bead_id)?.get(depends_on).copied()
    }

    /// Targets of `bead_id`'s edges of `kind`, by target id.
    pub fn targets<'a>(&'a self, bead_id: &str, kind: DepKind) -> impl Iterator<Item = &'a str> + 'a {
        self.forward
            .get(bead_id)
            .into_iter()
            .flat_map(move |m| m.iter().filter(move |(_, k)| **k == kind).map(|(t, _)| t.as_str()))
    }

    /// Sources of edges of `kind` pointing at `depends_on`, by source id.
    pub fn sources<'a>(&'a self, depends_on: &str, kind: DepKind) -> impl Iterator<Item = &'a str> + 'a {
        self.reverse
            .get(depends_on)
            .into_iter()
            .flat_map(move |m| m.iter().filter(move |(_, k)| **k == kind).map(|(s, _)| s.as_str()))
    }

    /// Every edge, ordered by (bead_id, depends_on).
    pub fn edges(&self) -> impl Iterator<Item = Dep> + '_ {
        self.forward
            .iter()
            .flat_map(|(b, m)| m.iter().map(move |(d, k)| Dep { bead_id: b.clone(), depends_on: d.clone(), kind: *k }))
    }

    /// Whether adding a `blocks` edge `from → to` would close a cycle (a self-edge included):
    /// true when `from` is reachable from `to` over `blocks` edges.
    #[must_use]
    pub fn blocks_path(&self, from: &str, to: &str) -> bool {
        if from == to {
            return true;
        }
        let mut seen = BTreeSet::new();
        let mut stack = vec![to];
        while let Some(n) = stack.pop() {
            if n == from {
                return true;
            }
            if seen.insert(n) {
                stack.extend(self.targets(n, DepKind::Blocks));
            }
        }
        false
    }

    /// Number of edges.
    #[must_use]
    pub fn len(&self) -> usize {
        self.forward.values().map(BTreeMap::len).sum()
    }

    /// No edges.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.forward.is_empty()
    }
}
