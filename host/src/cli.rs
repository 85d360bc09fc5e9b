//! The `culvert` command line.
