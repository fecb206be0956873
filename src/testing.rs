//! Test support (crash workloads), shared by the integration tests and the bench runner.
