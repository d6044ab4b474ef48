//! The code hash of a memoized function: what tells its stored results apart from those of an
//! older body.

use proc_macro2::{Delimiter, TokenStream, TokenTree};

/// Adds the tokens of `tokens` to `out` in a normal form: one space between tokens, whatever the
/// source's whitespace and comments (which are not tokens); punctuation without its spacing, so
/// that `a+-b` and `a + -b` read the same; and no trailing comma before a closing delimiter
/// (which rustfmt adds or removes), except in a one-element tuple, where it counts.
pub(crate) fn normalize(tokens: TokenStream, out: &mut String) {
    normalize_in(tokens, Delimiter::None, out);
}

fn normalize_in(tokens: TokenStream, delimiter: Delimiter, out: &mut String) {
    let tokens: Vec<TokenTree> = tokens.into_iter().collect();
    let is_comma = |t: &TokenTree| matches!(t, TokenTree::Punct(p) if p.as_char() == ',');
    let commas = tokens.iter().filter(|t| is_comma(t)).count();
    let drop_last = tokens.last().is_some_and(is_comma)
        && match delimiter {
            Delimiter::Brace | Delimiter::Bracket => true,
            Delimiter::Parenthesis => commas > 1,
            Delimiter::None => false,
        };
    let kept = tokens.len() - usize::from(drop_last);
    for token in tokens.into_iter().take(kept) {
        match token {
            TokenTree::Group(group) => {
                let (open, close) = match group.delimiter() {
                    Delimiter::Parenthesis => ("(", ")"),
                    Delimiter::Brace => ("{", "}"),
                    Delimiter::Bracket => ("[", "]"),
                    Delimiter::None => ("", ""),
                };
                out.push_str(open);
                out.push(' ');
                normalize_in(group.stream(), group.delimiter(), out);
                out.push_str(close);
                out.push(' ');
            }
            TokenTree::Ident(ident) => {
                out.push_str(&ident.to_string());
                out.push(' ');
            }
            TokenTree::Punct(punct) => {
                out.push(punct.as_char());
                out.push(' ');
            }
            TokenTree::Literal(literal) => {
                out.push_str(&literal.to_string());
                out.push(' ');
            }
        }
    }
}

/// The xxh3 hash of a normal form, as 16 hexadecimal digits.
pub(crate) fn code_hash(normal_form: &str) -> String {
    format!(
        "{:016x}",
        xxhash_rust::xxh3::xxh3_64(normal_form.as_bytes())
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use quote::quote;

    fn hash_of(tokens: TokenStream) -> String {
        let mut normal = String::new();
        normalize(tokens, &mut normal);
        code_hash(&normal)
    }

    #[test]
    fn whitespace_and_comments_do_not_count() {
        let a: TokenStream = "fn f(x: u32) -> u32 { x+-1 }".parse().unwrap();
        let b: TokenStream = "fn f(\n    x: u32\n) -> u32 {\n    // note\n    x + -1\n}"
            .parse()
            .unwrap();
        assert_eq!(hash_of(a), hash_of(b));
    }

    #[test]
    fn any_token_counts() {
        let base = hash_of(quote!(
            fn f(x: u32) -> u32 {
                x + 1
            }
        ));
        assert_ne!(
            base,
            hash_of(quote!(
                fn f(x: u32) -> u32 {
                    x + 2
                }
            ))
        );
        assert_ne!(
            base,
            hash_of(quote!(
                fn f(x: u32) -> u32 {
                    (x + 1)
                }
            ))
        );
        assert_ne!(
            base,
            hash_of(quote!(
                fn f(x: u64) -> u32 {
                    x + 1
                }
            ))
        );
        assert_ne!(
            base,
            hash_of(quote!(
                fn g(x: u32) -> u32 {
                    x + 1
                }
            ))
        );
        assert_eq!(base.len(), 16);
    }

    #[test]
    fn trailing_commas_do_not_count_but_one_tuples_do() {
        assert_eq!(
            hash_of(quote!(
                fn f(x: u32, y: u32) {
                    g(x, y);
                    [1, 2];
                    S { a }
                }
            )),
            hash_of(quote!(
                fn f(x: u32, y: u32) {
                    g(x, y);
                    [1, 2];
                    S { a }
                }
            )),
        );
        assert_ne!(
            hash_of(quote!(
                fn f() {
                    (x,)
                }
            )),
            hash_of(quote!(
                fn f() {
                    (x)
                }
            ))
        );
    }
}
