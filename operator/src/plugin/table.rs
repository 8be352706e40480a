//! Human output as kubectl prints it: upper-case headers, left-aligned columns three
//! spaces apart, no rule; and the `-o json|yaml` forms of the same data.
use super::error::PluginError;
use serde::Serialize;

/// `-o`: a table for people (default), JSON or YAML for scripts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Output {
    #[default]
    Table,
    Json,
    Yaml,
}

impl std::str::FromStr for Output {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "table" | "wide" => Ok(Output::Table),
            "json" => Ok(Output::Json),
            "yaml" => Ok(Output::Yaml),
            _ => Err(format!("output format {s:?} is none of table, json, yaml")),
        }
    }
}

/// `value` as `output` asks: `table` renders it for people.
pub fn emit<T: Serialize + ?Sized>(
    output: Output,
    value: &T,
    table: impl FnOnce() -> String,
) -> Result<String, PluginError> {
    match output {
        Output::Table => Ok(table()),
        Output::Json => serde_json::to_string_pretty(value)
            .map(|s| s + "\n")
            .map_err(|e| PluginError::Invalid(format!("cannot write JSON: {e}"))),
        Output::Yaml => {
            serde_yaml::to_string(value).map_err(|e| PluginError::Invalid(format!("cannot write YAML: {e}")))
        }
    }
}

/// The rows under `headers`, each column as wide as its widest cell.
pub fn render(headers: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |cells: &mut dyn Iterator<Item = &str>| {
        let padded: Vec<String> = cells.zip(&widths).map(|(c, w)| format!("{c:<w$}")).collect();
        padded.join("   ").trim_end().to_string() + "\n"
    };
    let mut out = line(&mut headers.iter().copied());
    for row in rows {
        out.push_str(&line(&mut row.iter().map(String::as_str)));
    }
    out
}

/// A cell for an optional value: `<none>`, as kubectl writes it.
pub fn or_none(value: Option<&str>) -> String {
    match value {
        Some(v) if !v.is_empty() => v.to_string(),
        _ => "<none>".to_string(),
    }
}

/// A cell of one line: line breaks of a message would break the table.
pub fn one_line(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn columns_are_aligned_three_spaces_apart_like_kubectl() {
        let rows = vec![
            vec!["mail-0\\3".to_string(), "Retry".to_string(), "12".to_string()],
            vec!["mail-10\\Submission".to_string(), "Ready".to_string(), "0".to_string()],
        ];
        let text = render(&["IDENTITY", "STATUS", "MESSAGECOUNT"], &rows);
        assert_eq!(
            text,
            "IDENTITY             STATUS   MESSAGECOUNT\n\
             mail-0\\3             Retry    12\n\
             mail-10\\Submission   Ready    0\n"
        );
        assert_eq!(render(&["A", "B"], &[]), "A   B\n");
    }

    #[test]
    fn json_and_yaml_are_the_same_data() {
        let value = serde_json::json!({"server": "mail-0", "messageCount": 3});
        let json = emit(Output::Json, &value, || unreachable!()).unwrap();
        assert_eq!(serde_json::from_str::<serde_json::Value>(&json).unwrap(), value);
        let yaml = emit(Output::Yaml, &value, || unreachable!()).unwrap();
        assert_eq!(serde_yaml::from_str::<serde_json::Value>(&yaml).unwrap(), value);
        assert_eq!(emit(Output::Table, &value, || "t".into()).unwrap(), "t");
        assert!("xml".parse::<Output>().is_err());
        assert_eq!(one_line("a\n  b"), "a b");
        assert_eq!(or_none(Some("")), "<none>");
    }
}
