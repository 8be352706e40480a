//! The framing that the MTA-STS record (`_mta-sts`, RFC 8461 §3.1) and the TLS reporting
//! record (`_smtp._tls`, RFC 8460 §3) share: `v=<version>` then `;`-separated
//! `name=value` fields, white space around each `;`, an optional final `;`, field names
//! of 1 to 32 letters, digits, `_`, `-` and `.`, extension values of printable ASCII
//! without `=` or `;`. One reading of it for both; each record checks its own fields.
//! Hand-written: a dozen lines of ABNF that no maintained crate parses.

/// Why a domain has no usable record of a kind (named by the prefix its records start with).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RecordError {
    #[error("no TXT record starts with {0}")]
    None(&'static str),
    #[error("{1} TXT records start with {0} (one is needed)")]
    Several(&'static str, usize),
    #[error("the record is not valid: {0}")]
    Invalid(String),
}

/// Of the TXT records at a name, those that do not start with `prefix` are discarded;
/// exactly one must be left, and `parse` must take it (RFC 8461 §3.1, RFC 8460 §3).
pub(crate) fn discover<R>(
    texts: &[String],
    prefix: &'static str,
    parse: impl FnOnce(&str) -> Result<R, String>,
) -> Result<R, RecordError> {
    let candidates: Vec<&String> = texts.iter().filter(|t| t.starts_with(prefix)).collect();
    match candidates.as_slice() {
        [one] => parse(one).map_err(RecordError::Invalid),
        [] => Err(RecordError::None(prefix)),
        several => Err(RecordError::Several(prefix, several.len())),
    }
}

/// Calls `visit` with each `(name, value)` of `rest` (the `;`-separated fields after the
/// version), in order, once the field's shape and name are checked.
pub(crate) fn each_field<'a>(
    rest: impl Iterator<Item = &'a str>,
    mut visit: impl FnMut(&'a str, &'a str) -> Result<(), String>,
) -> Result<(), String> {
    let fields: Vec<&str> = rest.map(|f| f.trim_matches([' ', '\t'])).collect();
    for (i, field) in fields.iter().enumerate() {
        // The one empty field allowed is after a final `;`.
        if field.is_empty() && i + 1 == fields.len() && i > 0 {
            continue;
        }
        let Some((name, value)) = field.split_once('=') else {
            return Err(format!("{field:?} is not a name=value field"));
        };
        let name_ok = (1..=32).contains(&name.len())
            && name.bytes().next().is_some_and(|b| b.is_ascii_alphanumeric())
            && name.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'));
        if !name_ok {
            return Err(format!("{name:?} is not a field name"));
        }
        visit(name, value)?;
    }
    Ok(())
}

/// An extension field's value: printable ASCII without `=` or `;`, at least one character.
pub(crate) fn extension_value_ok(value: &str) -> bool {
    !value.is_empty() && value.bytes().all(|b| b.is_ascii_graphic() && b != b'=' && b != b';')
}
