//! Counts by action type in first-appearance order (`actionsByType` of D1–D3), serialized as a
//! JSON object whose keys keep that order (serde_json's own map would sort them).

use std::fmt;

use serde::de::{MapAccess, Visitor};
use serde::ser::SerializeMap;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::action::Action;

/// Counts keyed by name, in the order the names first appeared.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OrderedCounts(Vec<(String, u64)>);

impl OrderedCounts {
    /// No counts.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds `n` to `key`, appending the key when it is new.
    pub fn add(&mut self, key: &str, n: u64) {
        match self.0.iter_mut().find(|(k, _)| k == key) {
            Some((_, c)) => *c = c.saturating_add(n),
            None => self.0.push((key.to_owned(), n)),
        }
    }

    /// Counts `actions` by type, in decision order.
    #[must_use]
    pub fn of_actions(actions: &[Action]) -> Self {
        let mut c = Self::new();
        for a in actions {
            c.add(a.action_type(), 1);
        }
        c
    }

    /// The count of `key` (0 when absent).
    #[must_use]
    pub fn get(&self, key: &str) -> u64 {
        self.0.iter().find(|(k, _)| k == key).map_or(0, |(_, c)| *c)
    }

    /// Entries in order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, u64)> {
        self.0.iter().map(|(k, c)| (k.as_str(), *c))
    }

    /// Number of keys.
    #[must_use]
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// No keys.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl<'a> FromIterator<(&'a str, u64)> for OrderedCounts {
    fn from_iter<I: IntoIterator<Item = (&'a str, u64)>>(iter: I) -> Self {
        let mut c = Self::new();
        for (k, n) in iter {
            c.add(k, n);
        }
        c
    }
}

impl Serialize for OrderedCounts {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(Some(self.0.len()))?;
        for (k, c) in &self.0 {
            m.serialize_entry(k, c)?;
        }
        m.end()
    }
}

struct CountsVisitor;

impl<'de> Visitor<'de> for CountsVisitor {
    type Value = OrderedCounts;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a map of counts")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut access: A) -> Result<Self::Value, A::Error> {
        let mut c = OrderedCounts::new();
        while let Some((k, n)) = access.next_entry::<String, u64>()? {
            c.add(&k, n);
        }
        Ok(c)
    }
}

impl<'de> Deserialize<'de> for OrderedCounts {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_map(CountsVisitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_keep_first_appearance_order_through_json_and_msgpack() {
        let c: OrderedCounts = [("unhook_agent", 1), ("transition_bead", 1), ("unhook_agent", 2)].into_iter().collect();
        let json = serde_json::to_string(&c).unwrap();
        assert_eq!(json, r#"{"unhook_agent":3,"transition_bead":1}"#);
        assert_eq!(serde_json::from_str::<OrderedCounts>(&json).unwrap(), c);
        let bytes = crate::codec::to_msgpack(&c).unwrap();
        assert_eq!(crate::codec::from_msgpack::<OrderedCounts>(&bytes).unwrap(), c);
        assert_eq!(c.get("unhook_agent"), 3);
        assert_eq!(c.get("missing"), 0);
    }
}
