//! The gastown CLI.
fn main() {}
