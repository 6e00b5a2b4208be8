//! Everything about a script that happens before it is sent: finding its source, reading its
//! arguments, describing the bundled library, and pointing at a compile error in the source.

use std::collections::BTreeMap;

/// A bundled script, as `kubectl pixie scripts list` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScriptInfo {
    pub name: &'static str,
    pub description: String,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ScriptError {
    #[error("no bundled script {name:?}{hint}; `kubectl pixie scripts list` shows them")]
    UnknownScript { name: String, hint: String },
    #[error("script arguments go as `-- --name value`; got {0:?}")]
    BadArgument(String),
    #[error("script argument --{0} has no value")]
    MissingValue(String),
    #[error("{script} has no argument --{name}; it takes {known}")]
    UnknownArgument {
        script: String,
        name: String,
        known: String,
    },
    #[error("{script} needs --{name} (it has no default)")]
    MissingArgument { script: String, name: String },
    #[error("--{name} {value:?} is not one of the values {script} accepts: {valid}")]
    InvalidValue {
        script: String,
        name: String,
        value: String,
        valid: String,
    },
}

/// The bundled scripts with the description from each one's first comment line.
pub fn bundled() -> Vec<ScriptInfo> {
    pixie_pxl::bundled_scripts()
        .into_iter()
        .map(|(name, source)| ScriptInfo {
            name,
            description: description(source),
        })
        .collect()
}

/// The text of the first line that is a `#` comment, without the `#`.
pub fn description(source: &str) -> String {
    source
        .lines()
        .map(str::trim)
        .find_map(|line| line.strip_prefix('#'))
        .map(|d| d.trim().to_owned())
        .unwrap_or_default()
}

/// The source of bundled script `name` (`px/http_data`; the `px/` may be left out).
pub fn bundled_source(name: &str) -> Result<&'static str, ScriptError> {
    let scripts = pixie_pxl::bundled_scripts();
    let wanted = if name.contains('/') {
        name.to_owned()
    } else {
        format!("px/{name}")
    };
    if let Some((_, source)) = scripts.iter().find(|(n, _)| *n == wanted) {
        return Ok(source);
    }
    let closest = scripts
        .iter()
        .map(|(n, _)| (edit_distance(n, &wanted), *n))
        .min()
        .filter(|(d, _)| *d <= 3)
        .map(|(_, n)| format!(" (did you mean {n}?)"))
        .unwrap_or_default();
    Err(ScriptError::UnknownScript {
        name: name.to_owned(),
        hint: closest,
    })
}

/// `--start -10m --svc=frontend` into `{start: -10m, svc: frontend}`. A value may itself start with
/// `-` (relative times do), so the word after `--name` is always its value.
pub fn parse_args(words: &[String]) -> Result<BTreeMap<String, String>, ScriptError> {
    let mut args = BTreeMap::new();
    let mut words = words.iter();
    while let Some(word) = words.next() {
        let Some(name) = word.strip_prefix("--").filter(|n| !n.is_empty()) else {
            return Err(ScriptError::BadArgument(word.clone()));
        };
        let (name, value) = match name.split_once('=') {
            Some((n, v)) => (n.to_owned(), v.to_owned()),
            None => {
                let value = words
                    .next()
                    .ok_or_else(|| ScriptError::MissingValue(name.to_owned()))?;
                (name.to_owned(), value.clone())
            }
        };
        args.insert(name, value);
    }
    Ok(args)
}

/// The arguments of a PxlScript run: each declared argument's default, replaced by the value
/// given on the command line. Unknown names, missing values without a default and values outside
/// `validValues` are refused, naming the argument.
pub fn resolve_declared_args(
    script: &str,
    declared: &[pixie_crds::ScriptArg],
    given: BTreeMap<String, String>,
) -> Result<BTreeMap<String, String>, ScriptError> {
    if let Some(name) = given
        .keys()
        .find(|n| !declared.iter().any(|d| &d.name == *n))
    {
        let known: Vec<String> = declared.iter().map(|d| format!("--{}", d.name)).collect();
        return Err(ScriptError::UnknownArgument {
            script: script.to_owned(),
            name: name.clone(),
            known: if known.is_empty() {
                "no arguments".to_owned()
            } else {
                known.join(", ")
            },
        });
    }
    let mut args = BTreeMap::new();
    for arg in declared {
        let Some(value) = given.get(&arg.name).or(arg.default.as_ref()) else {
            return Err(ScriptError::MissingArgument {
                script: script.to_owned(),
                name: arg.name.clone(),
            });
        };
        if let Some(valid) = &arg.valid_values
            && !valid.contains(value)
        {
            return Err(ScriptError::InvalidValue {
                script: script.to_owned(),
                name: arg.name.clone(),
                value: value.clone(),
                valid: valid.join(", "),
            });
        }
        args.insert(arg.name.clone(), value.clone());
    }
    Ok(args)
}

/// `line:col: message`, then the source line and a caret under the column (both 1-based).
pub fn render_compile_error(source: &str, line: u32, col: u32, message: &str) -> String {
    let mut out = format!("{line}:{col}: {message}\n");
    let Some(text) = source.lines().nth((line as usize).saturating_sub(1)) else {
        return out;
    };
    let gutter = format!("{line} | ");
    // Tabs stay tabs so that the caret lines up however the terminal renders them.
    let pad: String = text
        .chars()
        .take((col as usize).saturating_sub(1))
        .map(|c| if c == '\t' { '\t' } else { ' ' })
        .collect();
    out.push_str(&format!("{gutter}{text}\n"));
    out.push_str(&format!("{}{pad}^\n", " ".repeat(gutter.len())));
    out
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut prev = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let cur = row[j + 1];
            row[j + 1] = if ca == *cb {
                prev
            } else {
                1 + prev.min(cur).min(row[j])
            };
            prev = cur;
        }
    }
    row[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn arguments_take_the_next_word_even_when_it_starts_with_a_dash() {
        let args = parse_args(&words(&["--start", "-10m", "--svc=front=end"])).unwrap();
        assert_eq!(args["start"], "-10m");
        assert_eq!(args["svc"], "front=end");
        assert_eq!(
            parse_args(&words(&["start", "x"])),
            Err(ScriptError::BadArgument("start".into()))
        );
        assert_eq!(
            parse_args(&words(&["--start"])),
            Err(ScriptError::MissingValue("start".into()))
        );
        assert!(parse_args(&[]).unwrap().is_empty());
    }

    fn declared(
        name: &str,
        default: Option<&str>,
        valid: Option<&[&str]>,
    ) -> pixie_crds::ScriptArg {
        pixie_crds::ScriptArg {
            name: name.into(),
            type_: pixie_crds::ScriptArgType::String,
            default: default.map(Into::into),
            description: None,
            valid_values: valid.map(|v| v.iter().map(|s| s.to_string()).collect()),
        }
    }

    #[test]
    fn declared_defaults_are_overridden_by_given_arguments() {
        let declared = [
            declared("start_time", Some("-5m"), None),
            declared("service", Some(""), None),
        ];
        let given = parse_args(&words(&["--start_time", "-1m"])).unwrap();
        let args = resolve_declared_args("pxl/stats", &declared, given).unwrap();
        assert_eq!(args["start_time"], "-1m");
        assert_eq!(args["service"], "");
    }

    #[test]
    fn declared_arguments_refuse_unknown_missing_and_invalid_values() {
        let declared = [
            declared("start_time", None, None),
            declared("mode", Some("fast"), Some(&["fast", "slow"])),
        ];
        let unknown = parse_args(&words(&["--svc", "x", "--start_time", "-1m"])).unwrap();
        assert_eq!(
            resolve_declared_args("pxl/s", &declared, unknown)
                .unwrap_err()
                .to_string(),
            "pxl/s has no argument --svc; it takes --start_time, --mode"
        );
        assert_eq!(
            resolve_declared_args("pxl/s", &declared, BTreeMap::new())
                .unwrap_err()
                .to_string(),
            "pxl/s needs --start_time (it has no default)"
        );
        let invalid = parse_args(&words(&["--start_time", "-1m", "--mode", "medium"])).unwrap();
        assert_eq!(
            resolve_declared_args("pxl/s", &declared, invalid)
                .unwrap_err()
                .to_string(),
            "--mode \"medium\" is not one of the values pxl/s accepts: fast, slow"
        );
    }

    #[test]
    fn the_description_is_the_first_comment_line() {
        assert_eq!(
            description("\n# HTTP requests, newest first.\nimport px\n# other"),
            "HTTP requests, newest first."
        );
        assert_eq!(description("import px\n"), "");
    }

    #[test]
    fn a_compile_error_points_at_its_column() {
        let source = "import px\ndf = px.DataFrame('nope')\n";
        let text = render_compile_error(source, 2, 6, "unknown table 'nope'");
        assert_eq!(
            text,
            "2:6: unknown table 'nope'\n\
             2 | df = px.DataFrame('nope')\n\
             \x20        ^\n"
        );
        // A line past the end still prints the message.
        assert_eq!(render_compile_error(source, 9, 1, "m"), "9:1: m\n");
    }

    #[test]
    fn distances_count_edits() {
        assert_eq!(edit_distance("px/http_data", "px/http_data"), 0);
        assert_eq!(edit_distance("px/http_data", "px/htp_data"), 1);
        assert_eq!(edit_distance("abc", ""), 3);
    }
}
