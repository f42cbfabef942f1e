//! `seed_demo`: demo towns with a rig, a few slung beads and a convoy, through the command
//! service like any operator.

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use gastown_bus::{Names, TownId};
use serde_json::json;
use tokio_util::sync::CancellationToken;
use tracing::info;

use crate::commands::{Command, Commander};
use crate::error::SimError;
use crate::stats::SimStats;

/// Towns seeded at once.
const CONCURRENT_TOWNS: usize = 8;
/// How long one seed command may wait for its reply.
const SEED_TIMEOUT: Duration = Duration::from_secs(5);

/// The git url of every demo rig.
pub const DEMO_GIT_URL: &str = "https://github.com/acme/app.git";

/// The name of demo town `i` (1-based): `demo-<i>`.
#[must_use]
pub fn demo_town(i: usize) -> String {
    format!("demo-{i}")
}

/// The commands that seed one demo town, in order.
fn town_commands(beads_per_town: usize) -> Vec<Command> {
    let mut cmds = vec![
        Command { name: "town.config", body: json!({}), msg_id: "seed:town.config".to_owned() },
        Command {
            name: "rig.add",
            body: json!({"rig_id": "r1", "name": "app", "git_url": DEMO_GIT_URL}),
            msg_id: "seed:rig.add:r1".to_owned(),
        },
    ];
    for k in 1..=beads_per_town {
        cmds.push(Command {
            name: "bead.sling",
            body: json!({"bead_id": format!("task-{k}"), "title": format!("Demo task {k}"),
                         "body": "Created by gastown-sim seed_demo.", "rig_id": "r1"}),
            msg_id: format!("seed:bead.sling:task-{k}"),
        });
    }
    cmds.push(Command {
        name: "convoy.create",
        body: json!({
            "convoy_id": "demo-convoy",
            "title": "Demo convoy",
            "merge_mode": "review-then-land",
            "beads": [
                {"bead_id": "convoy-task-1", "title": "Convoy task 1", "rig_id": "r1"},
                {"bead_id": "convoy-task-2", "title": "Convoy task 2", "rig_id": "r1", "depends_on": ["convoy-task-1"]},
                {"bead_id": "convoy-task-3", "title": "Convoy task 3", "rig_id": "r1"},
            ],
        }),
        msg_id: "seed:convoy.create:demo-convoy".to_owned(),
    });
    cmds
}

/// Seeds towns `demo-1` ..= `demo-<towns>`: `town.config {}`, `rig.add` (rig `r1`, name `app`,
/// [`DEMO_GIT_URL`]), `beads_per_town` `bead.sling`s (`task-<k>`) and one `review-then-land`
/// `convoy.create` of three beads (`demo-convoy`). Every command carries a fixed `Nats-Msg-Id`, so
/// seeding again within the dedup horizon is answered as duplicates; later, the `409 ... already
/// exists` / `already used` answers of a town seeded before are accepted too.
///
/// # Errors
/// A reply that is not ok (other than the conflicts above), or no answer after retrying for
/// several seconds (the command service is not running).
pub async fn seed_demo(client: &async_nats::Client, names: &Names, towns: usize, beads_per_town: usize) -> Result<(), SimError> {
    let commander = Arc::new(Commander::new(client.clone(), names.clone(), SEED_TIMEOUT, Arc::new(SimStats::default())));
    let cmds = Arc::new(town_commands(beads_per_town));
    let results: Vec<Result<(), SimError>> = futures::stream::iter(1..=towns)
        .map(|i| {
            let (commander, cmds) = (Arc::clone(&commander), Arc::clone(&cmds));
            async move { seed_town(&commander, &demo_town(i), &cmds).await }
        })
        .buffer_unordered(CONCURRENT_TOWNS)
        .collect()
        .await;
    results.into_iter().collect::<Result<Vec<()>, SimError>>()?;
    info!(towns, beads_per_town, "demo towns seeded");
    Ok(())
}

async fn seed_town(commander: &Commander, town: &str, cmds: &[Command]) -> Result<(), SimError> {
    let town = TownId::try_from(town).map_err(|e| SimError::invalid("town", e.to_string()))?;
    let never = CancellationToken::new();
    for cmd in cmds {
        match commander.send(&town, cmd, &never).await {
            Ok(_) => {}
            Err(SimError::Rejected { code, message, .. })
                if code == "conflict" && (message.ends_with("already exists") || message.ends_with("already used")) =>
            {
                info!(town = %town, command = cmd.name, %message, "already seeded");
            }
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_town_is_seeded_with_config_rig_beads_and_one_convoy_of_three() {
        let cmds = town_commands(2);
        let names: Vec<&str> = cmds.iter().map(|c| c.name).collect();
        assert_eq!(names, ["town.config", "rig.add", "bead.sling", "bead.sling", "convoy.create"]);
        assert_eq!(cmds[4].body["beads"].as_array().map(Vec::len), Some(3));
        assert_eq!(cmds[4].body["merge_mode"], "review-then-land");
        let ids: std::collections::HashSet<&str> = cmds.iter().map(|c| c.msg_id.as_str()).collect();
        assert_eq!(ids.len(), cmds.len(), "message ids must be distinct within a town");
    }
}
