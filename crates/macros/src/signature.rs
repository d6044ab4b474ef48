//! What `#[memoize]` reads from the function it is given: its arguments (and which are
//! hashed), its receiver, what it returns and stores, the checks that refuse what cannot be
//! memoized, and the hash of its code. [`crate::expand`] writes the expansion from these.

use proc_macro2::{Span, TokenStream};
use quote::{ToTokens, format_ident, quote};
use syn::spanned::Spanned;
use syn::visit::Visit;
use syn::{
    FnArg, GenericArgument, GenericParam, Ident, ItemFn, Pat, PathArguments, Receiver, ReturnType,
    Signature, Type, TypeImplTrait, TypePath, parse_quote,
};

use crate::fingerprint;
use crate::options::Options;

/// The most arguments hashed as one tuple: serde implements `Serialize` for tuples of up to
/// 16 elements.
pub(crate) const MAX_HASHED: usize = 16;

/// One argument of the memoized function.
pub(crate) struct Arg {
    /// Its name in the wrapper: the argument's own, or `__arg<i>` for a pattern.
    pub(crate) ident: Ident,
    pub(crate) ty: Type,
    /// Its name in metadata and `ignore`.
    pub(crate) name: String,
    /// Whether it is hashed (not ignored, and no `key`).
    pub(crate) kept: bool,
}

/// The receiver of a method.
pub(crate) struct Recv {
    /// As the wrapper declares it: `&self`, `&mut self`, `self`, `self: Box<Self>` (without
    /// `mut`, which belongs to the body).
    pub(crate) decl: TokenStream,
    /// The `self` token.
    pub(crate) token: syn::token::SelfValue,
    /// The type whose `Serialize` hashing it needs: `Self`, or the declared type without its
    /// outer references.
    pub(crate) hashed: Type,
    /// Whether it is `Self` by value (borrowed with `&`), not a reference or a smart pointer
    /// (borrowed with `&*`).
    pub(crate) by_value: bool,
    /// Whether it is hashed.
    pub(crate) kept: bool,
}

/// What the function returns, and what is stored.
pub(crate) struct Output {
    /// The declared return type.
    pub(crate) ret: Type,
    /// For a `Result`, its `Ok` type: only `Ok` is stored. `None` when the whole value is.
    pub(crate) ok: Option<Type>,
}

impl Output {
    /// The stored type: the `R` of `MemorizedFunc<R>`.
    pub(crate) fn stored(&self) -> &Type {
        self.ok.as_ref().unwrap_or(&self.ret)
    }
}

/// Rejects what cannot be memoized, with errors on the offending tokens.
pub(crate) fn check_signature(sig: &Signature) -> syn::Result<()> {
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
            FnArg::Receiver(_) => {}
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
    }
    match errors.into_iter().reduce(|mut all, e| {
        all.combine(e);
        all
    }) {
        Some(error) => Err(error),
        None => Ok(()),
    }
}

/// Whether the function is a method or an associated function: it has a `self` receiver, or
/// names `Self` in its signature (which a free function cannot). An associated function that
/// does neither cannot be told from a free function.
pub(crate) fn is_associated(sig: &Signature) -> bool {
    let mut finder = Forbidden::default();
    for input in &sig.inputs {
        match input {
            FnArg::Receiver(_) => return true,
            FnArg::Typed(typed) => finder.visit_type(&typed.ty),
        }
    }
    if let ReturnType::Type(_, ty) = &sig.output {
        finder.visit_type(ty);
    }
    finder.self_type.is_some()
}

/// The receiver of a method, and whether it is hashed (`ignore = [self]` leaves it out).
pub(crate) fn receiver(sig: &Signature, options: &Options) -> Option<Recv> {
    let Some(FnArg::Receiver(receiver)) = sig.inputs.first() else {
        return None;
    };
    let Receiver {
        attrs,
        reference,
        mutability,
        self_token,
        colon_token,
        ty,
    } = receiver;
    let decl = match (reference, colon_token) {
        (Some((and, lifetime)), None) => quote!(#(#attrs)* #and #lifetime #mutability #self_token),
        (None, None) => quote!(#(#attrs)* #self_token),
        (_, Some(colon)) => quote!(#(#attrs)* #self_token #colon #ty),
    };
    // `Self` on the `self` token, where the error of its check points.
    let self_type = Ident::new("Self", self_token.span);
    let (hashed, by_value) = match (reference, colon_token) {
        (None, None) => (parse_quote!(#self_type), true),
        (Some(_), None) => (parse_quote!(#self_type), false),
        (_, Some(_)) => {
            let hashed = strip_references(ty).clone();
            let by_value = matches!(&hashed, Type::Path(p) if p.qself.is_none() && p.path.is_ident("Self"))
                && !matches!(&**ty, Type::Reference(_));
            (hashed, by_value)
        }
    };
    Some(Recv {
        decl,
        token: *self_token,
        hashed,
        by_value,
        kept: !options.ignore.iter().any(|(name, _)| name == "self"),
    })
}

/// Rejects more hashed arguments than a serde tuple holds.
pub(crate) fn check_hashed_count(
    sig: &Signature,
    recv: Option<&Recv>,
    args: &[Arg],
    options: &Options,
) -> syn::Result<()> {
    if options.key.is_some() {
        return Ok(());
    }
    let receiver = usize::from(recv.is_some_and(|r| r.kept));
    let kept: Vec<&Arg> = args.iter().filter(|a| a.kept).collect();
    if receiver + kept.len() <= MAX_HASHED {
        return Ok(());
    }
    let first_over = kept[MAX_HASHED - receiver].ty.span();
    Err(syn::Error::new(
        first_over,
        format!(
            "#[memoize] hashes at most {MAX_HASHED} arguments (`{}` has {}): leave some out \
             with `ignore = [..]`, or hash what the result depends on with `key = ..`",
            sig.ident,
            receiver + kept.len()
        ),
    ))
}

/// Finds `impl Trait` and `Self` in a type.
#[derive(Default)]
pub(crate) struct Forbidden {
    pub(crate) impl_trait: Option<Span>,
    pub(crate) self_type: Option<Span>,
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
pub(crate) fn arguments(sig: &Signature, options: &Options) -> syn::Result<Vec<Arg>> {
    let mut args = Vec::new();
    for (i, input) in sig.inputs.iter().enumerate() {
        let FnArg::Typed(typed) = input else {
            continue; // the receiver
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
    let has_receiver = matches!(sig.inputs.first(), Some(FnArg::Receiver(_)));
    let mut errors: Vec<syn::Error> = Vec::new();
    for (ignored, span) in &options.ignore {
        if has_receiver && ignored == "self" {
            continue;
        }
        match args.iter_mut().find(|a| a.name == *ignored) {
            Some(arg) => arg.kept = false,
            None => {
                let known: Vec<&str> = has_receiver
                    .then_some("self")
                    .into_iter()
                    .chain(args.iter().map(|a| a.name.as_str()))
                    .collect();
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
pub(crate) fn output(sig: &Signature, forced: Option<bool>) -> syn::Result<Output> {
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
pub(crate) fn last_segment_arguments(ty: &Type) -> Option<(String, usize)> {
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

pub(crate) fn first_type_argument(ty: &Type) -> Option<Type> {
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
pub(crate) fn with_first_argument(ty: &Type, new: Type) -> Type {
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
pub(crate) fn code_hash(item: &ItemFn, options: &Options, output: &Output) -> String {
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
    if let Some(key) = &options.key {
        normal.push_str("\nkey: ");
        fingerprint::normalize(key.to_token_stream(), &mut normal);
    }
    fingerprint::code_hash(&normal)
}

/// The type without its outer references: `&[T]` is `Serialize` exactly when `[T]` is, and the
/// error names the type the user wrote.
pub(crate) fn strip_references(ty: &Type) -> &Type {
    match ty {
        Type::Reference(reference) => strip_references(&reference.elem),
        Type::Paren(paren) => strip_references(&paren.elem),
        other => other,
    }
}
