//! How the command fails: a few kinds of failure, each with its own exit code.

use std::fmt;
use std::process::ExitCode;

/// What went wrong, as scripts see it in the exit code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Code {
    /// 1: the store cannot be opened or read, a configuration is invalid, a deletion failed.
    Error,
    /// 2: what was named does not exist: the location, a function, an entry.
    NotFound,
    /// 3: damaged entries were found (and are still in the store).
    Damaged,
    /// 4: nothing was deleted because the deletion was not confirmed.
    NotConfirmed,
    /// 64 (sysexits' `EX_USAGE`): the command line is wrong.
    Usage,
    /// 5: `check` found the store readable but not writable.
    ReadOnly,
}

impl Code {
    pub(crate) fn exit_code(self) -> u8 {
        match self {
            Code::Error => 1,
            Code::NotFound => 2,
            Code::Damaged => 3,
            Code::NotConfirmed => 4,
            Code::Usage => 64,
            Code::ReadOnly => 5,
        }
    }

    /// The stable name of the kind, in JSON errors.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Code::Error => "error",
            Code::NotFound => "not_found",
            Code::Damaged => "damaged",
            Code::NotConfirmed => "not_confirmed",
            Code::Usage => "usage",
            Code::ReadOnly => "read_only",
        }
    }
}

impl From<Code> for ExitCode {
    fn from(code: Code) -> ExitCode {
        ExitCode::from(code.exit_code())
    }
}

/// A failure with its exit code; other errors exit with [`Code::Error`].
#[derive(Debug)]
pub(crate) struct Failure {
    pub(crate) code: Code,
    pub(crate) message: String,
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Failure {}

pub(crate) fn fail(code: Code, message: impl Into<String>) -> anyhow::Error {
    Failure {
        code,
        message: message.into(),
    }
    .into()
}

pub(crate) fn not_found(message: impl Into<String>) -> anyhow::Error {
    fail(Code::NotFound, message)
}

pub(crate) fn usage(message: impl Into<String>) -> anyhow::Error {
    fail(Code::Usage, message)
}

/// The exit code of an error: its [`Failure`]'s code wherever it is in the chain, else 1.
pub(crate) fn code_of(error: &anyhow::Error) -> Code {
    error
        .chain()
        .find_map(|e| e.downcast_ref::<Failure>())
        .map_or(Code::Error, |f| f.code)
}
