//! What the process tests share, included by every test binary that needs
//! it as `mod common;`:
//!
//! - [`ctl`]: the one `raftctl` runner and its typed output;
//! - [`wait`]: the one polling loop, `wait_for`;
//! - [`cluster`]: real `raftkv` nodes on loopback, started, killed, paused
//!   and restarted by the test;
//! - [`lease_watch`]: terms and roles sampled during a load, and the
//!   step-downs the nodes logged;
//! - [`local`]: a `raftctl local` cluster, for tests of its supervisor;
//! - [`ports`]: loopback ports reserved for the test process;
//! - [`docker`] and [`image`]: the `docker` command line and the image under
//!   test, for the tests that run containers;
//! - [`kube_answers`]: what a Kubernetes API server stand-in answers.

// Each test binary uses a part of this module.
#![allow(dead_code)]

pub mod cluster;
pub mod ctl;
pub mod docker;
pub mod image;
pub mod kube_answers;
pub mod lease_watch;
pub mod local;
pub mod ports;
pub mod wait;
