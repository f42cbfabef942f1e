//! Invariants (DOMAIN §I).
