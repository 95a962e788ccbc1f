//! Checkers of client histories, shared by the simulator, the process tests
//! and `raftctl chaos`: whatever a test can prove about a history, an operator
//! can prove about a run on a real cluster with the same code.

pub mod linearizability;
