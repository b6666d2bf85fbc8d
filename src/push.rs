//! push (to be written).
