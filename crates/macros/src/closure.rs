//! What `cache!(memory, closure)` turns into.

use proc_macro2::TokenStream;
use quote::{ToTokens, quote, quote_spanned};
use syn::parse::{Parse, ParseStream};
use syn::spanned::Spanned;
use syn::{Expr, ExprClosure, Ident, Token};

use crate::fingerprint;

/// The input of `cache!`: `memory, closure` and options `name = ..`, `version = ..`.
pub(crate) struct CacheInput {
    memory: Expr,
    closure: ExprClosure,
    name: Option<Expr>,
    version: Option<Expr>,
}

impl Parse for CacheInput {
    fn parse(input: ParseStream<'_>) -> syn::Result<Self> {
        let memory: Expr = input.parse()?;
        input.parse::<Token![,]>()?;
        let mut closure = input.parse::<Expr>()?;
        // A closure passed through a `macro_rules!` fragment comes in invisible delimiters.
        while let Expr::Group(group) = closure {
            closure = *group.expr;
        }
        let closure = match closure {
            Expr::Closure(closure) => closure,
            other => {
                return Err(syn::Error::new(
                    other.span(),
                    "cache! takes a closure (`|x: u64| x * x`): a function is identified by its \
                     path already, memoize it with `memory.cache(f)` or `#[memoize]`",
                ));
            }
        };
        let (mut name, mut version) = (None, None);
        while input.parse::<Option<Token![,]>>()?.is_some() {
            if input.is_empty() {
                break;
            }
            let option: Ident = input.parse()?;
            input.parse::<Token![=]>()?;
            let value: Expr = input.parse()?;
            let slot = match option.to_string().as_str() {
                "name" => &mut name,
                "version" => &mut version,
                other => {
                    return Err(syn::Error::new(
                        option.span(),
                        format!("unknown cache! option `{other}`; expected `name` or `version`"),
                    ));
                }
            };
            if slot.replace(value).is_some() {
                return Err(syn::Error::new(
                    option.span(),
                    format!("duplicate cache! option `{option}`"),
                ));
            }
        }
        if !input.is_empty() {
            return Err(input.error("expected `,`"));
        }
        Ok(CacheInput {
            memory,
            closure,
            name,
            version,
        })
    }
}

/// `memory.cache(closure).code_hash("<hash of the closure's tokens>")`, and the options.
pub(crate) fn expand(input: CacheInput) -> TokenStream {
    let CacheInput {
        memory,
        closure,
        name,
        version,
    } = input;
    let hash = code_hash(&closure);
    let name = name.map(|n| quote_spanned!(n.span()=> .name(#n)));
    let version = version.map(|v| quote_spanned!(v.span()=> .version(#v)));
    quote! {
        (#memory).cache(#closure).code_hash(#hash) #name #version
    }
}

/// The hash of a closure's tokens, in the normal form of `#[memoize]` (whitespace, comments
/// and trailing commas do not count).
pub(crate) fn code_hash(closure: &ExprClosure) -> String {
    let mut normal = String::from("cachette-cache 1\n");
    fingerprint::normalize(closure.to_token_stream(), &mut normal);
    fingerprint::code_hash(&normal)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hash(text: &str) -> String {
        code_hash(&syn::parse_str(text).unwrap())
    }

    #[test]
    fn the_hash_follows_the_tokens() {
        let base = hash("|x: u64| x * x");
        assert_eq!(base, hash("|x: u64|\n    // squared\n    x * x"));
        assert_eq!(base, hash("| x : u64 |   x*x"));
        assert_ne!(base, hash("|x: u64| x + x"));
        assert_ne!(base, hash("|x: u32| x * x"));
        assert_ne!(base, hash("move |x: u64| x * x"));
    }

    #[test]
    fn inputs() {
        let parse = |text: &str| syn::parse_str::<CacheInput>(text);
        let input = parse("MEMORY, |x: u64| x * x").unwrap();
        assert!(input.name.is_none() && input.version.is_none());
        let input = parse("&memory, |x: u64| x, name = \"sq\", version = \"2\",").unwrap();
        assert!(input.name.is_some() && input.version.is_some());
        let expanded = expand(input).to_string();
        assert!(expanded.contains(". code_hash ("), "{expanded}");
        assert!(expanded.contains(". name (\"sq\")"), "{expanded}");
        let error = |text: &str| parse(text).err().unwrap().to_string();
        assert!(error("MEMORY, square").contains("cache! takes a closure"));
        assert!(error("MEMORY, |x: u64| x, nmae = \"a\"").contains("unknown cache! option `nmae`"));
        assert!(error("MEMORY, |x: u64| x, name = \"a\", name = \"b\"").contains("duplicate"));
    }
}
