//! source (to be written).
