//! Pure fold rate and reconcile pass cost (issue goal: fold ≥ 1 M events/s on one core).
//!
//! The event stream is recorded from a deterministic simulated town driven by the real rules:
//! polecats heartbeat and report activity, beads are slung and dispatched, polecats finish,
//! the refinery merges, decisions are folded back. The fold benchmark replays that stream from
//! an empty town; the pass benchmark reconciles settled towns of 10, 100 and 1000 agents.

use std::hint::black_box;
use std::time::Duration;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use gastown_core::event::{AgentActivity, AgentDone, BeadCreated};
use gastown_core::state::{AgentStatus, Role};
use gastown_core::testing::{Ev, T0, agent_registered, bead, ev, fixture_f, polecat_registered, reconciled, resumed, secs};
use gastown_core::{Envelope, Millis, TownState, apply, reconcile};

/// Records every event it folds, as the stream would store them.
struct Recorder {
    state: TownState,
    log: Vec<(u64, Envelope)>,
}

impl Recorder {
    fn new() -> Self {
        Self { state: TownState::new("t1"), log: Vec::new() }
    }

    fn push(&mut self, e: Ev, at: Millis) {
        let seq = self.log.len() as u64 + 1;
        let mut event = e.event;
        let mut id = format!("t1:e:{seq}");
        if let gastown_core::Event::Reconciled(r) = &mut event {
            r.at = at;
            r.base_seq = self.state.last_seq;
            id = format!("t1:d:{}:{at}", r.base_seq);
        }
        let env = Envelope::new(id, at, e.source, event);
        apply(&mut self.state, seq, &env);
        self.log.push((seq, env));
    }

    fn settle(&mut self, now: Millis) {
        for _ in 0..10 {
            let d = reconcile(&self.state, now);
            if d.actions.is_empty() {
                return;
            }
            self.push(reconciled(d.actions), now);
        }
    }
}

/// A town of `agents` polecats working through `rounds` rounds of slung beads.
fn simulate(agents: usize, rounds: usize) -> Recorder {
    let mut r = Recorder::new();
    for e in fixture_f() {
        r.push(e, T0);
    }
    for i in 0..agents {
        r.push(polecat_registered(&format!("p{i:04}")), T0);
        r.push(resumed(&format!("p{i:04}")), T0);
    }
    r.push(agent_registered("ref-r1", Role::Refinery, Some("r1")), T0);
    r.push(resumed("ref-r1"), T0);
    let mut now = T0;
    let mut next_bead = 0;
    for round in 0..rounds {
        now += secs(10);
        for _ in 0..agents.div_ceil(4) {
            let id = format!("b{next_bead}");
            next_bead += 1;
            r.push(ev(BeadCreated { title: format!("Fix issue number {next_bead}"), ..bead(&id, Some("r1")) }), now);
        }
        r.settle(now);
        let working: Vec<(String, Option<String>)> = r
            .state
            .agents
            .values()
            .filter(|a| a.status == AgentStatus::Working && a.role == Role::Polecat)
            .map(|a| (a.agent_id.clone(), a.hook.clone()))
            .collect();
        for (i, (agent, hook)) in working.iter().enumerate() {
            let at = now + secs(1);
            r.push(
                ev(AgentActivity {
                    agent_id: agent.clone(),
                    last_event_type: Some("tool_use".into()),
                    last_event_at: Some(at),
                    active_tools: vec!["bash".into()],
                    coalesced: 12,
                }),
                at,
            );
            if (i + round) % 3 == 0
                && let Some(h) = hook
            {
                let done = AgentDone {
                    agent_id: agent.clone(),
                    branch: format!("gt/{agent}/{h}"),
                    pr_url: None,
                    summary: Some("done".into()),
                    bead_id: None,
                    dispatch_id: None,
                };
                r.push(ev(done), now + secs(2));
            }
        }
        now += secs(2);
        r.settle(now);
        if let Some(ref_hook) = r.state.agents.get("ref-r1").and_then(|a| a.hook.clone()) {
            r.push(
                ev(AgentDone {
                    agent_id: "ref-r1".into(),
                    branch: format!("merge/{ref_hook}"),
                    pr_url: None,
                    summary: None,
                    bead_id: None,
                    dispatch_id: None,
                }),
                now + secs(3),
            );
            r.push(resumed("ref-r1"), now + secs(3));
        }
        now += secs(3);
        r.settle(now);
    }
    r
}

fn fold_rate(c: &mut Criterion) {
    let rec = simulate(50, 60);
    let events = rec.log;
    let mut g = c.benchmark_group("fold");
    g.throughput(Throughput::Elements(events.len() as u64));
    g.measurement_time(Duration::from_secs(5));
    g.bench_function(BenchmarkId::new("realistic_mix", events.len()), |b| {
        b.iter(|| {
            let mut s = TownState::new("t1");
            for (seq, env) in &events {
                apply(&mut s, *seq, env);
            }
            black_box(s.last_seq)
        });
    });
    // Baseline of the same run: decoding the same events from their stored MessagePack form,
    // which a worker does before folding. The fold should cost no more than the decode.
    let stored: Vec<Vec<u8>> = events.iter().filter_map(|(_, e)| gastown_core::codec::to_msgpack(e).ok()).collect();
    g.bench_function(BenchmarkId::new("decode_msgpack_baseline", stored.len()), |b| {
        b.iter(|| {
            let mut n = 0_usize;
            for bytes in &stored {
                if let gastown_core::codec::Stored::Event(e) = gastown_core::codec::decode_stored(bytes) {
                    n += e.id.len();
                }
            }
            black_box(n)
        });
    });
    g.finish();
}

fn pass_cost(c: &mut Criterion) {
    let mut g = c.benchmark_group("reconcile_pass");
    g.measurement_time(Duration::from_secs(4));
    for agents in [10_usize, 100, 1000] {
        let rec = simulate(agents, 4);
        let state = rec.state;
        let now = state.clock;
        g.throughput(Throughput::Elements(agents as u64));
        g.bench_with_input(BenchmarkId::new("settled_town_agents", agents), &state, |b, s| {
            b.iter(|| black_box(reconcile(s, now)));
        });
        g.bench_with_input(BenchmarkId::new("next_wakeup_agents", agents), &state, |b, s| {
            b.iter(|| black_box(gastown_core::next_wakeup(s, now)));
        });
    }
    g.finish();
}

criterion_group!(benches, fold_rate, pass_cost);
criterion_main!(benches);
