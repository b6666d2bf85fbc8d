//! registry (to be written).
