//! How a call treats faults of the store: a warning and a recomputation, or (strict mode) an
//! error for its caller.
//!
//! Every place of a call where the store can fail (hashing the arguments, checking the code
//! identity, reading, parsing and decoding an entry, encoding and writing the output) hands the
//! fault to a [`Faults`] policy. [`Lenient`] warns and lets the call go on as on a miss; its
//! fault type is [`Infallible`], so the call paths that use it cannot return a store error at
//! all. [`Strictness`] does the same unless the memory or the function is strict, in which case
//! the fault ends the call as a [`Failed::Store`].

use std::convert::Infallible;

use crate::error::{CallError, Error};
use crate::report::Reporter;

/// What a call does with a fault of the store.
pub(super) trait Faults: Copy {
    /// What a fault becomes when it ends the call.
    type Fault;

    /// Either warns (the call goes on without the store's help) or gives the fault back.
    fn fault(self, reporter: &Reporter, error: Error, warning: String) -> Result<(), Self::Fault>;

    /// Whether faults are errors (strict mode): then nothing unchecked is returned.
    fn is_strict(self) -> bool;
}

/// Faults are warnings: the call computes its output and returns it.
#[derive(Debug, Clone, Copy)]
pub(super) struct Lenient;

impl Faults for Lenient {
    type Fault = Infallible;

    fn is_strict(self) -> bool {
        false
    }

    fn fault(self, reporter: &Reporter, _error: Error, warning: String) -> Result<(), Infallible> {
        reporter.warn(warning);
        Ok(())
    }
}

/// Faults are errors when `strict` is set, warnings otherwise.
#[derive(Debug, Clone, Copy)]
pub(super) struct Strictness {
    pub(super) strict: bool,
}

impl Faults for Strictness {
    type Fault = Error;

    fn is_strict(self) -> bool {
        self.strict
    }

    fn fault(self, reporter: &Reporter, error: Error, warning: String) -> Result<(), Error> {
        if self.strict {
            tracing::debug!(target: "cachette", "strict mode: {warning}");
            Err(error)
        } else {
            reporter.warn(warning);
            Ok(())
        }
    }
}

/// Why a call ended without an output: its function's error, or a fault of the store.
pub(super) enum Failed<E, S> {
    /// The function returned an error.
    Function(E),
    /// The store failed, and the policy made that an error.
    Store(S),
}

impl<E> Failed<E, Infallible> {
    /// The function's error: a lenient call has no other.
    pub(super) fn function(self) -> E {
        match self {
            Failed::Function(e) => e,
            Failed::Store(never) => match never {},
        }
    }
}

impl<E> From<Failed<E, Error>> for CallError<E> {
    fn from(failed: Failed<E, Error>) -> Self {
        match failed {
            Failed::Function(e) => CallError::Function(e),
            Failed::Store(e) => CallError::Store(e),
        }
    }
}

/// Lifts a fault into a call's failure.
pub(super) fn store<E, S>(fault: S) -> Failed<E, S> {
    Failed::Store(fault)
}
