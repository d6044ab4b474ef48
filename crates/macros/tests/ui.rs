//! The compile errors of `#[memoize]` and `cache!`: one short error per cause, on the tokens at
//! fault, and none at the callers. Each `tests/ui/*.rs` must fail to compile with exactly the
//! errors of its `.stderr` snapshot (`TRYBUILD=overwrite` rewrites them after a deliberate
//! change).
//!
//! trybuild checks the cases in a project of its own under `target/tests/trybuild`, which
//! depends on this crate's dev-dependencies (`cachette` with the `macros` feature only): its
//! first run builds them there, later runs take seconds.

#[test]
fn compile_errors() {
    let cases = std::fs::read_dir("tests/ui")
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .path()
                .extension()
                .is_some_and(|x| x == "rs")
        })
        .count();
    assert!(cases >= 8, "the cases are in tests/ui ({cases} found)");
    let cases = trybuild::TestCases::new();
    cases.compile_fail("tests/ui/*.rs");
}
