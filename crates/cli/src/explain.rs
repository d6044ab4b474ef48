//! `cachette explain`: why a call of a function with given arguments would miss, from the
//! store alone. A read: it changes nothing.

use anyhow::{Context, Result};
use cachette::Explanation;

use crate::fail::usage;
use crate::inspect::to_json;
use crate::store;

/// Parses the `--arg NAME=VALUE` options into readable forms by name.
fn parse_args(args: &[String]) -> Result<Vec<(String, String)>> {
    args.iter()
        .map(|arg| match arg.split_once('=') {
            Some((name, value)) if !name.is_empty() => Ok((name.to_owned(), value.to_owned())),
            _ => Err(usage(format!(
                "--arg {arg:?}: give an argument as NAME=VALUE (the readable form `show` prints)"
            ))),
        })
        .collect()
}

/// Explains a call of `func` in `location` with `args` (`NAME=VALUE` each).
pub(crate) fn explain(location: &str, func: &str, args: &[String], json: bool) -> Result<String> {
    let args = parse_args(args)?;
    let store = store::open(location)?;
    let funcs = store::functions(&store)?;
    let func = store::resolve(&funcs, func, &store.location)?;
    let explanation: Explanation = store
        .memory
        .explain(&func.folder, &args)
        .with_context(|| format!("cannot read `{}` in {}", func.label(), store.location))?;
    if json {
        return to_json(&explanation);
    }
    // The explanation escapes what it read from the store.
    Ok(explanation.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arguments_are_name_value_pairs() {
        let parsed = parse_args(&["x=1".into(), "name=a=b".into(), "empty=".into()]).unwrap();
        assert_eq!(
            parsed,
            [
                ("x".to_owned(), "1".to_owned()),
                ("name".to_owned(), "a=b".to_owned()),
                ("empty".to_owned(), String::new()),
            ]
        );
        for bad in ["novalue", "=1"] {
            let err = parse_args(&[bad.into()]).unwrap_err();
            assert_eq!(crate::fail::code_of(&err), crate::fail::Code::Usage);
        }
    }
}
