//! `--kubelet-cmd '<command line>'`: split like a shell would (whitespace,
//! single and double quotes, backslash escapes; no expansion), then fill in
//! the placeholders `{node}`, `{kubeconfig}`, `{kubelet_port}`, `{metrics_port}`.

use anyhow::{Result, bail};

/// Splits a command line into words.
pub fn split(line: &str) -> Result<Vec<String>> {
    let mut words = Vec::new();
    let mut word = String::new();
    let mut in_word = false;
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        match c {
            '\'' => {
                in_word = true;
                loop {
                    match chars.next() {
                        Some('\'') => break,
                        Some(c) => word.push(c),
                        None => bail!("unterminated single quote in {line:?}"),
                    }
                }
            }
            '"' => {
                in_word = true;
                loop {
                    match chars.next() {
                        Some('"') => break,
                        Some('\\') => match chars.next() {
                            Some(c @ ('"' | '\\' | '$' | '`')) => word.push(c),
                            Some(c) => {
                                word.push('\\');
                                word.push(c);
                            }
                            None => bail!("unterminated double quote in {line:?}"),
                        },
                        Some(c) => word.push(c),
                        None => bail!("unterminated double quote in {line:?}"),
                    }
                }
            }
            '\\' => {
                in_word = true;
                match chars.next() {
                    Some(c) => word.push(c),
                    None => bail!("trailing backslash in {line:?}"),
                }
            }
            c if c.is_whitespace() => {
                if in_word {
                    words.push(std::mem::take(&mut word));
                    in_word = false;
                }
            }
            c => {
                in_word = true;
                word.push(c);
            }
        }
    }
    if in_word {
        words.push(word);
    }
    if words.is_empty() {
        bail!("empty command line");
    }
    Ok(words)
}

/// Replaces each `{name}` of `values` in every word.
pub fn fill(words: &[String], values: &[(&str, String)]) -> Vec<String> {
    words
        .iter()
        .map(|w| {
            values.iter().fold(w.clone(), |acc, (name, value)| {
                acc.replace(&format!("{{{name}}}"), value)
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_like_a_shell() {
        assert_eq!(
            split(r#"  /bin/vk --a 'b c' "d \"e\"" f\ g  "#).unwrap(),
            vec!["/bin/vk", "--a", "b c", r#"d "e""#, "f g"]
        );
        assert_eq!(split("x ''").unwrap(), vec!["x", ""]);
        assert!(split("a 'b").is_err());
        assert!(split("   ").is_err());
    }

    #[test]
    fn fills_placeholders() {
        let words = vec![
            "--metrics-addr=127.0.0.1:{metrics_port}".to_string(),
            "{node}".into(),
        ];
        assert_eq!(
            fill(
                &words,
                &[("metrics_port", "9000".into()), ("node", "n1".into())]
            ),
            vec!["--metrics-addr=127.0.0.1:9000", "n1"]
        );
    }
}
