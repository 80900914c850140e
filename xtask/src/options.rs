//! The `--name VALUE` / `--name=VALUE` options of the xtask's commands.

use anyhow::{Context, Result, bail};

/// The options in `args`, in order, as (name, value): every argument must be
/// one of `known`, followed by its value or joined to it with `=`. Anything
/// else is an error that ends with `usage`.
pub fn parse(args: &[String], known: &[&str], usage: &str) -> Result<Vec<(String, String)>> {
    let mut out = Vec::new();
    let mut iter = args.iter();
    while let Some(arg) = iter.next() {
        let (name, inline) = match arg.split_once('=') {
            Some((name, value)) => (name, Some(value.to_string())),
            None => (arg.as_str(), None),
        };
        if !known.contains(&name) {
            bail!("unexpected argument {arg:?}; {usage}");
        }
        let value = match inline {
            Some(value) => value,
            None => iter
                .next()
                .cloned()
                .with_context(|| format!("{name} needs a value"))?,
        };
        out.push((name.to_string(), value));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(a: &[&str]) -> Vec<String> {
        a.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn separate_and_joined_values_in_order() -> Result<()> {
        let parsed = parse(
            &args(&["--a", "1", "--b=2", "--a=x=y"]),
            &["--a", "--b"],
            "u",
        )?;
        let want = [("--a", "1"), ("--b", "2"), ("--a", "x=y")];
        let want: Vec<(String, String)> = want
            .iter()
            .map(|(n, v)| (n.to_string(), v.to_string()))
            .collect();
        assert_eq!(parsed, want);
        assert!(parse(&[], &["--a"], "u")?.is_empty());
        Ok(())
    }

    #[test]
    fn unknown_arguments_and_missing_values_are_errors() {
        let err = parse(&args(&["--c", "1"]), &["--a"], "usage: x").err();
        assert!(err.is_some_and(|e| e.to_string().ends_with("usage: x")));
        let err = parse(&args(&["--a"]), &["--a"], "u").err();
        assert!(err.is_some_and(|e| e.to_string() == "--a needs a value"));
        assert!(parse(&args(&["plain"]), &["--a"], "u").is_err());
    }
}
