//! registries_conf (to be written).
