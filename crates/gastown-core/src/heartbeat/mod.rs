//! The heartbeat ingest filter (DOMAIN §E5).
