//! What `#[memoize]` turns a function into.
//!
//! For a free function `fn square(x: u64) -> u64 { .. }` it emits, in the function's place:
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
//!
//! A method (`self` receiver, or `Self` in the signature) lives in an `impl` block, where only
//! associated items can go: the handle is a set of associated functions named after the method
//! (`predict_memorized()`, `predict_call(..)`, `predict_call_and_shelve(..)`,
//! `predict_check_call_in_cache(..)`, `predict_clear()`), and the body a hidden
//! `__cachette_predict`.
//!
//! Every call of the `MemorizedFunc` goes through `__macro_support::dispatch`, and the types
//! are checked once, in the wrapper, with errors on the types at fault: a type that is not
//! `Serialize` is one error, not one per generated call.

use proc_macro2::{Literal, Span, TokenStream, TokenTree};
use quote::{ToTokens, format_ident, quote, quote_spanned};
use syn::spanned::Spanned;
use syn::visit::Visit;
use syn::{
    Attribute, Expr, FnArg, GenericArgument, GenericParam, Ident, ItemFn, Meta, Pat, PathArguments,
    Receiver, ReturnType, Signature, Type, TypeImplTrait, TypePath, parse_quote,
};

use crate::fingerprint;
use crate::options::{MmapModeOption, Options};

/// Where the generated code finds the library.
fn support() -> TokenStream {
    quote!(::cachette::__macro_support)
}

/// The most arguments hashed as one tuple: serde implements `Serialize` for tuples of up to
/// 16 elements.
const MAX_HASHED: usize = 16;

/// One argument of the memoized function.
struct Arg {
    /// Its name in the wrapper: the argument's own, or `__arg<i>` for a pattern.
    ident: Ident,
    ty: Type,
    /// Its name in metadata and `ignore`.
    name: String,
    /// Whether it is hashed (not ignored, and no `key`).
    kept: bool,
}

/// The receiver of a method.
struct Recv {
    /// As the wrapper declares it: `&self`, `&mut self`, `self`, `self: Box<Self>` (without
    /// `mut`, which belongs to the body).
    decl: TokenStream,
    /// The `self` token.
    token: syn::token::SelfValue,
    /// The type whose `Serialize` hashing it needs: `Self`, or the declared type without its
    /// outer references.
    hashed: Type,
    /// Whether it is `Self` by value (borrowed with `&`), not a reference or a smart pointer
    /// (borrowed with `&*`).
    by_value: bool,
    /// Whether it is hashed.
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

/// Which call of the `MemorizedFunc` a generated function makes.
#[derive(Clone, Copy)]
enum Call {
    /// The wrapper: loads the stored result or runs the body.
    Cached,
    /// `call`: runs the body whatever is stored.
    Forced,
    /// `call_and_shelve`: a reference to the stored result.
    Shelved,
}

impl Call {
    fn method(self, strict: bool, is_async: bool) -> Ident {
        let base = match self {
            Call::Cached => "call_with",
            Call::Forced => "force_call_with",
            Call::Shelved => "call_and_shelve_with",
        };
        format_ident!(
            "{}{}{}",
            if strict { "try_" } else { "" },
            base,
            if is_async { "_async" } else { "" }
        )
    }
}

/// Everything the generated functions are made from.
struct Func {
    options: Options,
    attrs: Vec<Attribute>,
    vis: syn::Visibility,
    sig: Signature,
    block: Box<syn::Block>,
    /// The receiver, for a method.
    recv: Option<Recv>,
    /// Whether it is a method or an associated function (in an `impl` block).
    method: bool,
    args: Vec<Arg>,
    output: Output,
    strict: bool,
    code_hash: String,
}

/// Expands `#[memoize(options)] item`.
pub(crate) fn expand(options: Options, item: ItemFn) -> syn::Result<TokenStream> {
    let method = is_associated(&item.sig);
    check_signature(&item.sig)?;
    let recv = receiver(&item.sig, &options);
    let args = arguments(&item.sig, &options)?;
    check_hashed_count(&item.sig, recv.as_ref(), &args, &options)?;
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
    let func = Func {
        options,
        attrs,
        vis,
        sig,
        block,
        recv,
        method,
        args,
        output,
        strict,
        code_hash,
    };
    Ok(if func.method {
        func.expand_method()
    } else {
        func.expand_free()
    })
}

/// The local names of the generated code: hygienic, so that the user's code (the key
/// expression) cannot see them.
fn local(name: &str) -> Ident {
    Ident::new(name, Span::mixed_site())
}

impl Func {
    fn name(&self) -> &Ident {
        &self.sig.ident
    }

    fn is_async(&self) -> bool {
        self.sig.asyncness.is_some()
    }

    /// `memorized()` as the generated code reaches it.
    fn memorized_call(&self) -> TokenStream {
        let name = self.name();
        if self.method {
            let memorized = format_ident!("{}_memorized", name);
            quote!(Self::#memorized())
        } else {
            quote!(#name::memorized())
        }
    }

    /// A call of the original body with every argument, receiver first.
    fn body_call(&self) -> TokenStream {
        let all = self.args.iter().map(|a| &a.ident);
        let receiver = self.recv.as_ref().map(|_| local("__cachette_self"));
        let receiver = receiver.iter();
        if self.method {
            let body = self.body_name();
            quote!(Self::#body(#(#receiver,)* #(#all),*))
        } else {
            let name = self.name();
            quote!(#name::__cachette_body(#(#all),*))
        }
    }

    fn body_name(&self) -> Ident {
        if self.method {
            format_ident!("__cachette_{}", self.name())
        } else {
            Ident::new("__cachette_body", self.name().span())
        }
    }

    /// The hashed names and their bindings in a closure's argument: the kept arguments, in
    /// order, receiver first.
    fn kept_idents(&self) -> Vec<Ident> {
        let receiver = self
            .recv
            .as_ref()
            .filter(|r| r.kept && self.options.key.is_none())
            .map(|_| local("__cachette_self"));
        receiver
            .into_iter()
            .chain(
                self.args
                    .iter()
                    .filter(|a| a.kept && self.options.key.is_none())
                    .map(|a| a.ident.clone()),
            )
            .collect()
    }

    /// Binds the receiver to `__cachette_self`, for a method.
    fn prologue(&self) -> TokenStream {
        match &self.recv {
            Some(recv) => {
                let token = &recv.token;
                let this = local("__cachette_self");
                quote!(let #this = #token;)
            }
            None => TokenStream::new(),
        }
    }

    /// The value hashed: the tuple of kept arguments, or the key. `by_ref` is for
    /// `check_call_in_cache`, whose arguments (and receiver) are references already.
    fn hashed_value(&self, by_ref: bool) -> TokenStream {
        let Some(key) = &self.options.key else {
            let kept = self.kept_idents();
            return quote!((#(#kept,)*));
        };
        // The key sees every argument as a reference, in every generated function, so that it
        // can neither move an argument nor differ between them.
        let this = local("__cachette_self");
        let borrows = if by_ref {
            TokenStream::new()
        } else {
            let args = self.args.iter().map(|a| {
                let ident = &a.ident;
                quote!(#[allow(unused_variables)] let #ident = &#ident;)
            });
            let receiver = self.recv.as_ref().map(|recv| {
                if recv.by_value {
                    quote!(#[allow(unused_variables)] let #this = &#this;)
                } else {
                    quote!(#[allow(unused_variables)] let #this = &*#this;)
                }
            });
            quote!(#(#args)* #receiver)
        };
        let key = replace_self(key.to_token_stream(), &this);
        quote!({ #borrows #key })
    }

    /// The compile-time checks of the types, once per function (in the wrapper), each with its
    /// error on the type at fault.
    fn checks(&self) -> TokenStream {
        let support = support();
        let mut checks = Vec::new();
        if self.method {
            // A `static` in a generic impl would be shared by all its instances.
            checks.push(quote! {
                let _: [(); { let _ = ::core::marker::PhantomData::<Self>; 0 }] = [];
            });
        }
        if self.options.key.is_none() {
            if let Some(recv) = self.recv.as_ref().filter(|r| r.kept) {
                let ty = &recv.hashed;
                checks.push(quote_spanned! {recv.token.span=>
                    <#ty as #support::Receiver>::check();
                });
            }
            for arg in self.args.iter().filter(|a| a.kept) {
                let ty = strip_references(&arg.ty);
                checks.push(quote_spanned! {arg.ty.span()=>
                    <#ty as #support::Argument>::check();
                });
            }
        }
        let stored = self.output.stored();
        let span = match &self.sig.output {
            ReturnType::Type(_, ty) => ty.span(),
            ReturnType::Default => self.name().span(),
        };
        checks.push(quote_spanned! {span=> <#stored as #support::Output>::check();});
        quote!(#(#checks)*)
    }

    /// The body of the wrapper, `call` or `call_and_shelve`.
    fn invoke(&self, call: Call) -> TokenStream {
        let support = support();
        let ok = quote!(::core::result::Result::Ok);
        let is_async = self.is_async();
        let method = call.method(self.strict, is_async);
        let args = local("__cachette_args");
        let gate = local("__cachette_gate");
        let out = local("__cachette_out");
        let memorized = self.memorized_call();
        let prologue = self.prologue();
        let value = self.hashed_value(false);
        let checks = match call {
            Call::Cached => {
                let key = self.options.key.as_ref().map(|key| {
                    // On the key expression, where its error points.
                    let span = key.span();
                    let args = Ident::new("__cachette_args", Span::mixed_site().located_at(span));
                    quote_spanned!(span=> #support::Key::check(&#args);)
                });
                let types = self.checks();
                quote!(#types #key)
            }
            Call::Forced | Call::Shelved => TokenStream::new(),
        };
        let pattern = if self.options.key.is_some() {
            quote!(_)
        } else {
            let kept = self.kept_idents();
            quote!((#(#kept,)*))
        };
        let body = self.body_call();
        let compute = match (&self.output.ok, is_async) {
            (Some(_), _) => body,
            (None, false) => quote!(#ok::<_, #support::Infallible>(#body)),
            (None, true) => quote!(async move { #ok::<_, #support::Infallible>(#body.await) }),
        };
        let dot_await = is_async.then(|| quote!(.await));
        let into_inner = self
            .strict
            .then(|| quote!(.map_err(#support::CallError::into_inner)));
        let result = quote! {
            (&&#gate).#method(#args, move |#pattern| #compute) #dot_await #into_inner
        };
        let result = match self.output.ok {
            Some(_) => result,
            None => quote! {
                let #ok(#out) = #result;
                #out
            },
        };
        quote! {
            use #support::dispatch::{Ready as _, Unready as _};
            #prologue
            let #args = #value;
            #checks
            let #gate = #support::dispatch::Gate::new(#memorized, &#args);
            #result
        }
    }

    /// The body of `check_call_in_cache`.
    fn check_body(&self) -> TokenStream {
        let support = support();
        let args = local("__cachette_args");
        let gate = local("__cachette_gate");
        let memorized = self.memorized_call();
        let prologue = self.prologue();
        let value = self.hashed_value(true);
        let (method, dot_await) = if self.is_async() {
            (quote!(check_call_in_cache_async), quote!(.await))
        } else {
            (quote!(check_call_in_cache), TokenStream::new())
        };
        quote! {
            use #support::dispatch::{Ready as _, Unready as _};
            #prologue
            let #args = #value;
            let #gate = #support::dispatch::Gate::new(#memorized, &#args);
            (&&#gate).#method(&#args) #dot_await
        }
    }

    /// The `MemorizedFunc`, as built on first use from `path`, the function's name.
    fn build(&self, path: TokenStream) -> TokenStream {
        let support = support();
        let options = &self.options;
        let code_hash = &self.code_hash;
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
        let names = self.hashed_names();
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
        let strict = self.strict.then(|| quote!(.strict(true)));
        let mmap_mode = options.mmap_mode.as_ref().map(|m| match m {
            MmapModeOption::Named(variant) => {
                quote_spanned!(variant.span()=> .mmap_mode(#support::MmapMode::#variant))
            }
            MmapModeOption::Expr(e) => quote_spanned!(e.span()=> .mmap_mode(#e)),
        });
        quote! {
            #support::link_backends();
            let path = #path;
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
        }
    }

    /// The names of the hashed values, for metadata: the kept arguments, or the parts of the
    /// key.
    fn hashed_names(&self) -> Vec<String> {
        if let Some(key) = &self.options.key {
            return match key {
                Expr::Tuple(tuple) => tuple
                    .elems
                    .iter()
                    .map(|e| compact(e.to_token_stream()))
                    .collect(),
                other => vec![compact(other.to_token_stream())],
            };
        }
        let receiver = self
            .recv
            .as_ref()
            .filter(|r| r.kept)
            .map(|_| "self".to_owned());
        receiver
            .into_iter()
            .chain(self.args.iter().filter(|a| a.kept).map(|a| a.name.clone()))
            .collect()
    }

    /// The arguments as the wrapper declares them: by value, without their patterns.
    fn by_value(&self) -> Vec<TokenStream> {
        let receiver = self.recv.as_ref().map(|r| r.decl.clone());
        receiver
            .into_iter()
            .chain(
                self.args
                    .iter()
                    .map(|Arg { ident, ty, .. }| quote!(#ident: #ty)),
            )
            .collect()
    }

    /// The arguments of `check_call_in_cache`: by reference, the receiver as `&self`.
    fn by_ref(&self) -> Vec<TokenStream> {
        let receiver = self.recv.as_ref().map(|_| quote!(&self));
        receiver
            .into_iter()
            .chain(
                self.args
                    .iter()
                    .map(|Arg { ident, ty, .. }| quote!(#ident: &#ty)),
            )
            .collect()
    }

    /// The wrapper: the function as callers see it.
    fn wrapper(&self) -> TokenStream {
        let inputs = self.by_value();
        let sig = Signature {
            inputs: parse_quote!(#(#inputs),*),
            ..self.sig.clone()
        };
        let attrs = self.attrs.iter().map(expect_as_allow);
        let body = self.invoke(Call::Cached);
        let vis = &self.vis;
        quote! {
            #(#attrs)*
            #vis #sig {
                #body
            }
        }
    }

    /// The original function, renamed.
    fn body_fn(&self) -> TokenStream {
        let sig = Signature {
            ident: self.body_name(),
            ..self.sig.clone()
        };
        let attrs = self.attrs.iter().filter(|a| a.path().is_ident("expect"));
        let block = &self.block;
        quote! {
            #(#attrs)*
            #[doc(hidden)]
            #sig #block
        }
    }

    /// `call`, `call_and_shelve`, `check_call_in_cache` and `clear`, under the given names.
    fn handle_fns(&self, names: [Ident; 4], shared: &TokenStream) -> TokenStream {
        let support = support();
        let name = self.name();
        let vis = &self.vis;
        let generics = &self.sig.generics;
        let where_clause = &self.sig.generics.where_clause;
        let is_async = self.is_async();
        let asyncness = is_async.then(|| quote!(async));
        let [call, shelve, check, clear] = names;
        let ret = &self.output.ret;
        let (call_ret, shelve_ret) = match &self.output.ok {
            None => (
                quote!((#ret, #support::Metadata)),
                quote!(#support::Shelved<#ret>),
            ),
            Some(ok) => (
                with_first_argument(ret, parse_quote!((#ok, #support::Metadata)))
                    .into_token_stream(),
                with_first_argument(ret, parse_quote!(#support::Shelved<#ok>)).into_token_stream(),
            ),
        };
        let by_value = self.by_value();
        let by_ref = self.by_ref();
        let call_body = self.invoke(Call::Forced);
        let shelve_body = self.invoke(Call::Shelved);
        let check_body = self.check_body();
        let memorized = self.memorized_call();
        let clear_body = if is_async {
            quote!(#memorized.clear_async().await)
        } else {
            quote!(#memorized.clear())
        };
        let call_doc = doc(format!(
            "Runs `{name}` whatever is stored, stores the result, and returns it with its \
             metadata."
        ));
        let shelve_doc = doc(format!(
            "Returns a reference to the stored result of `{name}` for these arguments, running \
             `{name}` first if needed. `get()` loads the value."
        ));
        let check_doc = doc(format!(
            "Whether a call of `{name}` with these arguments would load a stored result: nothing \
             runs and no output is loaded (only the entry's metadata is read, for the validation)."
        ));
        let clear_doc = doc(format!("Deletes every stored result of `{name}`."));
        quote! {
            #call_doc
            #shared
            #vis #asyncness fn #call #generics (#(#by_value),*) -> #call_ret #where_clause {
                #call_body
            }

            #shelve_doc
            #shared
            #vis #asyncness fn #shelve #generics (#(#by_value),*) -> #shelve_ret #where_clause {
                #shelve_body
            }

            #check_doc
            #shared
            #[allow(unused_variables)] // ignored arguments
            #[allow(clippy::ptr_arg)] // a reference to each argument's type, as declared
            #vis #asyncness fn #check #generics (#(#by_ref),*) -> bool #where_clause {
                #check_body
            }

            #clear_doc
            #shared
            #vis #asyncness fn #clear() -> ::core::result::Result<(), #support::Error> {
                #clear_body
            }
        }
    }

    /// A free function: the wrapper, and a type of the same name holding the handle.
    fn expand_free(&self) -> TokenStream {
        let support = support();
        let name = self.name();
        let vis = &self.vis;
        let stored = self.output.stored();
        let wrapper = self.wrapper();
        let body = self.body_fn();
        let build = self.build(quote!(::core::any::type_name::<Self>()));
        let handle = self.handle_fns(
            [
                Ident::new("call", name.span()),
                Ident::new("call_and_shelve", name.span()),
                Ident::new("check_call_in_cache", name.span()),
                Ident::new("clear", name.span()),
            ],
            &TokenStream::new(),
        );
        // Attributes the generated type and impl share with the function.
        let cfg_attrs: Vec<&Attribute> = self
            .attrs
            .iter()
            .filter(|a| a.path().is_ident("cfg"))
            .collect();
        let lint_attrs = self
            .attrs
            .iter()
            .filter(|a| is_lint(a))
            .map(expect_as_allow);
        let memorized_doc = doc(format!(
            "The `MemorizedFunc` of `{name}`, built on first use. Its argument is the tuple of \
             the arguments of `{name}` that are not ignored: \
             `{name}::memorized().check_call_in_cache(&(a, b))`."
        ));
        let type_doc = doc(format!(
            "The memoization handle of the function `{name}` (generated by `#[memoize]`): \
             `{name}::memorized()`, `{name}::check_call_in_cache(..)`, `{name}::clear()`, and \
             forced calls `{name}::call(..)` and `{name}::call_and_shelve(..)`."
        ));
        quote! {
            #wrapper

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
                #memorized_doc
                #vis fn memorized() -> &'static #support::MemorizedFunc<#stored> {
                    static FUNC: #support::OnceLock<#support::MemorizedFunc<#stored>> =
                        #support::OnceLock::new();
                    FUNC.get_or_init(|| { #build })
                }

                #body

                #handle
            }
        }
    }

    /// A method or associated function: the wrapper and the handle, as associated functions.
    fn expand_method(&self) -> TokenStream {
        let support = support();
        let name = self.name();
        let vis = &self.vis;
        let stored = self.output.stored();
        let wrapper = self.wrapper();
        let body = self.body_fn();
        let name_str = syn::ext::IdentExt::unraw(name).to_string();
        let build = self.build(quote! {
            ::std::format!("{}::{}", ::core::any::type_name::<Self>(), #name_str)
        });
        let cfg_attrs = self.attrs.iter().filter(|a| a.path().is_ident("cfg"));
        let lint_attrs = self
            .attrs
            .iter()
            .filter(|a| is_lint(a))
            .map(expect_as_allow);
        let shared = quote! {
            #(#cfg_attrs)*
            #(#lint_attrs)*
            #[allow(dead_code)] // handles the caller may not use
            #[allow(clippy::type_complexity)] // (output, metadata) of arbitrary outputs
        };
        let named = |suffix: &str| format_ident!("{}_{}", name, suffix, span = name.span());
        let handle = self.handle_fns(
            [
                named("call"),
                named("call_and_shelve"),
                named("check_call_in_cache"),
                named("clear"),
            ],
            &shared,
        );
        let memorized = named("memorized");
        let hashed = if self.options.key.is_some() {
            "the key"
        } else {
            "the tuple of its hashed arguments (`self` first when it is hashed)"
        };
        let memorized_doc = doc(format!(
            "The `MemorizedFunc` of `{name}`, built on first use. Its argument is {hashed}."
        ));
        quote! {
            #wrapper

            #shared
            #body

            #memorized_doc
            #shared
            #vis fn #memorized() -> &'static #support::MemorizedFunc<#stored> {
                static FUNC: #support::MethodCell = #support::OnceLock::new();
                #support::method_func(&FUNC, || { #build })
            }

            #handle
        }
    }
}

/// `tokens` with the keyword `self` (not `self::` paths) replaced by `with`: the key
/// expression sees the receiver as a local.
fn replace_self(tokens: TokenStream, with: &Ident) -> TokenStream {
    let tokens: Vec<TokenTree> = tokens.into_iter().collect();
    let mut out = Vec::with_capacity(tokens.len());
    for (i, token) in tokens.iter().enumerate() {
        match token {
            TokenTree::Ident(ident) if ident == "self" => {
                let is_path = matches!(
                    (tokens.get(i + 1), tokens.get(i + 2)),
                    (Some(TokenTree::Punct(a)), Some(TokenTree::Punct(b)))
                        if a.as_char() == ':' && b.as_char() == ':'
                );
                if is_path {
                    out.push(token.clone());
                } else {
                    out.push(TokenTree::Ident(Ident::new(
                        &with.to_string(),
                        with.span().located_at(ident.span()),
                    )));
                }
            }
            TokenTree::Group(group) => {
                let mut new =
                    proc_macro2::Group::new(group.delimiter(), replace_self(group.stream(), with));
                new.set_span(group.span());
                out.push(TokenTree::Group(new));
            }
            other => out.push(other.clone()),
        }
    }
    out.into_iter().collect()
}

/// The tokens of an expression, printed compactly (`user.id`, `date.clone()`), for metadata.
fn compact(tokens: TokenStream) -> String {
    let mut normal = String::new();
    fingerprint::normalize(tokens, &mut normal);
    let mut text = normal.trim().to_owned();
    for (from, to) in [
        (" . ", "."),
        (" : : ", "::"),
        (" ( ", "("),
        ("( ", "("),
        (" )", ")"),
        (" [ ", "["),
        ("[ ", "["),
        (" ]", "]"),
        (" ,", ","),
        ("& ", "&"),
        ("! (", "!("),
    ] {
        text = text.replace(from, to);
    }
    text
}

/// The type without its outer references: `&[T]` is `Serialize` exactly when `[T]` is, and the
/// error names the type the user wrote.
fn strip_references(ty: &Type) -> &Type {
    match ty {
        Type::Reference(reference) => strip_references(&reference.elem),
        Type::Paren(paren) => strip_references(&paren.elem),
        other => other,
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
fn is_associated(sig: &Signature) -> bool {
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
fn receiver(sig: &Signature, options: &Options) -> Option<Recv> {
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
fn check_hashed_count(
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
    if let Some(key) = &options.key {
        normal.push_str("\nkey: ");
        fingerprint::normalize(key.to_token_stream(), &mut normal);
    }
    fingerprint::code_hash(&normal)
}

#[cfg(test)]
#[path = "expand_tests.rs"]
mod tests;
