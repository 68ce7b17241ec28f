//! Checks shared by the fuzz targets: the properties every refusal of outside input must
//! have (one line, short, no secret echoed).

/// A refusal is one line: it must fit the single `freshtoken: error: …` line the CLI prints
/// and a log record.
pub fn one_line(what: &str, message: &str) {
    assert!(
        !message.chars().any(|c| c == '\n' || c == '\r'),
        "{what} spans lines: {message:?}"
    );
}

/// The string values that follow `"field":` in `bytes`, read loosely (the input may be
/// damaged JSON): what a reader would take for that field's value. Values shorter than
/// `min_len`, holding whitespace or a backquote (which could be the text of a fixed message
/// rather than a secret), or that are themselves a token field's name, are skipped.
pub fn values_of(bytes: &[u8], field: &str, min_len: usize) -> Vec<String> {
    let text = String::from_utf8_lossy(bytes);
    let needle = format!("\"{field}\"");
    let mut found = Vec::new();
    let mut rest = &text[..];
    while let Some(at) = rest.find(&needle) {
        rest = &rest[at + needle.len()..];
        let Some(after) = rest.trim_start().strip_prefix(':') else {
            continue;
        };
        let Some(value) = after.trim_start().strip_prefix('"') else {
            continue;
        };
        let end = value.find(['"', '\\']).unwrap_or(value.len());
        let value = &value[..end];
        // A field name where a value should be (`"access_token": "refresh_token": …`) names
        // the next value; it is no secret itself.
        let a_name = ["access_token", "refresh_token", "id_token"]
            .iter()
            .any(|n| value.eq_ignore_ascii_case(n));
        if value.chars().count() >= min_len
            && !a_name
            && !value.chars().any(|c| c.is_whitespace() || c == '`')
        {
            found.push(value.to_owned());
        }
    }
    found
}

/// The message names none of `secrets`.
pub fn echoes_none(what: &str, message: &str, secrets: &[String]) {
    for secret in secrets {
        assert!(
            !message.contains(secret.as_str()),
            "{what} echoes a secret ({secret:?}): {message:?}"
        );
    }
}
