//! What `#[memoize]` turns a function into.
//!
//! For a free function `fn square(x: u64) -> u64 { .. }` it emits, in the function's place:
//!
//! - `fn square(x: u64) -> u64`: the wrapper, which hashes its arguments and loads the stored
//!   result or runs the body;
//! - `enum square {}`: an uninhabited type in the type namespace (so it does not clash with the
//!   function), whose associated functions are the handle: `square::memorized()`,
//!   `square::call(..)`, `square::call_and_shelve(..)`, `square::check_call_in_cache(..)`,
//!   `square::explain(..)`, `square::clear()`, and the original body as a hidden `square::__cachette_body`.
//!
//! An `impl` block, unlike a `mod`, resolves names exactly where the function was written, also
//! inside another function's body: the body sees the same items as before, and
//! `type_name::<square>()` gives the function's path, enclosing functions included.
//!
//! A method (`self` receiver, or `Self` in the signature) lives in an `impl` block, where only
//! associated items can go: the handle is a set of associated functions named after the method
//! (`predict_memorized()`, `predict_call(..)`, `predict_call_and_shelve(..)`,
//! `predict_check_call_in_cache(..)`, `predict_explain(..)`, `predict_clear()`), and the body a hidden
//! `__cachette_predict`.
//!
//! Every call of the `MemorizedFunc` goes through `__macro_support::dispatch`, and the types
//! are checked once, in the wrapper, with errors on the types at fault: a type that is not
//! `Serialize` is one error, not one per generated call.

use proc_macro2::{Literal, Span, TokenStream, TokenTree};
use quote::{ToTokens, format_ident, quote, quote_spanned};
use syn::spanned::Spanned;
use syn::{Attribute, Expr, Ident, ItemFn, Meta, ReturnType, Signature, parse_quote};

use crate::fingerprint;
use crate::options::{MmapModeOption, Options};
use crate::signature::{
    Arg, Output, Recv, arguments, check_hashed_count, check_signature, code_hash, is_associated,
    output, receiver, strip_references, with_first_argument,
};

/// Where the generated code finds the library.
fn support() -> TokenStream {
    quote!(::cachette::__macro_support)
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

    /// The body of `check_call_in_cache` (`method` is `check_call_in_cache`) or `explain`
    /// (`explain`): the method, or its `_async` form, on the arguments by reference.
    fn check_body(&self, method: &str) -> TokenStream {
        let support = support();
        let args = local("__cachette_args");
        let gate = local("__cachette_gate");
        let memorized = self.memorized_call();
        let prologue = self.prologue();
        let value = self.hashed_value(true);
        let (method, dot_await) = if self.is_async() {
            (format_ident!("{method}_async"), quote!(.await))
        } else {
            (format_ident!("{method}"), TokenStream::new())
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
        let memo = (options.memo == Some(true)).then(|| quote!(.memo()));
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
                #memo
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

    /// `call`, `call_and_shelve`, `check_call_in_cache`, `clear` and `explain`, under the
    /// given names.
    fn handle_fns(&self, names: [Ident; 5], shared: &TokenStream) -> TokenStream {
        let support = support();
        let name = self.name();
        let vis = &self.vis;
        let generics = &self.sig.generics;
        let where_clause = &self.sig.generics.where_clause;
        let is_async = self.is_async();
        let asyncness = is_async.then(|| quote!(async));
        let [call, shelve, check, clear, explain] = names;
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
        let check_body = self.check_body("check_call_in_cache");
        let explain_body = self.check_body("explain");
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
        let explain_doc = doc(format!(
            "Why a call of `{name}` with these arguments would load a stored result or not \
             (`Display` prints it): reads metadata only, nothing runs and nothing is written."
        ));
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

            #explain_doc
            #shared
            #[allow(unused_variables)] // ignored arguments
            #[allow(clippy::ptr_arg)] // a reference to each argument's type, as declared
            #vis #asyncness fn #explain #generics (#(#by_ref),*) -> #support::Explanation #where_clause {
                #explain_body
            }
        }
    }

    /// The function's `cfg` attributes, which every generated item repeats.
    fn cfg_attrs(&self) -> impl Iterator<Item = &Attribute> {
        self.attrs.iter().filter(|a| a.path().is_ident("cfg"))
    }

    /// The attributes of the generated handle items: the function's `cfg` and lint attributes
    /// (`expect` as `allow`), and the allowances every handle needs.
    fn shared_attrs(&self) -> TokenStream {
        let cfg_attrs = self.cfg_attrs();
        let lint_attrs = self
            .attrs
            .iter()
            .filter(|a| is_lint(a))
            .map(expect_as_allow);
        quote! {
            #(#cfg_attrs)*
            #(#lint_attrs)*
            #[allow(dead_code)] // handles the caller may not use
            #[allow(clippy::type_complexity)] // (output, metadata) of arbitrary outputs
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
                Ident::new("explain", name.span()),
            ],
            &TokenStream::new(),
        );
        let cfg_attrs = self.cfg_attrs();
        let shared = self.shared_attrs();
        let memorized_doc = doc(format!(
            "The `MemorizedFunc` of `{name}`, built on first use. Its argument is the tuple of \
             the arguments of `{name}` that are not ignored: \
             `{name}::memorized().check_call_in_cache(&(a, b))`."
        ));
        let type_doc = doc(format!(
            "The memoization handle of the function `{name}` (generated by `#[memoize]`): \
             `{name}::memorized()`, `{name}::check_call_in_cache(..)`, `{name}::explain(..)`, \
             `{name}::clear()`, and \
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

            #shared
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
        let shared = self.shared_attrs();
        let named = |suffix: &str| format_ident!("{}_{}", name, suffix, span = name.span());
        let handle = self.handle_fns(
            [
                named("call"),
                named("call_and_shelve"),
                named("check_call_in_cache"),
                named("clear"),
                named("explain"),
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

#[cfg(test)]
#[path = "expand_tests.rs"]
mod tests;
