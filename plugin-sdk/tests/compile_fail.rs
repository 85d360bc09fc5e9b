//! Compile-time checks of `#[culvert_sdk::workflow]` and `export_package!`:
//! every case under `tests/ui/fail` must be rejected with the error recorded
//! in its `.stderr` file, and every case under `tests/ui/pass` must build.
//!
//! Regenerate the expected output after changing a message or a span with
//! `TRYBUILD=overwrite cargo test -p culvert-sdk --test compile_fail`, then
//! read the diff.

#[test]
fn ui() {
    let t = trybuild::TestCases::new();
    t.compile_fail("tests/ui/fail/*.rs");
    t.pass("tests/ui/pass/*.rs");
}
