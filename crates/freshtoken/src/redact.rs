//! Taking credentials out of text a server sent back, before it goes into an error message.
//!
//! Servers echo: a form-encoded success body, a 500 page holding a whole token response, an
//! OAuth error that quotes the request. Whatever of it freshtoken shows goes through here,
//! JSON or form or neither (a malformed body is redacted as text), so that neither a token
//! nor the client secret, in any spelling it was sent in, reaches a log or an error line.

use base64::Engine;
use url::form_urlencoded;

/// What a redacted value becomes.
pub(crate) const REDACTED: &str = "[REDACTED]";

/// Fields whose values are credentials. `client_secret` is here too, for a server that
/// echoes a `client_secret_post` body.
const CREDENTIAL_FIELDS: &[&str] = &[
    "access_token",
    "refresh_token",
    "id_token",
    "client_assertion",
    "assertion",
    "client_secret",
];

/// How a name or a value may be quoted: JSON, single quotes, JSON inside JSON, HTML.
const QUOTES: &[&str] = &["&quot;", "&#34;", "\\\"", "\"", "'"];

/// Replaces the value of every credential field in `text` with `[REDACTED]`: JSON
/// (`"access_token": "…"`, escaped quotes included), form (`access_token=…`), or text in
/// between (`access_token: …`), however malformed the whole is. Names are matched without
/// regard to case and only whole (`client_assertion_type` is not `client_assertion`).
/// A value found under a credential field is masked wherever else it appears too (a server
/// that echoes the token under another name, or twice).
pub(crate) fn fields(text: &str) -> String {
    let lower = text.to_ascii_lowercase();
    let mut out = String::with_capacity(text.len());
    let mut values: Vec<&str> = Vec::new();
    let mut at = 0;
    let mut search = 0;
    while let Some((name_end, value)) = next_credential(&lower, text, search) {
        let (start, end) = value;
        // The value, and each run of token characters in it (a JSON escape or a damaged
        // byte splits a token, and a repeat may hold only a piece).
        let found =
            text[start..end].trim_matches(|c: char| c == '"' || c == '\'' || c.is_whitespace());
        if CREDENTIAL_FIELDS
            .iter()
            .any(|f| found.eq_ignore_ascii_case(f))
        {
            // A name where the value should be (`"access_token": "access_token": "…"`): it
            // names the value after it, so the search goes on from there (found by fuzzing).
            search = start.max(search + 1);
            continue;
        }
        out.push_str(&text[at..start]);
        out.push_str(REDACTED);
        values.extend(
            std::iter::once(found)
                .chain(found.split(|c: char| !is_token_char(c)))
                .filter(|v| v.len() >= MIN_ECHO && !REDACTED.contains(v)),
        );
        at = end.max(name_end);
        search = at;
    }
    out.push_str(&text[at..]);
    // Longest first, so that a value containing another is masked whole.
    values.sort_by_key(|v| std::cmp::Reverse(v.len()));
    for v in values {
        if out.contains(v) {
            out = out.replace(v, REDACTED);
        }
    }
    out
}

/// RFC 6750 `b64token` characters (and `.`, which joins a JWT's parts).
fn is_token_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || "-._~+/=".contains(c)
}

/// Shortest credential value also masked where it appears under another name: shorter ones
/// (`x`, `true`) would mask ordinary words.
const MIN_ECHO: usize = 8;

/// The next credential field at or after `from`: where its name ends, and its value's span.
fn next_credential(lower: &str, text: &str, from: usize) -> Option<(usize, (usize, usize))> {
    let bytes = lower.as_bytes();
    let mut search = from;
    loop {
        let (start, name) = CREDENTIAL_FIELDS
            .iter()
            .filter_map(|name| lower[search..].find(name).map(|i| (search + i, *name)))
            .min_by_key(|(i, name)| (*i, usize::MAX - name.len()))?;
        let end = start + name.len();
        let word = |i: usize| {
            bytes
                .get(i)
                .is_some_and(|b| b.is_ascii_alphanumeric() || *b == b'_')
        };
        let whole = (start == 0 || !word(start - 1)) && !word(end);
        if whole && let Some(span) = value_after(text, end) {
            return Some((end, span));
        }
        search = end;
    }
}

/// The span of the value that follows a field name ending at `i`: past closing quotes and a
/// `:` or `=`, then a quoted string (JSON, single quotes, `\"`-escaped, `&quot;`) or a run up
/// to the next delimiter. `None` when no `:` or `=` follows: the name was just a word.
fn value_after(text: &str, mut i: usize) -> Option<(usize, usize)> {
    let rest = |i: usize| &text[i..];
    // The name's closing quote, however it is escaped.
    while let Some(q) = QUOTES.iter().find(|q| rest(i).starts_with(**q)) {
        i += q.len();
    }
    i += rest(i).len() - rest(i).trim_start().len();
    if !(rest(i).starts_with(':') || rest(i).starts_with('=')) {
        return None;
    }
    i += 1;
    i += rest(i).len() - rest(i).trim_start().len();
    let start = i;
    // Redacted already: keep it as it is.
    if rest(i).starts_with(REDACTED) {
        return Some((i, i + REDACTED.len()));
    }
    if let Some(quote) = QUOTES.iter().find(|q| rest(i).starts_with(**q)) {
        let inner = i + quote.len();
        let end = closing(text, inner, quote).unwrap_or(text.len());
        return Some((inner, end));
    }
    let end = rest(start)
        .find(|c: char| c.is_whitespace() || "&,;}]<\"'".contains(c))
        .map_or(text.len(), |n| start + n);
    (end > start).then_some((start, end))
}

/// Where the string opened with `quote` before `from` ends; a backslash escapes the next
/// character inside a plain `"` or `'` string.
fn closing(text: &str, from: usize, quote: &str) -> Option<usize> {
    if quote.len() > 1 {
        return text[from..].find(quote).map(|n| from + n);
    }
    let q = quote.chars().next()?;
    let mut escaped = false;
    for (n, c) in text[from..].char_indices() {
        match c {
            _ if escaped => escaped = false,
            '\\' => escaped = true,
            c if c == q => return Some(from + n),
            _ => {}
        }
    }
    None
}

/// Masks the client secret in `text` in every spelling it was sent or may come back in:
/// plain, form-urlencoded (`+` or `%20` for a space), JSON-escaped (`\/`), inside the Basic
/// credentials `base64(urlencode(id):urlencode(secret))` (and the raw `id:secret` some
/// servers rebuild), whitespace-folded as excerpts fold it, and cut short where an excerpt
/// ends in `…`. A secret shorter than 4 characters is left alone: masking it would mask
/// ordinary words.
pub(crate) fn secret(text: &str, client_id: &str, secret: &str) -> String {
    if secret.chars().count() < 4 {
        return text.to_owned();
    }
    let mut spellings = spellings(client_id, secret);
    // Longest first, so that no spelling is left half-masked by a shorter one inside it.
    spellings.sort_by_key(|s| std::cmp::Reverse(s.len()));
    let mut out = text.to_owned();
    for s in &spellings {
        out = out.replace(s.as_str(), REDACTED);
    }
    // An excerpt cut in the middle of a spelling still shows its beginning.
    if let Some(body) = out.strip_suffix('…') {
        let cut = spellings
            .iter()
            .flat_map(|s| {
                s.char_indices()
                    .map(|(i, _)| &s[..i])
                    .filter(|p| p.chars().count() >= 4)
            })
            .filter(|prefix| body.ends_with(prefix))
            .map(str::len)
            .max();
        if let Some(n) = cut {
            out = format!("{}{REDACTED}…", &body[..body.len() - n]);
        }
    }
    out
}

fn spellings(client_id: &str, secret: &str) -> Vec<String> {
    let form = |s: &str| form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>();
    let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
    let json = serde_json::to_string(secret).unwrap_or_default();
    let json = json
        .strip_prefix('"')
        .and_then(|j| j.strip_suffix('"'))
        .unwrap_or(secret)
        .to_owned();
    let folded = secret.split_whitespace().collect::<Vec<_>>().join(" ");
    let basic = b64(&format!("{}:{}", form(client_id), form(secret)));
    let raw_basic = b64(&format!("{client_id}:{secret}"));
    let mut all = vec![
        secret.to_owned(),
        form(secret),
        form(secret).replace('+', "%20"),
        json.replace('/', "\\/"),
        json,
        folded,
        basic.replace('/', "\\/"),
        basic,
        raw_basic.replace('/', "\\/"),
        raw_basic,
    ];
    all.retain(|s| s.chars().count() >= 4);
    all.sort();
    all.dedup();
    all
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_credential_echoed_under_another_name_is_masked_too() {
        // Found by the token_response fuzz target: the token under `token__token`, and again
        // under `access_token`, was shown in the first place.
        let body = r#"{"token__token": "eyJhbGciOiJFUzE{", "access_token": "eyJhbGciOiJFUzE{"}"#;
        let got = fields(body);
        assert!(!got.contains("eyJhbGciOiJFUzE"), "{got}");
        // A name where the value should be names the next value (found by fuzzing).
        let got = fields(r#"{"access_token": "access_token": "tok-0123456789"}"#);
        assert!(!got.contains("tok-0123456789"), "{got}");
        // A repeat of only the part before an escape is masked too (found by fuzzing).
        let body =
            r#"{"access_token": "eyJhbGciOiJFUzI1\n0.eyJpc3M", "x": "eyJhbGciOiJFUzI1\n0\u0001"}"#;
        let got = fields(body);
        assert!(!got.contains("eyJhbGciOiJFUzI1"), "{got}");
        // Short values are not hunted for elsewhere: they would mask ordinary words.
        assert_eq!(
            fields("access_token=abc&x=abc"),
            "access_token=[REDACTED]&x=abc"
        );
    }

    #[test]
    fn credential_fields_are_redacted_in_any_shape() {
        let rows = [
            (
                "access_token=AT1&token_type=bearer&expires_in=3600&refresh_token=RT1",
                "access_token=[REDACTED]&token_type=bearer&expires_in=3600&refresh_token=[REDACTED]",
            ),
            (
                r#"{"access_token":"AT1","expires_in":3600,}"#,
                r#"{"access_token":"[REDACTED]","expires_in":3600,}"#,
            ),
            (
                r#"{ "Access_Token" : "A\"T1", "id_token":"IT1"}"#,
                r#"{ "Access_Token" : "[REDACTED]", "id_token":"[REDACTED]"}"#,
            ),
            (
                r#"{"error_description":"{\"access_token\":\"AT1\"}"}"#,
                r#"{"error_description":"{\"access_token\":\"[REDACTED]\"}"}"#,
            ),
            (
                "<pre>access_token: AT1\nrefresh_token = 'RT1'</pre>",
                "<pre>access_token: [REDACTED]\nrefresh_token = '[REDACTED]'</pre>",
            ),
            (
                "client_assertion_type=urn%3Ajwt&client_assertion=eyJ1.eyJ2.sig&assertion=eyJ3",
                "client_assertion_type=urn%3Ajwt&client_assertion=[REDACTED]&assertion=[REDACTED]",
            ),
            (
                "&quot;access_token&quot;:&quot;AT1&quot;",
                "&quot;access_token&quot;:&quot;[REDACTED]&quot;",
            ),
            // Cut short: everything after the name goes.
            (
                r#"{"access_token":"AT1-and-more"#,
                r#"{"access_token":"[REDACTED]"#,
            ),
            ("client_secret=s3cr3t", "client_secret=[REDACTED]"),
            // Words, not fields: left as they are.
            (
                "no access_token in the answer; my_access_token=x",
                "no access_token in the answer; my_access_token=x",
            ),
            ("access_token=", "access_token="),
            ("", ""),
        ];
        for (text, want) in rows {
            assert_eq!(fields(text), want, "{text}");
            assert_eq!(
                fields(want),
                want,
                "redacting twice changes nothing: {want}"
            );
        }
    }

    #[test]
    fn the_secret_is_masked_in_every_spelling() {
        let id = "ci-pipeline";
        let s = "p@ss w/rd+=&:Zq8vK2pL";
        let form = "p%40ss+w%2Frd%2B%3D%26%3AZq8vK2pL";
        let basic = base64::engine::general_purpose::STANDARD.encode(format!("ci-pipeline:{form}"));
        for text in [
            format!("echo {s}!"),
            format!("client_secret={form}&x=1"),
            format!("x={}", form.replace('+', "%20")),
            format!("Authorization: Basic {basic}"),
            format!("{{\"h\":\"Basic {}\"}}", basic.replace('/', "\\/")),
            format!("{{\"s\":\"{}\"}}", s.replace('/', "\\/")),
            format!(
                "raw {}",
                base64::engine::general_purpose::STANDARD.encode(format!("{id}:{s}"))
            ),
        ] {
            let masked = secret(&text, id, s);
            assert!(masked.contains(REDACTED), "{text} -> {masked}");
            assert!(!masked.contains("Zq8vK2pL"), "{text} -> {masked}");
            assert!(!masked.contains(&basic[..12]), "{text} -> {masked}");
        }
        // An excerpt cut inside the secret.
        assert_eq!(
            secret("the body: p@ss w/rd+…", id, s),
            "the body: [REDACTED]…"
        );
        assert_eq!(secret("a tiny one: abc", id, "abc"), "a tiny one: abc");
        assert_eq!(secret("nothing here…", id, s), "nothing here…");
    }
}
