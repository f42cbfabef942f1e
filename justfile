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
