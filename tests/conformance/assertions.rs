//! Assertions of both suites (the async one and its blocking twin).

/// Asserts that a result is an error matching a pattern: `assert_err!(r, Error::NotFound(_))`.
macro_rules! assert_err {
    ($result:expr, $pattern:pat $(if $guard:expr)?) => {
        match $result {
            Err($pattern) $(if $guard)? => {}
            other => panic!(
                "expected Err({}), got {:?}",
                stringify!($pattern),
                other
            ),
        }
    };
}
