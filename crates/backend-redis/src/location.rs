//! The user information (user name and password) of server URLs: where it ends, how it is
//! hidden for printing, and how a password that is not percent-encoded is made usable.
//!
//! A URL's user information ends, by the standard, at the last `@` before the first `/`, `?`
//! or `#` after `://`. Users paste passwords holding these characters as they are
//! (`redis://:p#ss@host`), which the standard reads as a host `p` and a fragment `ss@host`. So
//! when an `@` comes after that point, in a place where the rest of a Redis URL cannot hold
//! one (a path, a fragment, the name of a parameter or a parameter we do not know), the user
//! information is taken to end at the *last* `@` of the URL. A parameter value of ours may
//! hold an `@` (`?prefix=a@b`).
//!
//! What is printed ([`redact`]) hides everything that may be a password under either reading;
//! what connects ([`normalize`]) percent-encodes the password's special characters so that
//! the `redis` crate reads it whole.

use crate::config::URL_PARAMS;

/// Query parameters whose values are hidden when printed, whatever the URL: the `redis` crate
/// ignores them on `redis://` URLs, but a user may still have put a secret there.
const SECRET_PARAMS: &[&str] = &["pass", "password", "secret", "token", "auth", "key"];

/// The position, in `rest` (what follows `://`), of the `@` that ends the user information,
/// if there is one.
pub(crate) fn userinfo_end(rest: &str) -> Option<usize> {
    let standard_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let tail = &rest[standard_end..];
    if !tail.contains('@') || plain_tail(tail) {
        return rest[..standard_end].rfind('@');
    }
    // The password holds `/`, `?` or `#`: it ends at the first `@` that a list of hosts and
    // the tail of a Redis URL follow; failing that, everything before the last `@` is taken
    // for the user information (so that it is never printed).
    rest.match_indices('@')
        .map(|(at, _)| at)
        .find(|&at| {
            let after = &rest[at + 1..];
            let hosts_end = after.find(['/', '?', '#']).unwrap_or(after.len());
            hosts(&after[..hosts_end]) && plain_tail(&after[hosts_end..])
        })
        .or_else(|| rest.rfind('@'))
}

/// Whether `text` is a list of hosts, `host[:port]` separated by commas.
fn hosts(text: &str) -> bool {
    !text.is_empty()
        && text.split(',').all(|host| {
            let (name, port) = match host.rsplit_once(':') {
                Some((name, port)) if !name.ends_with(':') && !port.contains(']') => (name, port),
                _ => (host, "0"),
            };
            !name.is_empty()
                && name
                    .chars()
                    .all(|c| c.is_alphanumeric() || matches!(c, '.' | '-' | '_' | '[' | ']' | ':'))
                && !port.is_empty()
                && port.chars().all(|c| c.is_ascii_digit())
        })
}

/// Whether `tail` (from the first `/`, `?` or `#` after the host) is the path, parameters and
/// fragment of a Redis URL, with `@` only in values of our parameters.
fn plain_tail(tail: &str) -> bool {
    let (rest, fragment) = tail.split_once('#').unwrap_or((tail, ""));
    let (path, query) = rest.split_once('?').unwrap_or((rest, ""));
    if path.contains('@') || fragment.contains('@') {
        return false;
    }
    query
        .split('&')
        .filter(|pair| !pair.is_empty())
        .all(|pair| {
            let name = pair.split_once('=').map_or(pair, |(name, _)| name);
            !name.contains('@') && URL_PARAMS.contains(&name)
        })
}

/// A URL as it may be printed: the password (and a user information without a `:`, which the
/// `redis` crate ignores but which is most likely a misplaced password) replaced by `***`, and
/// so are the values of parameters named like secrets. Something that is not a URL loses
/// everything before its last `@`.
pub(crate) fn redact(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return match url.rfind('@') {
            Some(at) => format!("***{}", &url[at..]),
            None => url.to_owned(),
        };
    };
    let (userinfo, host_and_rest) = match userinfo_end(rest) {
        Some(at) => {
            let shown = match rest[..at].split_once(':') {
                Some((user, _)) if !user.contains(['/', '?', '#']) => format!("{user}:***@"),
                _ => "***@".to_owned(),
            };
            (shown, &rest[at + 1..])
        }
        None => (String::new(), rest),
    };
    format!("{scheme}://{userinfo}{}", redact_params(host_and_rest))
}

/// Hides the values of parameters named like secrets in what follows the user information.
fn redact_params(host_and_rest: &str) -> String {
    let (rest, fragment) = match host_and_rest.split_once('#') {
        Some((rest, fragment)) => (rest, Some(fragment)),
        None => (host_and_rest, None),
    };
    let Some((head, query)) = rest.split_once('?') else {
        return host_and_rest.to_owned();
    };
    let pairs: Vec<String> = query
        .split('&')
        .map(|pair| match pair.split_once('=') {
            Some((name, _))
                if SECRET_PARAMS
                    .iter()
                    .any(|s| name.to_ascii_lowercase().contains(s)) =>
            {
                format!("{name}=***")
            }
            _ => pair.to_owned(),
        })
        .collect();
    let mut out = format!("{head}?{}", pairs.join("&"));
    if let Some(fragment) = fragment {
        out.push('#');
        out.push_str(fragment);
    }
    out
}

/// A server URL the `redis` crate reads as the user meant it: the characters of the user
/// information that end it early (`/`, `?`, `#`, `@`) are percent-encoded. Other URLs are
/// returned as they are.
pub(crate) fn normalize(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let Some(at) = userinfo_end(rest) else {
        return url.to_owned();
    };
    let userinfo = &rest[..at];
    if !userinfo.contains(['/', '?', '#', '@']) {
        return url.to_owned();
    }
    let (user, password) = match userinfo.split_once(':') {
        Some((user, password)) => (user, Some(password)),
        None => (userinfo, None),
    };
    let mut out = format!("{scheme}://{}", encode(user));
    if let Some(password) = password {
        out.push(':');
        out.push_str(&encode(password));
    }
    out.push_str(&rest[at..]);
    out
}

/// Percent-encodes the characters that end a user information early (`%` is left alone, so
/// that what is already encoded stays so).
fn encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '/' | '?' | '#' | '@' | ':' => out.push_str(&format!("%{:02X}", c as u32)),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redacts_passwords() {
        for (url, shown) in [
            ("redis://user:secret@h:1/0", "redis://user:***@h:1/0"),
            ("redis://:secret@h:1", "redis://:***@h:1"),
            ("redis://secret@h:1", "redis://***@h:1"),
            ("redis://h:1/0?prefix=a@b", "redis://h:1/0?prefix=a@b"),
            (
                "redis://:p@ss@h:1/0?prefix=a@b",
                "redis://:***@h:1/0?prefix=a@b",
            ),
            ("redis://:p#ss@h:1/0", "redis://:***@h:1/0"),
            ("redis://u:p/ss@h:1/0", "redis://u:***@h:1/0"),
            (
                "redis://u:p?ss@h:1/0?prefix=x",
                "redis://u:***@h:1/0?prefix=x",
            ),
            (
                "rediss://:p#s/s?@h:1/0#insecure",
                "rediss://:***@h:1/0#insecure",
            ),
            (
                "redis://default:7/X?kz@h.example:6379",
                "redis://default:***@h.example:6379",
            ),
            (
                "redis+cluster://:p/w@a:1,b:2/?prefix=x",
                "redis+cluster://:***@a:1,b:2/?prefix=x",
            ),
            (
                "redis://h:1/0?password=hunter2",
                "redis://h:1/0?password=***",
            ),
            (
                "redis://:a#/@?:b@h:1/0?prefix=a@b",
                "redis://:***@h:1/0?prefix=a@b",
            ),
            ("redis://:x/y@z@h:1/0", "redis://:***@h:1/0"),
            ("redis://:p#ss@[::1]:6379/0", "redis://:***@[::1]:6379/0"),
            ("redis://h:1/0#ab@cd", "redis://h:***@cd"),
            ("user:secret@h", "***@h"),
            ("redis://h:1/0", "redis://h:1/0"),
        ] {
            assert_eq!(redact(url), shown, "{url}");
        }
    }

    #[test]
    fn normalizes_passwords_that_are_not_encoded() {
        for (url, normal) in [
            ("redis://:p#ss@h:1/0", "redis://:p%23ss@h:1/0"),
            (
                "redis://u:a/b?c@h:1/0?prefix=x",
                "redis://u:a%2Fb%3Fc@h:1/0?prefix=x",
            ),
            ("redis://:p@ss@h:1", "redis://:p%40ss@h:1"),
            ("redis://:a:b@h:1", "redis://:a:b@h:1"),
            ("redis://:p%23ss@h:1", "redis://:p%23ss@h:1"),
            ("redis://h:1/0?prefix=a@b", "redis://h:1/0?prefix=a@b"),
            ("redis://u:pw@h:1/0", "redis://u:pw@h:1/0"),
        ] {
            assert_eq!(normalize(url), normal, "{url}");
            let info = redis::IntoConnectionInfo::into_connection_info(normal);
            assert!(info.is_ok(), "{normal}");
        }
        let info = redis::IntoConnectionInfo::into_connection_info(normalize(
            "redis://u:a/b?c#d@e:f@h:1/0",
        ))
        .unwrap();
        assert_eq!(info.redis_settings().password(), Some("a/b?c#d@e:f"));
        assert_eq!(info.redis_settings().username(), Some("u"));
    }
}
