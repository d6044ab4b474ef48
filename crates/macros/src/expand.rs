//! What `#[memoize]` turns a function into.
//!
//! For `fn square(x: u64) -> u64 { .. }` it emits, in the function's place:
//!
//! - `fn square(x: u64) -> u64`: the wrapper, which hashes its arguments and loads the stored
//!   result or runs the body;
//! - `enum square {}`: an uninhabited type in the type namespace (so it does not clash with the
//!   function), whose associated functions are the handle: `square::memorized()`,
//!   `square::call(..)`, `square::call_and_shelve(..)`, `square::check_call_in_cache(..)`,
//!   `square::clear()`, and the original body as a hidden `square::__cachette_body`.
//!
//! An `impl` block, unlike a `mod`, resolves names exactly where the function was written, also
//! inside another function's body: the body sees the same items as before, and
//! `type_name::<square>()` gives the function's path, enclosing functions included.

use proc_macro2::{Literal, Span, TokenStream};
use quote::{ToTokens, format_ident, quote, quote_spanned};
use syn::spanned::Spanned;
use syn::visit::Visit;
use syn::{
    Attribute, FnArg, GenericArgument, GenericParam, Ident, ItemFn, Meta, Pat, PathArguments,
    ReturnType, Signature, Type, TypeImplTrait, TypePath, parse_quote,
};

use crate::fingerprint;
use crate::options::{MmapModeOption, Options};

/// Where the generated code finds the library.
fn support() -> TokenStream {
    quote!(::cachette::__macro_support)
}

/// One argument of the memoized function.
struct Arg {
    /// Its name in the wrapper: the argument's own, or `__arg<i>` for a pattern.
    ident: Ident,
    ty: Type,
    /// Its name in metadata and `ignore`.
    name: String,
    /// Whether it is hashed (not ignored).
    kept: bool,
}

/// What the function returns, and what is stored.
struct Output {
    /// The declared return type.
    ret: Type,
    /// For a `Result`, its `Ok` type: only `Ok` is stored. `None` when the whole value is.
    ok: Option<Type>,
}

impl Output {
    /// The stored type: the `R` of `MemorizedFunc<R>`.
    fn stored(&self) -> &Type {
        self.ok.as_ref().unwrap_or(&self.ret)
    }
}

/// Expands `#[memoize(options)] item`.
pub(crate) fn expand(options: Options, item: ItemFn) -> syn::Result<TokenStream> {
    check_signature(&item.sig)?;
    let args = arguments(&item.sig, &options)?;
    let output = output(&item.sig, options.result)?;
    let strict = options.strict.unwrap_or(false);
    if strict && output.ok.is_none() {
        return Err(syn::Error::new(
            match &item.sig.output {
                ReturnType::Type(_, ty) => ty.span(),
                ReturnType::Default => item.sig.ident.span(),
            },
            "`strict` needs a function returning a `Result` whose error type converts from \
             `cachette::Error` (`From<cachette::Error>`, as `anyhow::Error` does): faults of the \
             store are returned as that error",
        ));
    }
    let code_hash = code_hash(&item, &options, &output);

    let ItemFn {
        attrs,
        vis,
        sig,
        block,
    } = item;
    let support = support();
    let name = &sig.ident;
    let is_async = sig.asyncness.is_some();

    let all: Vec<&Ident> = args.iter().map(|a| &a.ident).collect();
    let kept: Vec<&Ident> = args.iter().filter(|a| a.kept).map(|a| &a.ident).collect();
    let by_value: Vec<TokenStream> = args
        .iter()
        .map(|Arg { ident, ty, .. }| quote!(#ident: #ty))
        .collect();
    let by_ref: Vec<TokenStream> = args
        .iter()
        .map(|Arg { ident, ty, .. }| quote!(#ident: &#ty))
        .collect();
    let generics = &sig.generics;
    let where_clause = &sig.generics.where_clause;
    let stored = output.stored();
    let tuple = quote!((#(#kept,)*));
    let ok = quote!(::core::result::Result::Ok);
    let out = Ident::new("__cachette_out", Span::mixed_site());

    // The wrapper: the function as callers see it.
    let wrapper_sig = Signature {
        inputs: parse_quote!(#(#by_value),*),
        ..sig.clone()
    };
    let wrapper_attrs = attrs.iter().map(expect_as_allow);
    // Compile-time checks, with errors on the types at fault.
    let checks = {
        let arguments = args
            .iter()
            .filter(|a| a.kept)
            .map(|Arg { ty, .. }| quote_spanned!(ty.span()=> #support::check_argument::<#ty>();));
        let stored_span = match &sig.output {
            ReturnType::Type(_, ty) => ty.span(),
            ReturnType::Default => name.span(),
        };
        let output = quote_spanned!(stored_span=> #support::check_output::<#stored>(););
        quote!(#(#arguments)* #output)
    };
    let into_inner = quote!(#support::CallError::into_inner);
    let wrapper_body = match (&output.ok, is_async) {
        (Some(_), false) if strict => quote! {
            #name::memorized()
                .try_call_with(#tuple, move |#tuple| #name::__cachette_body(#(#all),*))
                .map_err(#into_inner)
        },
        (Some(_), true) if strict => quote! {
            #name::memorized()
                .try_call_with_async(#tuple, move |#tuple| #name::__cachette_body(#(#all),*))
                .await
                .map_err(#into_inner)
        },
        (None, false) => quote! {
            let #ok(#out) = #name::memorized().call_with(#tuple, move |#tuple| {
                #ok::<_, #support::Infallible>(#name::__cachette_body(#(#all),*))
            });
            #out
        },
        (Some(_), false) => quote! {
            #name::memorized().call_with(#tuple, move |#tuple| #name::__cachette_body(#(#all),*))
        },
        (None, true) => quote! {
            let #ok(#out) = #name::memorized()
                .call_with_async(#tuple, move |#tuple| async move {
                    #ok::<_, #support::Infallible>(#name::__cachette_body(#(#all),*).await)
                })
                .await;
            #out
        },
        (Some(_), true) => quote! {
            #name::memorized()
                .call_with_async(#tuple, move |#tuple| #name::__cachette_body(#(#all),*))
                .await
        },
    };

    // The original body, under another name.
    let body_sig = Signature {
        ident: Ident::new("__cachette_body", name.span()),
        ..sig.clone()
    };
    let body_attrs = attrs.iter().filter(|a| a.path().is_ident("expect"));

    // Attributes the generated type and impl share with the function.
    let cfg_attrs: Vec<&Attribute> = attrs.iter().filter(|a| a.path().is_ident("cfg")).collect();
    let lint_attrs = attrs.iter().filter(|a| is_lint(a)).map(expect_as_allow);

    let memorized = memorized_fn(&vis, name, stored, &args, &options, &code_hash);
    let forced = forced_fns(
        &vis, name, &output, &args, generics, &kept, &all, is_async, strict,
    );

    let check_doc = doc(format!(
        "Whether a call of `{name}` with these arguments would load a stored result: nothing \
         runs and no output is loaded (only the entry's metadata is read, for the validation)."
    ));
    let clear_doc = doc(format!("Deletes every stored result of `{name}`."));
    let (check, clear) = if is_async {
        (
            quote! {
                #check_doc
                #[allow(unused_variables)] // ignored arguments
                #vis async fn check_call_in_cache #generics (#(#by_ref),*) -> bool #where_clause {
                    Self::memorized().check_call_in_cache_async(&#tuple).await
                }
            },
            quote! {
                #clear_doc
                #vis async fn clear() -> ::core::result::Result<(), #support::Error> {
                    Self::memorized().clear_async().await
                }
            },
        )
    } else {
        (
            quote! {
                #check_doc
                #[allow(unused_variables)] // ignored arguments
                #vis fn check_call_in_cache #generics (#(#by_ref),*) -> bool #where_clause {
                    Self::memorized().check_call_in_cache(&#tuple)
                }
            },
            quote! {
                #clear_doc
                #vis fn clear() -> ::core::result::Result<(), #support::Error> {
                    Self::memorized().clear()
                }
            },
        )
    };

    let type_doc = doc(format!(
        "The memoization handle of the function `{name}` (generated by `#[memoize]`): \
         `{name}::memorized()`, `{name}::check_call_in_cache(..)`, `{name}::clear()`{}.",
        if is_async {
            String::new()
        } else {
            format!(", and forced calls `{name}::call(..)` and `{name}::call_and_shelve(..)`")
        }
    ));

    Ok(quote! {
        #(#wrapper_attrs)*
        #vis #wrapper_sig {
            #checks
            #wrapper_body
        }

        #(#cfg_attrs)*
        #type_doc
        #[allow(non_camel_case_types)] // named after the function
        #[allow(dead_code)] // unused when the function is: the function's warning says it
        #[derive(Debug)]
        #vis enum #name {}

        #(#cfg_attrs)*
        #(#lint_attrs)*
        #[allow(dead_code)] // handles the caller may not use
        #[allow(clippy::type_complexity)] // (output, metadata) of arbitrary outputs
        impl #name {
            #memorized

            #(#body_attrs)*
            #[doc(hidden)]
            #body_sig #block

            #forced
            #check
            #clear
        }
    })
}

/// `memorized()`: the `MemorizedFunc`, built on first use.
fn memorized_fn(
    vis: &syn::Visibility,
    name: &Ident,
    stored: &Type,
    args: &[Arg],
    options: &Options,
    code_hash: &str,
) -> TokenStream {
    let support = support();
    let func_name = match &options.name {
        Some(expr) => quote_spanned!(expr.span()=> #expr),
        None => quote!(path),
    };
    let version = options
        .version
        .as_ref()
        .map(|v| quote_spanned!(v.span()=> .with_version(#v)));
    let memory = match &options.memory {
        Some(expr) => quote_spanned! {expr.span()=>
            #support::AsMemory::as_memory(&(#expr))
        },
        None => quote!(&#support::global()),
    };
    let names: Vec<&str> = args
        .iter()
        .filter(|a| a.kept)
        .map(|a| a.name.as_str())
        .collect();
    let arg_names = if names.is_empty() {
        TokenStream::new()
    } else {
        let n = Literal::usize_unsuffixed(names.len());
        quote!(.arg_names::<[&'static str; #n], &'static str>([#(#names),*]))
    };
    let validate = options
        .validate
        .as_ref()
        .map(|v| quote_spanned!(v.span()=> .validate(#v)));
    let verbose = options
        .verbose
        .as_ref()
        .map(|v| quote_spanned!(v.span()=> .verbose(#v)));
    let compute_once = options
        .compute_once
        .as_ref()
        .map(|v| quote_spanned!(v.span()=> .compute_once(#v)));
    let strict = options
        .strict
        .filter(|&on| on)
        .map(|_| quote!(.strict(true)));
    let mmap_mode = options.mmap_mode.as_ref().map(|m| match m {
        MmapModeOption::Named(variant) => {
            quote_spanned!(variant.span()=> .mmap_mode(#support::MmapMode::#variant))
        }
        MmapModeOption::Expr(e) => quote_spanned!(e.span()=> .mmap_mode(#e)),
    });
    let doc = doc(format!(
        "The `MemorizedFunc` of `{name}`, built on first use. Its argument is the tuple of the \
         arguments of `{name}` that are not ignored: `{name}::memorized().check_call_in_cache(&(a, \
         b))`."
    ));
    quote! {
        #doc
        #vis fn memorized() -> &'static #support::MemorizedFunc<#stored> {
            static FUNC: #support::OnceLock<#support::MemorizedFunc<#stored>> =
                #support::OnceLock::new();
            FUNC.get_or_init(|| {
                #support::link_backends();
                let path = ::core::any::type_name::<Self>();
                let origin = ::std::format!(
                    "{} at {}:{}:{}",
                    path,
                    ::core::file!(),
                    ::core::line!(),
                    ::core::column!()
                );
                let id = #support::FuncId::new(#func_name)
                    .with_code_hash(#code_hash)
                    .with_origin(origin)
                    #version;
                #support::MemorizedFunc::new(#memory, id)
                    #arg_names
                    #validate
                    #verbose
                    #mmap_mode
                    #compute_once
                    #strict
            })
        }
    }
}

/// `call(..)` and `call_and_shelve(..)` (`async` for an `async fn`).
#[allow(clippy::too_many_arguments)] // the parts of one function, already taken apart
fn forced_fns(
    vis: &syn::Visibility,
    name: &Ident,
    output: &Output,
    args: &[Arg],
    generics: &syn::Generics,
    kept: &[&Ident],
    all: &[&Ident],
    is_async: bool,
    strict: bool,
) -> TokenStream {
    let support = support();
    let ok = quote!(::core::result::Result::Ok);
    let where_clause = &generics.where_clause;
    let (asyncness, dot_await, suffix) = if is_async {
        (quote!(async), quote!(.await), "_async")
    } else {
        (TokenStream::new(), TokenStream::new(), "")
    };
    // A strict function goes through the `try_` methods, and its error type takes the store's.
    let (try_, into_inner) = if strict {
        ("try_", quote!(.map_err(#support::CallError::into_inner)))
    } else {
        ("", TokenStream::new())
    };
    let force = format_ident!("{}force_call_with{}", try_, suffix);
    let shelve = format_ident!("{}call_and_shelve_with{}", try_, suffix);
    // The body's value, as a `Result` with no error.
    let infallible_body = if is_async {
        quote!(async move { #ok::<_, #support::Infallible>(Self::__cachette_body(#(#all),*).await) })
    } else {
        quote!(#ok::<_, #support::Infallible>(Self::__cachette_body(#(#all),*)))
    };
    let by_value = args.iter().map(|Arg { ident, ty, .. }| quote!(#ident: #ty));
    let by_value2 = by_value.clone();
    let tuple = quote!((#(#kept,)*));
    let out = Ident::new("__cachette_out", Span::mixed_site());
    let call_doc = doc(format!(
        "Runs `{name}` whatever is stored, stores the result, and returns it with its metadata."
    ));
    let shelve_doc = doc(format!(
        "Returns a reference to the stored result of `{name}` for these arguments, running \
         `{name}` first if needed. `get()` loads the value."
    ));
    let ret = &output.ret;
    let (call_ret, call_body, shelve_ret, shelve_body) = match &output.ok {
        None => (
            quote!((#ret, #support::Metadata)),
            quote! {
                let #ok(#out) = Self::memorized()
                    .#force(#tuple, move |#tuple| #infallible_body)
                    #dot_await;
                #out
            },
            quote!(#support::Shelved<#ret>),
            quote! {
                let #ok(#out) = Self::memorized()
                    .#shelve(#tuple, move |#tuple| #infallible_body)
                    #dot_await;
                #out
            },
        ),
        Some(ok_ty) => (
            with_first_argument(ret, parse_quote!((#ok_ty, #support::Metadata)))
                .into_token_stream(),
            quote! {
                Self::memorized()
                    .#force(#tuple, move |#tuple| Self::__cachette_body(#(#all),*))
                    #dot_await
                    #into_inner
            },
            with_first_argument(ret, parse_quote!(#support::Shelved<#ok_ty>)).into_token_stream(),
            quote! {
                Self::memorized()
                    .#shelve(#tuple, move |#tuple| Self::__cachette_body(#(#all),*))
                    #dot_await
                    #into_inner
            },
        ),
    };
    quote! {
        #call_doc
        #vis #asyncness fn call #generics (#(#by_value),*) -> #call_ret #where_clause {
            #call_body
        }

        #shelve_doc
        #vis #asyncness fn call_and_shelve #generics (#(#by_value2),*) -> #shelve_ret #where_clause {
            #shelve_body
        }
    }
}

/// A `#[doc = "..."]` attribute.
fn doc(text: String) -> TokenStream {
    quote!(#[doc = #text])
}

/// Whether an attribute sets a lint level.
fn is_lint(attr: &Attribute) -> bool {
    ["allow", "warn", "deny", "forbid", "expect"]
        .iter()
        .any(|lint| attr.path().is_ident(lint))
}

/// The attribute, with `#[expect(..)]` turned into `#[allow(..)]`: an expectation belongs to
/// the one copy of the function that holds the body.
fn expect_as_allow(attr: &Attribute) -> Attribute {
    let mut attr = attr.clone();
    if let Meta::List(list) = &mut attr.meta
        && list.path.is_ident("expect")
    {
        list.path = parse_quote!(allow);
    }
    attr
}

/// Rejects what cannot be memoized, with errors on the offending tokens.
fn check_signature(sig: &Signature) -> syn::Result<()> {
    let mut errors: Vec<syn::Error> = Vec::new();
    if let Some(constness) = &sig.constness {
        errors.push(syn::Error::new(
            constness.span(),
            "#[memoize] cannot memoize a `const fn`: its calls may run at compile time, where \
             there is no store",
        ));
    }
    if let Some(unsafety) = &sig.unsafety {
        errors.push(syn::Error::new(
            unsafety.span(),
            "#[memoize] cannot memoize an `unsafe fn`: memoize a safe function that makes the \
             unsafe call",
        ));
    }
    if let Some(abi) = &sig.abi {
        errors.push(syn::Error::new(
            abi.span(),
            "#[memoize] cannot memoize an `extern` function: memoize a Rust function that it \
             calls",
        ));
    }
    if let Some(variadic) = &sig.variadic {
        errors.push(syn::Error::new(
            variadic.span(),
            "#[memoize] cannot memoize a variadic function",
        ));
    }
    for param in &sig.generics.params {
        match param {
            GenericParam::Lifetime(_) => {}
            GenericParam::Type(_) | GenericParam::Const(_) => errors.push(syn::Error::new(
                param.span(),
                "#[memoize] cannot memoize a generic function: its results live in one store \
                 folder, under one static. Memoize a non-generic function per type, each \
                 calling the generic one",
            )),
        }
    }
    for input in &sig.inputs {
        match input {
            FnArg::Receiver(receiver) => errors.push(syn::Error::new(
                receiver.span(),
                "#[memoize] cannot memoize a method. Memoize at construction and ignore `self`: \
                 call a #[memoize] free function from the method, passing it what the result \
                 depends on, or keep in the struct a `MemorizedFunc` built by `Memory::cache` \
                 in its constructor (see the documentation of `memoize`)",
            )),
            FnArg::Typed(typed) => {
                let mut finder = Forbidden::default();
                finder.visit_type(&typed.ty);
                if let Some(span) = finder.impl_trait {
                    errors.push(syn::Error::new(
                        span,
                        "#[memoize] cannot memoize a function with an `impl Trait` argument (a \
                         generic in disguise): take a concrete type, such as `&[T]`, `&str` or \
                         a `Vec`",
                    ));
                }
                if let Some(span) = finder.self_type {
                    errors.push(self_error(span));
                }
            }
        }
    }
    if let ReturnType::Type(_, ty) = &sig.output {
        let mut finder = Forbidden::default();
        finder.visit_type(ty);
        if let Some(span) = finder.impl_trait {
            errors.push(syn::Error::new(
                span,
                "#[memoize] cannot memoize a function returning `impl Trait`: the output is \
                 stored, so it needs a concrete type implementing `Serialize` and \
                 `DeserializeOwned`",
            ));
        }
        if let Some(span) = finder.self_type {
            errors.push(self_error(span));
        }
    }
    match errors.into_iter().reduce(|mut all, e| {
        all.combine(e);
        all
    }) {
        Some(error) => Err(error),
        None => Ok(()),
    }
}

fn self_error(span: Span) -> syn::Error {
    syn::Error::new(
        span,
        "#[memoize] memoizes free functions, not associated functions: `Self` has no meaning \
         here. Memoize a free function and call it from the `impl`",
    )
}

/// Finds `impl Trait` and `Self` in a type.
#[derive(Default)]
struct Forbidden {
    impl_trait: Option<Span>,
    self_type: Option<Span>,
}

impl<'ast> Visit<'ast> for Forbidden {
    fn visit_type_impl_trait(&mut self, ty: &'ast TypeImplTrait) {
        self.impl_trait.get_or_insert(ty.span());
    }

    fn visit_type_path(&mut self, ty: &'ast TypePath) {
        if ty.qself.is_none() && ty.path.segments.first().is_some_and(|s| s.ident == "Self") {
            self.self_type.get_or_insert(ty.span());
        }
        syn::visit::visit_type_path(self, ty);
    }
}

/// The arguments, with their names and whether they are hashed.
fn arguments(sig: &Signature, options: &Options) -> syn::Result<Vec<Arg>> {
    let mut args = Vec::new();
    for (i, input) in sig.inputs.iter().enumerate() {
        let FnArg::Typed(typed) = input else {
            continue; // rejected by check_signature
        };
        let (ident, name) = match &*typed.pat {
            Pat::Ident(pat) if pat.by_ref.is_none() && pat.subpat.is_none() => {
                let ident = pat.ident.clone();
                let name = syn::ext::IdentExt::unraw(&ident).to_string();
                (ident, name)
            }
            _ => (
                format_ident!("__arg{}", i, span = Span::mixed_site()),
                format!("arg{i}"),
            ),
        };
        args.push(Arg {
            ident,
            ty: (*typed.ty).clone(),
            name,
            kept: true,
        });
    }
    let mut errors: Vec<syn::Error> = Vec::new();
    for (ignored, span) in &options.ignore {
        match args.iter_mut().find(|a| a.name == *ignored) {
            Some(arg) => arg.kept = false,
            None => {
                let known: Vec<&str> = args.iter().map(|a| a.name.as_str()).collect();
                errors.push(syn::Error::new(
                    *span,
                    format!(
                        "cannot ignore `{ignored}`: `{}` has no argument of that name (its \
                         arguments: {})",
                        sig.ident,
                        if known.is_empty() {
                            "none".to_owned()
                        } else {
                            known.join(", ")
                        }
                    ),
                ));
            }
        }
    }
    match errors.into_iter().reduce(|mut all, e| {
        all.combine(e);
        all
    }) {
        Some(error) => Err(error),
        None => Ok(args),
    }
}

/// What the function returns: a `Result` (whose `Ok` alone is stored) or a plain value.
///
/// The rule: a return type whose last path segment is `Result` with one or two generic
/// arguments (`Result<T, E>`, `io::Result<T>`, `anyhow::Result<T>`) is a `Result`, and `T` is
/// what is stored. `result = false` stores the whole value instead; `result` (or
/// `result = true`) treats any type with a first generic argument as a `Result` alias.
fn output(sig: &Signature, forced: Option<bool>) -> syn::Result<Output> {
    let ret: Type = match &sig.output {
        ReturnType::Default => parse_quote!(()),
        ReturnType::Type(_, ty) => (**ty).clone(),
    };
    if forced == Some(false) {
        return Ok(Output { ret, ok: None });
    }
    let named_result = last_segment_arguments(&ret)
        .is_some_and(|(ident, n)| ident == "Result" && (n == 1 || n == 2));
    if !(named_result || forced == Some(true)) {
        return Ok(Output { ret, ok: None });
    }
    match first_type_argument(&ret) {
        Some(ok) => Ok(Output { ret, ok: Some(ok) }),
        None => Err(syn::Error::new(
            ret.span(),
            "`result` needs a return type written like `Result<T, E>` or `io::Result<T>`: \
             `Ok(T)` is stored and `Err` is returned without being stored",
        )),
    }
}

/// The last segment's name and number of generic arguments, for a plain path type.
fn last_segment_arguments(ty: &Type) -> Option<(String, usize)> {
    let Type::Path(TypePath { qself: None, path }) = ty else {
        return None;
    };
    let last = path.segments.last()?;
    let n = match &last.arguments {
        PathArguments::AngleBracketed(args) => args.args.len(),
        _ => 0,
    };
    Some((last.ident.to_string(), n))
}

fn first_type_argument(ty: &Type) -> Option<Type> {
    let Type::Path(TypePath { qself: None, path }) = ty else {
        return None;
    };
    let PathArguments::AngleBracketed(args) = &path.segments.last()?.arguments else {
        return None;
    };
    match args.args.first()? {
        GenericArgument::Type(ty) => Some(ty.clone()),
        _ => None,
    }
}

/// `ty` with its first generic argument replaced: `io::Result<T>` becomes `io::Result<new>`.
fn with_first_argument(ty: &Type, new: Type) -> Type {
    let mut ty = ty.clone();
    if let Type::Path(TypePath { path, .. }) = &mut ty
        && let Some(last) = path.segments.last_mut()
        && let PathArguments::AngleBracketed(args) = &mut last.arguments
        && let Some(first) = args.args.first_mut()
    {
        *first = GenericArgument::Type(new);
    }
    ty
}

/// The code hash: the function's signature and body in normal form, and the options that
/// change what is stored under which key.
fn code_hash(item: &ItemFn, options: &Options, output: &Output) -> String {
    let mut normal = String::from("cachette-memoize 1\n");
    fingerprint::normalize(item.sig.to_token_stream(), &mut normal);
    fingerprint::normalize(item.block.to_token_stream(), &mut normal);
    let mut ignored: Vec<&str> = options.ignore.iter().map(|(n, _)| n.as_str()).collect();
    ignored.sort_unstable();
    ignored.dedup();
    normal.push_str(&format!(
        "\nresult: {}\nignore: {}",
        output.ok.is_some(),
        ignored.join(",")
    ));
    fingerprint::code_hash(&normal)
}

#[cfg(test)]
#[path = "expand_tests.rs"]
mod tests;
