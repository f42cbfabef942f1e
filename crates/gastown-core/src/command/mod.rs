//! Command validation (DOMAIN §E4).
