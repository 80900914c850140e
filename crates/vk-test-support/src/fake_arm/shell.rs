//! The tiny command set the fake's exec sessions run, and the shell word
//! splitting ACI applies to its one command string: enough to show how an
//! argv arrives.
//!
//! - `echo ARGS...`: the arguments joined by spaces;
//! - `argv ARGS...`: each argument on its own line in brackets (`[a b]`),
//!   so a test sees exactly where the words were split;
//! - `ls [DIR...]`: a fixed tree (`/`, `/bin`, `/etc`);
//! - `sh -c SCRIPT`: SCRIPT split and run as one of these;
//! - `cat`: stdin echoed until end of input (EOT, Ctrl-D);
//! - `sh`: an interactive shell: a `$ ` prompt, one command per line, until
//!   `exit` or EOT;
//! - anything else: `sh: NAME: not found`.

/// What a command does.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) enum Program {
    /// Writes this and ends.
    Output(String),
    /// Echoes stdin until EOT.
    Cat,
    /// Reads commands line by line.
    Shell,
}

/// `/bin`'s listing (the commands the fake knows).
const BIN: &str = "argv\ncat\necho\nls\nsh\n";

/// Splits a command line into words the POSIX shell way: blanks separate
/// words; single quotes keep everything; double quotes keep everything but
/// `\"`, `\\`, `\$` and `` \` ``; a backslash outside quotes keeps the next
/// character.
pub(super) fn split(line: &str) -> Result<Vec<String>, String> {
    let mut words = Vec::new();
    let mut word: Option<String> = None;
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        match c {
            ' ' | '\t' | '\n' => {
                if let Some(w) = word.take() {
                    words.push(w);
                }
            }
            '\'' => {
                let w = word.get_or_insert_with(String::new);
                loop {
                    match chars.next() {
                        Some('\'') => break,
                        Some(c) => w.push(c),
                        None => return Err("unterminated single quote".into()),
                    }
                }
            }
            '"' => {
                let w = word.get_or_insert_with(String::new);
                loop {
                    match chars.next() {
                        Some('"') => break,
                        Some('\\') => match chars.next() {
                            Some(c @ ('"' | '\\' | '$' | '`')) => w.push(c),
                            Some(c) => {
                                w.push('\\');
                                w.push(c);
                            }
                            None => return Err("unterminated double quote".into()),
                        },
                        Some(c) => w.push(c),
                        None => return Err("unterminated double quote".into()),
                    }
                }
            }
            '\\' => {
                let w = word.get_or_insert_with(String::new);
                match chars.next() {
                    Some('\n') | None => {}
                    Some(c) => w.push(c),
                }
            }
            c => word.get_or_insert_with(String::new).push(c),
        }
    }
    words.extend(word);
    Ok(words)
}

fn listing(dir: &str) -> Result<&'static str, String> {
    match dir.trim_end_matches('/') {
        "" => Ok("bin\netc\ntmp\n"),
        "/bin" => Ok(BIN),
        "/etc" => Ok("hostname\nhosts\nresolv.conf\n"),
        "/tmp" => Ok(""),
        _ => Err(format!(
            "ls: cannot access '{dir}': No such file or directory\n"
        )),
    }
}

fn ls(dirs: &[String]) -> String {
    match dirs {
        [] => listing("/").map(str::to_string).unwrap_or_else(|e| e),
        [dir] => listing(dir).map(str::to_string).unwrap_or_else(|e| e),
        _ => dirs
            .iter()
            .map(|d| match listing(d) {
                Ok(l) => format!("{d}:\n{l}"),
                Err(e) => e,
            })
            .collect::<Vec<_>>()
            .join("\n"),
    }
}

/// What `argv` does.
pub(super) fn plan(argv: &[String]) -> Program {
    let Some((name, args)) = argv.split_first() else {
        return Program::Output(String::new());
    };
    match (name.as_str(), args) {
        ("echo", args) => Program::Output(format!("{}\n", args.join(" "))),
        ("argv", args) => Program::Output(args.iter().map(|a| format!("[{a}]\n")).collect()),
        ("ls", dirs) => Program::Output(ls(dirs)),
        ("cat", []) => Program::Cat,
        ("sh" | "/bin/sh", []) => Program::Shell,
        ("sh" | "/bin/sh", [flag, script, ..]) if flag == "-c" => match split(script) {
            Ok(words) => plan(&words),
            Err(e) => Program::Output(format!("sh: syntax error: {e}\n")),
        },
        (other, _) => Program::Output(format!("sh: {other}: not found\n")),
    }
}

/// One line typed into the interactive shell: its output, or `None` for
/// `exit`.
pub(super) fn shell_line(line: &str) -> Option<String> {
    match split(line) {
        Ok(words) if words.first().map(String::as_str) == Some("exit") => None,
        Ok(words) => Some(match plan(&words) {
            Program::Output(out) => out,
            Program::Cat | Program::Shell => "sh: not in the fake's interactive shell\n".into(),
        }),
        Err(e) => Some(format!("sh: syntax error: {e}\n")),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    fn words(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn splits_like_a_shell() {
        let cases: [(&str, &[&str]); 6] = [
            ("ls /bin", &["ls", "/bin"]),
            ("sh -c 'echo a b'", &["sh", "-c", "echo a b"]),
            (r"echo 'it'\''s'", &["echo", "it's"]),
            (r#"echo "a \"b\" \n" c\ d"#, &["echo", r#"a "b" \n"#, "c d"]),
            ("echo ''", &["echo", ""]),
            ("  a   b  ", &["a", "b"]),
        ];
        for (line, want) in cases {
            assert_eq!(split(line).unwrap(), words(want), "{line}");
        }
        assert!(split("echo 'open").is_err());
    }

    #[test]
    fn runs_the_tiny_command_set() {
        let out = |line: &str| plan(&split(line).unwrap());
        assert_eq!(out("ls /bin"), Program::Output(BIN.into()));
        assert_eq!(out("sh -c 'echo a b'"), Program::Output("a b\n".into()));
        assert_eq!(out("argv 'a b' c"), Program::Output("[a b]\n[c]\n".into()));
        assert_eq!(out("cat"), Program::Cat);
        assert_eq!(out("sh"), Program::Shell);
        // Joined with spaces (azure-aci#126), `ls /bin` would list `/`.
        assert_eq!(out("ls"), Program::Output("bin\netc\ntmp\n".into()));
        assert_eq!(
            out("nope x"),
            Program::Output("sh: nope: not found\n".into())
        );
        assert_eq!(shell_line("echo hi"), Some("hi\n".into()));
        assert_eq!(shell_line("exit"), None);
    }
}
