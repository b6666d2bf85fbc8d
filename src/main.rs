//! The `ocipush` command line (to be written).
fn main() {}
