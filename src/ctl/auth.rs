//! `raftctl user`, `raftctl role` and `raftctl auth`: the auth store
//! (docs/security.md, "Users and roles"; docs/raftctl.md).

use clap::{Args, Subcommand, ValueEnum};
use serde::Serialize;

use super::cli::Output;
use super::exit::{CtlError, Exit};
use super::output::{Text, print_structured, table};
use crate::client::{Client, Credentials};
use crate::pb;
use crate::pb::auth_cmd::Op;

/// Where a new password comes from when `--password` is not given.
pub const NEW_PASSWORD_ENV: &str = "RAFTKV_NEW_PASSWORD";

#[derive(Debug, Subcommand)]
pub enum UserCommand {
    /// Add user NAME (password from --password or RAFTKV_NEW_PASSWORD, else
    /// asked twice on the terminal).
    Add(UserPassword),
    /// Delete user NAME.
    Delete { name: String },
    /// Set NAME's password (from --password or RAFTKV_NEW_PASSWORD, else
    /// asked twice on the terminal); its older tokens stop working.
    Passwd(UserPassword),
    /// Grant role ROLE to user NAME.
    Grant { name: String, role: String },
    /// Revoke role ROLE from user NAME.
    Revoke { name: String, role: String },
    /// List the users and their roles.
    List,
    /// Show user NAME and its roles.
    Get { name: String },
}

#[derive(Debug, Args)]
pub struct UserPassword {
    pub name: String,
    /// The new password (visible to other local users in the process list:
    /// prefer RAFTKV_NEW_PASSWORD).
    #[arg(long, env = NEW_PASSWORD_ENV, hide_env_values = true)]
    pub password: Option<String>,
}

#[derive(Debug, Subcommand)]
pub enum RoleCommand {
    /// Add role NAME (without permissions).
    Add { name: String },
    /// Delete role NAME (and revoke it from every user).
    Delete { name: String },
    /// Let role NAME read, write or both every key starting with PREFIX
    /// ("" for every key).
    Grant {
        name: String,
        prefix: String,
        permission: PermissionArg,
    },
    /// Remove role NAME's permission on PREFIX.
    Revoke { name: String, prefix: String },
    /// List the roles and their permissions.
    List,
    /// Show role NAME and its permissions.
    Get { name: String },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum PermissionArg {
    Read,
    Write,
    Readwrite,
}

#[derive(Debug, Subcommand)]
pub enum AuthCommand {
    /// Turn auth on: needs a user root holding the root role.
    Enable,
    /// Turn auth off (root only).
    Disable,
    /// Whether auth is on, and who this client is.
    Status,
}

/// Where a password comes from when neither the command line nor the
/// environment has one: the terminal, asked without echo. A trait so the
/// decisions (ask, or refuse) are tested without a terminal.
pub trait Prompt {
    /// Whether there is someone to ask: standard input is a terminal.
    fn interactive(&self) -> bool;
    /// Shows `prompt` and reads one line without echoing it.
    fn read_hidden(&self, prompt: &str) -> std::io::Result<String>;
}

/// The process's terminal.
pub struct Terminal;

impl Prompt for Terminal {
    fn interactive(&self) -> bool {
        std::io::IsTerminal::is_terminal(&std::io::stdin())
    }

    fn read_hidden(&self, prompt: &str) -> std::io::Result<String> {
        rpassword::prompt_password(prompt)
    }
}

fn read_password(prompt: &dyn Prompt, text: &str) -> Result<String, CtlError> {
    prompt
        .read_hidden(text)
        .map_err(|e| CtlError::error(format!("cannot read the password from the terminal: {e}")))
}

/// `--user NAME[:PASSWORD]`; without `:PASSWORD` the password is
/// `env_password` (RAFTKV_PASSWORD), else asked on the terminal, else
/// refused: a script without a password fails at once rather than hang.
pub fn credentials(
    user: Option<&str>,
    env_password: Option<String>,
    prompt: &dyn Prompt,
) -> Result<Option<Credentials>, CtlError> {
    let Some(user) = user else {
        return Ok(None);
    };
    let (name, password) = match user.split_once(':') {
        Some((name, password)) => (name.to_string(), Some(password.to_string())),
        None => (user.to_string(), env_password),
    };
    if name.is_empty() {
        return Err(CtlError::new(Exit::BadInput, "--user: empty user name"));
    }
    let password = match password {
        Some(password) => password,
        None if prompt.interactive() => read_password(prompt, &format!("Password for {name}: "))?,
        None => {
            return Err(CtlError::new(
                Exit::BadInput,
                format!(
                    "--user {name}: no password, and no terminal to ask on; give --user \
                     {name}:PASSWORD or set RAFTKV_PASSWORD"
                ),
            ));
        }
    };
    Ok(Some(Credentials {
        user: name,
        password,
    }))
}

/// The new password of `user add` and `user passwd`: `--password` (or
/// RAFTKV_NEW_PASSWORD), else asked twice on the terminal, else refused.
fn new_password(args: &UserPassword, prompt: &dyn Prompt) -> Result<String, CtlError> {
    let name = &args.name;
    let password = match &args.password {
        Some(p) => p.clone(),
        None if prompt.interactive() => {
            let first = read_password(prompt, &format!("New password for {name}: "))?;
            let again = read_password(prompt, &format!("New password for {name} again: "))?;
            if first != again {
                return Err(CtlError::new(
                    Exit::BadInput,
                    format!("user {name}: the passwords do not match; nothing changed"),
                ));
            }
            first
        }
        None => {
            return Err(CtlError::new(
                Exit::BadInput,
                format!(
                    "user {name}: no password, and no terminal to ask on; give --password or \
                     set {NEW_PASSWORD_ENV}"
                ),
            ));
        }
    };
    if password.is_empty() {
        return Err(CtlError::new(
            Exit::BadInput,
            format!("user {name}: the password is empty; nothing changed"),
        ));
    }
    Ok(password)
}

fn user_password(args: &UserPassword, prompt: &dyn Prompt) -> Result<pb::UserAddCmd, CtlError> {
    Ok(pb::UserAddCmd {
        name: args.name.clone(),
        password: new_password(args, prompt)?,
        password_hash: String::new(),
    })
}

fn user_role(user: &str, role: &str) -> pb::UserRoleCmd {
    pb::UserRoleCmd {
        user: user.to_string(),
        role: role.to_string(),
    }
}

/// Applies `op` and prints OK (or the new revision as JSON/YAML).
async fn change(client: &Client, output: Output, op: Op) -> Result<(), CtlError> {
    let revision = client.auth_change(op).await?;
    match output {
        Output::Table => println!("OK"),
        _ => print_structured(output, &serde_json::json!({ "revision": revision }))?,
    }
    Ok(())
}

/// `raftctl user ...`; `prompt` asks for a new password that was not given.
pub async fn user(
    client: &Client,
    output: Output,
    command: &UserCommand,
    prompt: &dyn Prompt,
) -> Result<(), CtlError> {
    let op = match command {
        UserCommand::Add(args) => Op::UserAdd(user_password(args, prompt)?),
        UserCommand::Passwd(args) => Op::UserPasswd(user_password(args, prompt)?),
        UserCommand::Delete { name } => Op::UserDelete(pb::UserNameCmd { name: name.clone() }),
        UserCommand::Grant { name, role } => Op::UserGrant(user_role(name, role)),
        UserCommand::Revoke { name, role } => Op::UserRevoke(user_role(name, role)),
        UserCommand::List => return list_users(client, output, None).await,
        UserCommand::Get { name } => return list_users(client, output, Some(name)).await,
    };
    change(client, output, op).await
}

pub async fn role(client: &Client, output: Output, command: &RoleCommand) -> Result<(), CtlError> {
    let op = match command {
        RoleCommand::Add { name } => Op::RoleAdd(pb::RoleNameCmd { name: name.clone() }),
        RoleCommand::Delete { name } => Op::RoleDelete(pb::RoleNameCmd { name: name.clone() }),
        RoleCommand::Grant {
            name,
            prefix,
            permission,
        } => Op::RoleGrant(pb::RoleGrantCmd {
            role: name.clone(),
            prefix: prefix.clone().into(),
            permission: match permission {
                PermissionArg::Read => pb::Permission::Read,
                PermissionArg::Write => pb::Permission::Write,
                PermissionArg::Readwrite => pb::Permission::Readwrite,
            } as i32,
        }),
        RoleCommand::Revoke { name, prefix } => Op::RoleRevoke(pb::RoleGrantCmd {
            role: name.clone(),
            prefix: prefix.clone().into(),
            permission: 0,
        }),
        RoleCommand::List => return list_roles(client, output, None).await,
        RoleCommand::Get { name } => return list_roles(client, output, Some(name)).await,
    };
    change(client, output, op).await
}

#[derive(Debug, Serialize)]
struct AuthStatus {
    enabled: bool,
    revision: u64,
    /// Who the request was authenticated as (empty: nobody).
    user: String,
}

pub async fn auth(client: &Client, output: Output, command: &AuthCommand) -> Result<(), CtlError> {
    let op = match command {
        AuthCommand::Enable => Op::Enable(pb::AuthEnableCmd::default()),
        AuthCommand::Disable => Op::Disable(pb::AuthDisableCmd {}),
        AuthCommand::Status => {
            let s = client.auth_status().await?;
            let status = AuthStatus {
                enabled: s.enabled,
                revision: s.revision,
                user: s.user,
            };
            return match output {
                Output::Table => {
                    let on = if status.enabled {
                        "enabled"
                    } else {
                        "disabled"
                    };
                    println!("auth {on} (revision {})", status.revision);
                    if !status.user.is_empty() {
                        println!("authenticated as {}", status.user);
                    }
                    Ok(())
                }
                _ => print_structured(output, &status),
            };
        }
    };
    change(client, output, op).await
}

/// The users and roles as the leader applied them; the node shows them
/// only to root once auth is enabled (root always exists then).
async fn store(client: &Client) -> Result<pb::AuthStatusResponse, CtlError> {
    let status = client.auth_status().await?;
    if status.enabled && status.users.is_empty() {
        return Err(CtlError::error(
            "auth is enabled: only root sees users and roles (--user root:PASSWORD)",
        ));
    }
    Ok(status)
}

/// The item named `only` (all without it); a missing one is an error.
fn named<T>(
    mut items: Vec<T>,
    only: Option<&str>,
    what: &str,
    name: impl Fn(&T) -> &str,
) -> Result<Vec<T>, CtlError> {
    if let Some(only) = only {
        items.retain(|i| name(i) == only);
        if items.is_empty() {
            return Err(CtlError::error(format!("{what} {only:?} does not exist")));
        }
    }
    Ok(items)
}

/// Users (all, or `only`), as the leader applied them.
async fn list_users(client: &Client, output: Output, only: Option<&str>) -> Result<(), CtlError> {
    let users = named(store(client).await?.users, only, "user", |u| &u.name)?;
    #[derive(Serialize)]
    struct User {
        name: String,
        roles: Vec<String>,
    }
    let users: Vec<User> = users
        .into_iter()
        .map(|u| User {
            name: u.name,
            roles: u.roles,
        })
        .collect();
    match output {
        Output::Table => {
            let rows: Vec<Vec<String>> = users
                .iter()
                .map(|u| vec![u.name.clone(), u.roles.join(",")])
                .collect();
            print!("{}", table(&["USER", "ROLES"], &rows));
            Ok(())
        }
        _ => print_structured(output, &users),
    }
}

/// Roles (all, or `only`) with their permissions.
async fn list_roles(client: &Client, output: Output, only: Option<&str>) -> Result<(), CtlError> {
    let roles = named(store(client).await?.roles, only, "role", |r| &r.name)?;
    #[derive(Serialize)]
    struct Perm {
        prefix: Text,
        permission: String,
    }
    #[derive(Serialize)]
    struct Role {
        name: String,
        permissions: Vec<Perm>,
    }
    let permission = |p: &pb::PermissionInfo| p.permission().as_str_name().to_lowercase();
    if output == Output::Table {
        let mut rows = Vec::new();
        for r in &roles {
            if r.name == crate::kv::ROOT {
                rows.push(vec![r.name.clone(), "*".into(), "everything".into()]);
            } else if r.permissions.is_empty() {
                rows.push(vec![r.name.clone(), String::new(), String::new()]);
            }
            for p in &r.permissions {
                let prefix = String::from_utf8_lossy(&p.prefix).into_owned();
                rows.push(vec![r.name.clone(), prefix, permission(p)]);
            }
        }
        print!("{}", table(&["ROLE", "PREFIX", "PERMISSION"], &rows));
        return Ok(());
    }
    let roles: Vec<Role> = roles
        .iter()
        .map(|r| Role {
            name: r.name.clone(),
            permissions: r
                .permissions
                .iter()
                .map(|p| Perm {
                    prefix: Text::new(&p.prefix),
                    permission: permission(p),
                })
                .collect(),
        })
        .collect();
    print_structured(output, &roles)
}

#[cfg(test)]
mod tests;
