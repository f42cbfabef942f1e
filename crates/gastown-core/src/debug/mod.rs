//! Debug views (DOMAIN §D).
