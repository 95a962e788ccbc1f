//! Rendering results: aligned tables for people, JSON and YAML for programs.

use serde::Serialize;

use super::cli::Output;
use super::exit::CtlError;

/// Left-aligned columns separated by two spaces, without trailing blanks.
pub fn table(headers: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (i, cell) in row.iter().enumerate() {
            if i < widths.len() {
                widths[i] = widths[i].max(cell.chars().count());
            }
        }
    }
    let header: Vec<String> = headers.iter().map(|h| h.to_string()).collect();
    let mut out = String::new();
    for row in std::iter::once(&header).chain(rows) {
        let mut line = String::new();
        for (i, cell) in row.iter().enumerate() {
            if i > 0 {
                line.push_str("  ");
            }
            line.push_str(cell);
            let pad = widths.get(i).copied().unwrap_or(0);
            line.extend(std::iter::repeat_n(
                ' ',
                pad.saturating_sub(cell.chars().count()),
            ));
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

/// `value` as pretty JSON or YAML (ending with a newline).
pub fn structured<T: Serialize>(format: Output, value: &T) -> Result<String, CtlError> {
    let text = match format {
        Output::Json | Output::Table => serde_json::to_string_pretty(value)
            .map(|s| s + "\n")
            .map_err(|e| CtlError::error(format!("cannot encode JSON: {e}")))?,
        Output::Yaml => serde_norway::to_string(value)
            .map_err(|e| CtlError::error(format!("cannot encode YAML: {e}")))?,
    };
    Ok(text)
}

/// Prints `value` in the structured `format` on stdout.
pub fn print_structured<T: Serialize>(format: Output, value: &T) -> Result<(), CtlError> {
    print!("{}", structured(format, value)?);
    Ok(())
}

/// Bytes for JSON/YAML: the text if it is UTF-8, else `{hex: ...}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(untagged)]
pub enum Text {
    Utf8(String),
    Hex { hex: String },
}

impl Text {
    pub fn new(bytes: &[u8]) -> Text {
        match std::str::from_utf8(bytes) {
            Ok(s) => Text::Utf8(s.to_string()),
            Err(_) => Text::Hex {
                hex: bytes.iter().map(|b| format!("{b:02x}")).collect(),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_aligns_columns() {
        let rows = vec![
            vec!["0".into(), "127.0.0.1:7379".into(), "leader".into()],
            vec!["10".into(), "h:1".into(), "".into()],
        ];
        assert_eq!(
            table(&["ID", "ADDRESS", "ROLE"], &rows),
            "ID  ADDRESS         ROLE\n\
             0   127.0.0.1:7379  leader\n\
             10  h:1\n"
        );
    }

    #[derive(Serialize)]
    struct Row {
        id: u64,
        value: Text,
    }

    #[test]
    fn json_and_yaml() {
        let row = Row {
            id: 1,
            value: Text::new(b"hi"),
        };
        assert_eq!(
            structured(Output::Json, &row).unwrap(),
            "{\n  \"id\": 1,\n  \"value\": \"hi\"\n}\n"
        );
        assert_eq!(
            structured(Output::Yaml, &row).unwrap(),
            "id: 1\nvalue: hi\n"
        );
    }

    #[test]
    fn binary_values_become_hex() {
        assert_eq!(Text::new(&[0xff, 0x00]), Text::Hex { hex: "ff00".into() });
    }
}
