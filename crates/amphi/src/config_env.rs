//! Environment overrides: every configuration key can be set by a variable
//! `AMPHI_<SECTION>_<KEY>`, upper case, dots of nested sections as `_`:
//!
//! | key | variable |
//! |---|---|
//! | `media.udp_port` | `AMPHI_MEDIA_UDP_PORT=7881` |
//! | `http.tls.cert` | `AMPHI_HTTP_TLS_CERT=/etc/amphi/cert.pem` |
//! | `media.public_ips` (a list) | `AMPHI_MEDIA_PUBLIC_IPS=192.0.2.7,2001:db8::7` |
//! | `auth.keys[0].secret_file` | `AMPHI_AUTH_KEYS_0_SECRET_FILE=/run/secrets/portal` |
//! | `webhooks[1].url` | `AMPHI_WEBHOOKS_1_URL=https://lms.example/amphi` |
//!
//! A variable wins over the file. Entries of `[[auth.keys]]` and
//! `[[webhooks]]` are numbered from 0; a variable may change an entry of the
//! file or add the next one. A variable that starts like a section
//! (`AMPHI_MEDIA_…`) but names no key is an error, so a typo is not silently
//! ignored; other `AMPHI_*` variables (`AMPHI_LOG`, …) are left alone.
//!
//! The list of keys is not written twice: it is read from the serialized
//! defaults of [`Config`], plus the few keys whose default is "unset".

use toml::{Table, Value};

use crate::config::{Config, Issue};

pub const PREFIX: &str = "AMPHI_";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Str,
    Int,
    Bool,
    /// Comma-separated in a variable.
    List,
}

/// Keys whose default is "unset" (`Option` fields), which therefore do not
/// appear in the serialized defaults.
const OPTIONAL_KEYS: &[(&str, Kind)] = &[
    ("media.tcp_port", Kind::Int),
    ("turn.bind_ip", Kind::Str),
    ("turn.host", Kind::Str),
    ("turn.secret", Kind::Str),
    ("turn.secret_file", Kind::Str),
];

/// Arrays of tables, and the fields of their entries.
pub const TABLE_ARRAYS: &[(&str, &[&str])] = &[
    ("auth.keys", &["id", "secret", "secret_file"]),
    ("webhooks", &["url", "secret", "secret_file"]),
];

/// Every plain key (not in an array of tables), dotted, with its kind and
/// its default rendered as TOML (`None` for unset ones).
pub fn keys() -> Vec<(String, Kind, Option<Value>)> {
    let defaults = Table::try_from(Config::default()).unwrap_or_default();
    let mut out = Vec::new();
    collect(&defaults, "", &mut out);
    for (path, kind) in OPTIONAL_KEYS {
        if !out.iter().any(|(p, _, _)| p == path) {
            out.push(((*path).to_owned(), *kind, None));
        }
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

fn collect(table: &Table, prefix: &str, out: &mut Vec<(String, Kind, Option<Value>)>) {
    for (k, v) in table {
        let path = if prefix.is_empty() {
            k.clone()
        } else {
            format!("{prefix}.{k}")
        };
        if TABLE_ARRAYS.iter().any(|(p, _)| *p == path) {
            continue;
        }
        let kind = match v {
            Value::Table(t) => {
                collect(t, &path, out);
                continue;
            }
            Value::Integer(_) => Kind::Int,
            Value::Boolean(_) => Kind::Bool,
            Value::Array(_) => Kind::List,
            _ => Kind::Str,
        };
        out.push((path, kind, Some(v.clone())));
    }
}

/// The variable that overrides `path` (`media.udp_port` →
/// `AMPHI_MEDIA_UDP_PORT`).
pub fn var_name(path: &str) -> String {
    format!(
        "{PREFIX}{}",
        path.replace(['.', '[', ']'], "_").replace("__", "_")
    )
    .trim_end_matches('_')
    .to_uppercase()
}

/// Applies every `AMPHI_*` variable of `env` to `table`. Returns which key
/// each applied variable set (for error messages), or every problem found.
pub fn apply(
    table: &mut Table,
    env: impl IntoIterator<Item = (String, String)>,
) -> Result<Vec<(String, String)>, Vec<Issue>> {
    let keys = keys();
    let sections: Vec<String> = {
        let mut s: Vec<String> = keys
            .iter()
            .map(|(p, _, _)| p.split('.').next().unwrap_or_default().to_uppercase())
            .collect();
        s.extend(
            TABLE_ARRAYS
                .iter()
                .map(|(p, _)| p.split('.').next().unwrap_or_default().to_uppercase()),
        );
        s.sort();
        s.dedup();
        s
    };
    let mut vars: Vec<(String, String)> = env
        .into_iter()
        .filter(|(k, _)| k.starts_with(PREFIX))
        .collect();
    vars.sort();
    let mut applied = Vec::new();
    let mut issues = Vec::new();
    for (var, raw) in vars {
        let rest = &var[PREFIX.len()..];
        let result = if let Some((path, kind, _)) = keys.iter().find(|(p, _, _)| var_name(p) == var)
        {
            let parts: Vec<&str> = path.split('.').collect();
            convert(&raw, *kind)
                .and_then(|v| set(table, &parts, v))
                .map(|()| path.clone())
        } else if let Some(r) = table_array_var(table, rest, &raw) {
            r
        } else if sections.iter().any(|s| rest.starts_with(&format!("{s}_"))) {
            Err("no such configuration key (see deploy/amphi.example.toml)".to_owned())
        } else {
            continue;
        };
        match result {
            Ok(key) => applied.push((key, var)),
            Err(message) => issues.push(Issue::new(var, message)),
        }
    }
    if issues.is_empty() {
        Ok(applied)
    } else {
        Err(issues)
    }
}

/// `AUTH_KEYS_0_SECRET_FILE` and the like. `None`: not such a variable.
fn table_array_var(table: &mut Table, rest: &str, raw: &str) -> Option<Result<String, String>> {
    for (path, fields) in TABLE_ARRAYS {
        let head = format!("{}_", path.replace('.', "_").to_uppercase());
        let Some(tail) = rest.strip_prefix(&head) else {
            continue;
        };
        let Some((index, field)) = tail.split_once('_') else {
            return Some(Err(format!("expected {PREFIX}{head}<N>_<FIELD>")));
        };
        let Ok(index) = index.parse::<usize>() else {
            return Some(Err(format!("{index:?} is not an entry number")));
        };
        let Some(field) = fields.iter().find(|f| f.to_uppercase() == field) else {
            return Some(Err(format!(
                "{path} entries have no field {:?}; they have {}",
                field.to_lowercase(),
                fields.join(", ")
            )));
        };
        let parts: Vec<&str> = path.split('.').collect();
        return Some(
            set_in_array(table, &parts, index, field, raw)
                .map(|()| format!("{path}[{index}].{field}")),
        );
    }
    None
}

fn convert(raw: &str, kind: Kind) -> Result<Value, String> {
    Ok(match kind {
        Kind::Str => Value::String(raw.to_owned()),
        Kind::Int => Value::Integer(
            raw.trim()
                .parse()
                .map_err(|_| format!("{raw:?} is not a whole number"))?,
        ),
        Kind::Bool => Value::Boolean(match raw.trim() {
            "true" | "1" | "yes" => true,
            "false" | "0" | "no" => false,
            _ => return Err(format!("{raw:?} is not true or false")),
        }),
        Kind::List => Value::Array(
            raw.split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(|s| Value::String(s.to_owned()))
                .collect(),
        ),
    })
}

/// The table at `parts`, created if missing.
fn table_at<'t>(table: &'t mut Table, parts: &[&str]) -> Result<&'t mut Table, String> {
    let mut t = table;
    for (i, part) in parts.iter().enumerate() {
        let entry = t
            .entry((*part).to_owned())
            .or_insert_with(|| Value::Table(Table::new()));
        t = entry
            .as_table_mut()
            .ok_or_else(|| format!("{} is not a section in the file", parts[..=i].join(".")))?;
    }
    Ok(t)
}

fn set(table: &mut Table, parts: &[&str], value: Value) -> Result<(), String> {
    let (last, sections) = parts.split_last().ok_or("empty key")?;
    table_at(table, sections)?.insert((*last).to_owned(), value);
    Ok(())
}

fn set_in_array(
    table: &mut Table,
    parts: &[&str],
    index: usize,
    field: &str,
    raw: &str,
) -> Result<(), String> {
    let (last, sections) = parts.split_last().ok_or("empty key")?;
    let parent = table_at(table, sections)?;
    let array = parent
        .entry((*last).to_owned())
        .or_insert_with(|| Value::Array(Vec::new()))
        .as_array_mut()
        .ok_or_else(|| format!("{} is not a list of tables in the file", parts.join(".")))?;
    if index > array.len() {
        return Err(format!(
            "entries are numbered from 0 without gaps; the next is {}",
            array.len()
        ));
    }
    if index == array.len() {
        array.push(Value::Table(Table::new()));
    }
    let entry = array[index]
        .as_table_mut()
        .ok_or_else(|| format!("{}[{index}] is not a table", parts.join(".")))?;
    entry.insert(field.to_owned(), Value::String(raw.to_owned()));
    Ok(())
}
