//! The key-value subcommands: set, get, keys, del, incr, expire, ttl, cas.

use std::io::{IsTerminal, Read, Write};

use serde::Serialize;

use super::cli::{CasArgs, GetArgs, KeysArgs, Output};
use super::exit::CtlError;
use super::output::{Text, print_structured};
use crate::client::{Client, Ttl};

/// Writes `value`, or stdin's bytes when no value is given.
pub async fn set(
    client: &Client,
    output: Output,
    key: &str,
    value: Option<&str>,
) -> Result<(), CtlError> {
    let value = match value {
        Some(v) => v.as_bytes().to_vec(),
        None => {
            let mut buf = Vec::new();
            std::io::stdin().lock().read_to_end(&mut buf)?;
            buf
        }
    };
    client.set(key.as_bytes(), &value).await?;
    #[derive(Serialize)]
    struct Answer<'a> {
        key: &'a str,
        ok: bool,
    }
    plain_or(output, "OK", &Answer { key, ok: true })
}

/// `get KEY`, or `get --prefix P` (every key under P with its value).
pub async fn get(client: &Client, output: Output, args: &GetArgs) -> Result<(), CtlError> {
    match (&args.prefix, &args.key) {
        (Some(prefix), _) => list(client, output, prefix, args.limit, false).await,
        (None, Some(key)) => get_one(client, output, key).await,
        // clap requires one of them.
        (None, None) => Err(CtlError::error("give KEY or --prefix")),
    }
}

/// `keys [PREFIX]`: the keys under PREFIX, then their count.
pub async fn keys(client: &Client, output: Output, args: &KeysArgs) -> Result<(), CtlError> {
    list(client, output, &args.prefix, args.limit, true).await
}

/// Lists the keys under `prefix` (with values unless `keys_only`): one per
/// line (`KEY` or `KEY=VALUE`, bytes as given) and a last line on stderr
/// with the count, or an object with `items` and `count`.
async fn list(
    client: &Client,
    output: Output,
    prefix: &str,
    limit: u64,
    keys_only: bool,
) -> Result<(), CtlError> {
    let (items, count) = client.range(prefix.as_bytes(), limit, keys_only).await?;
    if output == Output::Table {
        let mut stdout = std::io::stdout().lock();
        for kv in &items {
            stdout.write_all(&kv.key)?;
            if !keys_only {
                stdout.write_all(b"=")?;
                stdout.write_all(&kv.value)?;
            }
            stdout.write_all(b"\n")?;
        }
        stdout.flush()?;
        let shown = if (items.len() as u64) < count {
            format!(" ({} shown)", items.len())
        } else {
            String::new()
        };
        eprintln!("{count} keys{shown}");
        return Ok(());
    }
    #[derive(Serialize)]
    struct Item {
        key: Text,
        #[serde(skip_serializing_if = "Option::is_none")]
        value: Option<Text>,
    }
    #[derive(Serialize)]
    struct Answer {
        prefix: Text,
        count: u64,
        items: Vec<Item>,
    }
    let items = items
        .iter()
        .map(|kv| Item {
            key: Text::new(&kv.key),
            value: (!keys_only).then(|| Text::new(&kv.value)),
        })
        .collect();
    let prefix = Text::new(prefix.as_bytes());
    print_structured(
        output,
        &Answer {
            prefix,
            count,
            items,
        },
    )
}

/// Prints the value raw (with a newline only on a terminal, so a pipe gets
/// the exact bytes); a missing key is an error.
async fn get_one(client: &Client, output: Output, key: &str) -> Result<(), CtlError> {
    let Some(value) = client.get(key.as_bytes()).await? else {
        return Err(CtlError::error("key not found"));
    };
    if output != Output::Table {
        #[derive(Serialize)]
        struct Answer<'a> {
            key: &'a str,
            value: Text,
        }
        let value = Text::new(&value);
        return print_structured(output, &Answer { key, value });
    }
    let mut stdout = std::io::stdout().lock();
    stdout.write_all(&value)?;
    if stdout.is_terminal() {
        stdout.write_all(b"\n")?;
    }
    stdout.flush()?;
    Ok(())
}

pub async fn del(client: &Client, output: Output, key: &str) -> Result<(), CtlError> {
    let existed = client.del(key.as_bytes()).await?;
    #[derive(Serialize)]
    struct Answer<'a> {
        key: &'a str,
        deleted: bool,
    }
    let text = if existed { "1" } else { "0" };
    plain_or(
        output,
        text,
        &Answer {
            key,
            deleted: existed,
        },
    )
}

pub async fn incr(client: &Client, output: Output, key: &str) -> Result<(), CtlError> {
    let value = client.incr(key.as_bytes()).await?;
    #[derive(Serialize)]
    struct Answer<'a> {
        key: &'a str,
        value: i64,
    }
    plain_or(output, &value.to_string(), &Answer { key, value })
}

pub async fn expire(
    client: &Client,
    output: Output,
    key: &str,
    seconds: u64,
) -> Result<(), CtlError> {
    let applied = client.expire(key.as_bytes(), seconds).await?;
    #[derive(Serialize)]
    struct Answer<'a> {
        key: &'a str,
        applied: bool,
    }
    let text = if applied { "1" } else { "0" };
    plain_or(output, text, &Answer { key, applied })
}

pub async fn ttl(client: &Client, output: Output, key: &str) -> Result<(), CtlError> {
    let seconds = match client.ttl(key.as_bytes()).await? {
        Ttl::NoKey => return Err(CtlError::error("key not found")),
        Ttl::NoExpiry => None,
        Ttl::Seconds(s) => Some(s),
    };
    #[derive(Serialize)]
    struct Answer<'a> {
        key: &'a str,
        /// `null`: the key never expires.
        seconds: Option<u64>,
    }
    let text = seconds.map_or("none".to_string(), |s| s.to_string());
    plain_or(output, &text, &Answer { key, seconds })
}

/// A compare that fails is exit 1 (scripts test `raftctl cas ... &&`); the
/// structured output still shows the current value.
pub async fn cas(client: &Client, output: Output, args: &CasArgs) -> Result<(), CtlError> {
    let (expected, new) = args.values();
    let outcome = client
        .cas(
            args.key.as_bytes(),
            expected.map(str::as_bytes),
            new.as_bytes(),
        )
        .await?;
    if output != Output::Table {
        #[derive(Serialize)]
        struct Answer<'a> {
            key: &'a str,
            swapped: bool,
            current: Option<Text>,
        }
        print_structured(
            output,
            &Answer {
                key: &args.key,
                swapped: outcome.swapped,
                current: outcome.current.as_deref().map(Text::new),
            },
        )?;
    } else if outcome.swapped {
        println!("OK");
    }
    if outcome.swapped {
        return Ok(());
    }
    Err(CtlError::error(match &outcome.current {
        None => "not swapped: the key does not exist".to_string(),
        Some(v) => format!(
            "not swapped: the current value is {:?}",
            String::from_utf8_lossy(v)
        ),
    }))
}

/// `text` on a line for the table format, else `value` as JSON/YAML.
fn plain_or<T: Serialize>(output: Output, text: &str, value: &T) -> Result<(), CtlError> {
    match output {
        Output::Table => {
            println!("{text}");
            Ok(())
        }
        _ => print_structured(output, value),
    }
}
