//! C ABI (issue 3): opaque handles over the Rust API. Filled in by the C ABI work.
