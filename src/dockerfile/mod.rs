//! dockerfile (to be written).
