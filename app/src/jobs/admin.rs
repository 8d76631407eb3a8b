//! The one module that reads and changes apalis' tables for operators: counts by queue
//! and state, throughput, failures, workers, retry and discard (being written).
