//! ecr (to be written).
