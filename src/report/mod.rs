//! Rendering of what drover shows people and machines, as `String`s.
//!
//! Renderers take a `Style` value and never look at the terminal themselves; only
//! `cli::output` writes, and it decides whether colour is on.

pub mod apply;
pub mod diagnostics;
pub mod diff;
pub mod drift;
pub mod plan;
pub mod runs;
pub mod status;
pub mod style;
