//! drover: a declarative reconciler for fleets of Linux hosts.
//!
//! A directory of YAML manifests is the desired state. `manifest_dir` reads it, `load` turns
//! it into a validated `Desired` (or diagnostics), `resolve` expands it into task instances
//! with rendered templates and content hashes, and `graph` orders them. The `cli` module is
//! the composition root and the only place that prints. See `docs/ARCHITECTURE.md`.

// ── pure core: no I/O, no clock, no environment ──
pub mod account;
pub mod apply;
pub mod backoff;
pub mod claim;
pub mod diagnostic;
pub mod drift;
pub mod edit;
pub mod facts;
pub mod graph;
pub mod hash;
pub mod instance;
pub mod load;
pub mod model;
pub mod plan;
pub mod report;
pub mod resolve;
pub mod run;
pub mod schedule;
pub mod scope;
pub mod secret;
pub mod snapshot;
pub mod source;
pub mod state;
pub mod store;
pub mod task;
pub mod template;
pub mod text_diff;
pub mod transport;

// ── effectful shell ──
pub mod cli;
pub mod clock;
pub mod evaluate;
pub mod for_each;
pub mod github;
pub mod manifest_dir;
pub mod provenance;
pub mod reconcile;
pub mod secret_source;
pub mod watch;
