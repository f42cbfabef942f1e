# Routine tasks. CI has no `just`: .ci/run runs the same commands directly.

# Run every test (the README's test command).
test:
    cargo test --workspace

# Formatting and lints, as CI checks them.
lint:
    cargo fmt --all -- --check
    cargo clippy --workspace --all-targets --all-features -- -D warnings

# Format the tree.
fmt:
    cargo fmt --all

# Benchmarks: pure fold rate and reconcile pass cost.
bench:
    cargo bench -p gastown-core --features testing --bench fold

# Run the whole system locally (embedded nats-server, ingest, a worker, simulated towns).
up *ARGS:
    cargo run --release -- up --demo {{ARGS}}

# A local 3-node JetStream cluster (deploy/nats-cluster), until Ctrl-C.
cluster:
    #!/usr/bin/env bash
    set -euo pipefail
    bin="${NATS_SERVER_BIN:-$(command -v nats-server || ls .gastown/tools/nats-server-*/nats-server 2>/dev/null | head -1)}"
    if [ -z "$bin" ]; then echo "no nats-server: run 'just up' once (it installs one) or set NATS_SERVER_BIN" >&2; exit 1; fi
    mkdir -p .gastown/cluster
    trap 'kill $(jobs -p) 2>/dev/null' EXIT
    for i in 1 2 3; do "$bin" -c deploy/nats-cluster/n$i.conf & done
    wait
