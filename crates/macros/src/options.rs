//! The options of `#[memoize(...)]`.

use proc_macro2::{Span, TokenStream};
use syn::ext::IdentExt;
use syn::meta::ParseNestedMeta;
use syn::parse::{Parse, ParseStream, Parser};
use syn::spanned::Spanned;
use syn::{Expr, Ident, LitBool, LitStr, Token};

/// The option names, as listed in error messages.
const KNOWN: &str = "memory, ignore, key, version, validate, verbose, mmap_mode, name, result, compute_once, strict, memo";

/// The value of `mmap_mode`.
pub(crate) enum MmapModeOption {
    /// A mode given by its joblib name: the `MmapMode` variant.
    Named(Ident),
    /// An expression of type `MmapMode`.
    Expr(Expr),
}

/// What `#[memoize(...)]` was given.
#[derive(Default)]
pub(crate) struct Options {
    /// `memory = EXPR`: anything implementing `AsMemory`; the global memory when absent.
    pub(crate) memory: Option<Expr>,
    /// `ignore = [a, b]`: arguments left out of the hash, by name.
    pub(crate) ignore: Vec<(String, Span)>,
    /// `key = EXPR`: hashed instead of the arguments, evaluated with them in scope.
    pub(crate) key: Option<Expr>,
    /// `version = EXPR`: an explicit version, added to the function's identity.
    pub(crate) version: Option<Expr>,
    /// `validate = EXPR`: anything `Into<Validation>`.
    pub(crate) validate: Option<Expr>,
    /// `verbose = EXPR`: the function's verbosity (`u8`).
    pub(crate) verbose: Option<Expr>,
    /// `mmap_mode = "r"` (a joblib mode name, checked here) or `mmap_mode = EXPR` (a
    /// `MmapMode`): how the arrays of outputs are loaded.
    pub(crate) mmap_mode: Option<MmapModeOption>,
    /// `name = EXPR`: the function's name in the store, instead of its path.
    pub(crate) name: Option<Expr>,
    /// `result` / `result = BOOL`: whether the return type is a `Result` whose `Ok` alone is
    /// stored; guessed from the return type when absent.
    pub(crate) result: Option<bool>,
    /// `compute_once = EXPR`: whether concurrent misses compute once (`bool`); the memory's
    /// setting when absent.
    pub(crate) compute_once: Option<Expr>,
    /// `strict` / `strict = BOOL`: faults of the store are errors of the function, which
    /// returns a `Result` whose error type converts from `cachette::Error`.
    pub(crate) strict: Option<bool>,
    /// `memo` / `memo = BOOL`: outputs are kept decoded in the memory's memo (the output type
    /// must be `Clone + Send + Sync + 'static`).
    pub(crate) memo: Option<bool>,
    /// Where `ignore` was given (to reject it twice, or with `key`).
    ignore_given: Option<Span>,
    /// Where `key` was given.
    key_span: Option<Span>,
}

impl Options {
    /// Parses the tokens inside `#[memoize(...)]`.
    pub(crate) fn parse(tokens: TokenStream) -> syn::Result<Options> {
        let mut options = Options::default();
        let parser = syn::meta::parser(|meta| options.parse_one(meta));
        parser.parse2(tokens)?;
        if let (Some(key), Some(_)) = (options.key_span, options.ignore_given) {
            return Err(syn::Error::new(
                key,
                "`key` and `ignore` cannot be used together: with `key = ..` only the key is \
                 hashed, so every argument is already left out of the hash",
            ));
        }
        Ok(options)
    }

    fn parse_one(&mut self, meta: ParseNestedMeta<'_>) -> syn::Result<()> {
        let Some(key) = meta.path.get_ident().map(Ident::to_string) else {
            return Err(meta.error(format_args!(
                "unknown #[memoize] option; expected one of: {KNOWN}"
            )));
        };
        let duplicate = || meta.error(format_args!("duplicate #[memoize] option `{key}`"));
        match key.as_str() {
            "memory" => set_once(&mut self.memory, meta.value()?.parse()?, duplicate),
            "version" => set_once(&mut self.version, meta.value()?.parse()?, duplicate),
            "validate" => set_once(&mut self.validate, meta.value()?.parse()?, duplicate),
            "verbose" => set_once(&mut self.verbose, meta.value()?.parse()?, duplicate),
            "name" => set_once(&mut self.name, meta.value()?.parse()?, duplicate),
            "mmap_mode" => {
                let value = meta.value()?;
                let option = if value.peek(LitStr) {
                    let lit: LitStr = value.parse()?;
                    let variant = match lit.value().as_str() {
                        "none" | "None" | "" => "None",
                        "r" | "read-only" => "ReadOnly",
                        "c" | "copy-on-write" => "CopyOnWrite",
                        "r+" | "w+" | "read-write" => "ReadWrite",
                        other => {
                            return Err(syn::Error::new(
                                lit.span(),
                                format_args!(
                                    "unknown mmap mode {other:?}; expected \"none\", \"r\", \"c\", \"r+\" or \"w+\""
                                ),
                            ));
                        }
                    };
                    MmapModeOption::Named(Ident::new(variant, lit.span()))
                } else {
                    MmapModeOption::Expr(value.parse()?)
                };
                set_once(&mut self.mmap_mode, option, duplicate)
            }
            "result" => set_once(&mut self.result, flag(&meta)?, duplicate),
            "strict" => set_once(&mut self.strict, flag(&meta)?, duplicate),
            "memo" => set_once(&mut self.memo, flag(&meta)?, duplicate),
            "compute_once" => set_once(&mut self.compute_once, meta.value()?.parse()?, duplicate),
            "key" => {
                self.key_span = Some(meta.path.span());
                set_once(&mut self.key, meta.value()?.parse()?, duplicate)
            }
            "ignore" => {
                if self.ignore_given.is_some() {
                    return Err(duplicate());
                }
                self.ignore_given = Some(meta.path.span());
                let value = meta.value()?;
                let content;
                syn::bracketed!(content in value);
                let names = content.parse_terminated(IgnoredName::parse, Token![,])?;
                self.ignore = names.into_iter().map(|n| (n.name, n.span)).collect();
                Ok(())
            }
            other => Err(meta.error(format_args!(
                "unknown #[memoize] option `{other}`; expected one of: {KNOWN}"
            ))),
        }
    }
}

/// A flag option: `name` alone (true) or `name = true/false`.
fn flag(meta: &ParseNestedMeta<'_>) -> syn::Result<bool> {
    if meta.input.is_empty() || meta.input.peek(Token![,]) {
        Ok(true)
    } else {
        Ok(meta.value()?.parse::<LitBool>()?.value)
    }
}

fn set_once<T>(
    slot: &mut Option<T>,
    value: T,
    duplicate: impl FnOnce() -> syn::Error,
) -> syn::Result<()> {
    if slot.is_some() {
        return Err(duplicate());
    }
    *slot = Some(value);
    Ok(())
}

/// One name in `ignore = [...]`: an identifier or a string.
struct IgnoredName {
    name: String,
    span: Span,
}

impl Parse for IgnoredName {
    fn parse(input: ParseStream<'_>) -> syn::Result<Self> {
        if input.peek(LitStr) {
            let lit: LitStr = input.parse()?;
            return Ok(IgnoredName {
                name: lit.value(),
                span: lit.span(),
            });
        }
        let ident = Ident::parse_any(input)
            .map_err(|e| syn::Error::new(e.span(), "expected an argument name"))?;
        Ok(IgnoredName {
            name: ident.unraw().to_string(),
            span: ident.span(),
        })
    }
}
