//! `raftctl scale N`, written once over [`Platform`]: the member count
//! changes in the order that keeps the cluster safe, on Kubernetes, Docker
//! and local processes alike.
//!
//! - Up: for each new ordinal, lowest first and one at a time, start its pod;
//!   the node joins by itself (`--auto-join`: the leader adds it as a
//!   learner and promotes it once caught up), and the next pod starts only
//!   once this one is a voter. Refused without a working quorum, and when
//!   the new ordinal's data volume survives from an earlier scale-down (a
//!   removed member's data would start as a non-member and never join)
//!   unless `--delete-data` deletes it first.
//! - Down: refused if any membership on the way (each removal commits in
//!   the configuration before it) or the remaining voters could not form a
//!   quorum with the nodes that answer now; leadership moves off the
//!   members that go; then one member at a time, highest ordinal first, is
//!   removed through the leader and only then its pod stopped. The data
//!   volume stays unless `--delete-data`.
//!
//! A refusal changes nothing. `plan` is pure and unit tested; `scale` runs
//! it against a platform and a client of the cluster.

use std::collections::BTreeSet;
use std::time::Duration;

use serde::Serialize;
use tokio::time::Instant;

use super::Platform;
use crate::client::{Client, ClientOptions};
use crate::ctl::cli::{Output, ScaleArgs};
use crate::ctl::exit::{CtlError, Exit};
use crate::pb;

/// The membership steps of a scale.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase", tag = "direction")]
pub enum ScalePlan {
    /// Already at the asked size.
    Nothing,
    /// Start the pods `start` in order, each becoming a voter before the next.
    Up { start: Vec<u64> },
    /// Hand leadership to `transfer_to` first (if set), remove the members
    /// `remove` in order, and stop the pods `stop` (each after its member).
    Down {
        transfer_to: Option<u64>,
        remove: Vec<u64>,
        stop: Vec<u64>,
    },
}

fn voters(members: &pb::MembersResponse) -> BTreeSet<u64> {
    members
        .members
        .iter()
        .filter(|m| m.voter)
        .map(|m| m.id)
        .collect()
}

/// Checks that `config` has a quorum among `answering`; else why not.
fn quorum_of(config: &BTreeSet<u64>, answering: &BTreeSet<u64>) -> Result<(), String> {
    let live: Vec<u64> = config.intersection(answering).copied().collect();
    let quorum = config.len() / 2 + 1;
    if live.len() >= quorum {
        return Ok(());
    }
    Err(format!(
        "the voters {config:?}, which need {quorum} answering for a quorum, and {} do ({live:?})",
        live.len()
    ))
}

/// Plans going from the pods `pods` (their ordinals) to `target` pods;
/// `answering` are the nodes that answered a status request just now.
pub fn plan(
    pods: &BTreeSet<u64>,
    target: i64,
    members: &pb::MembersResponse,
    answering: &BTreeSet<u64>,
) -> Result<ScalePlan, CtlError> {
    let refuse = |why: String| {
        CtlError::new(
            Exit::BadInput,
            format!("refusing to scale to {target}: {why}; nothing changed"),
        )
    };
    if target < 1 {
        return Err(refuse("a cluster needs at least one member".into()));
    }
    let target = target as u64;
    let current = pods.iter().next_back().map_or(0, |last| last + 1);
    let voters = voters(members);
    if target == current {
        return Ok(ScalePlan::Nothing);
    }
    if let Err(why) = quorum_of(&voters, answering) {
        return Err(refuse(format!(
            "changing the membership needs a working quorum: it has {why}"
        )));
    }
    if target > current {
        return Ok(ScalePlan::Up {
            start: (current..target).collect(),
        });
    }
    let mut remove: Vec<u64> = members
        .members
        .iter()
        .map(|m| m.id)
        .filter(|id| *id >= target)
        .collect();
    remove.sort_unstable_by(|a, b| b.cmp(a));
    // Each removal commits in the configuration before it, and the next one
    // in the configuration after it: every configuration on the way needs a
    // quorum of nodes that answer now.
    let mut config = voters.clone();
    for (step, id) in remove.iter().enumerate() {
        config.remove(id);
        if config.is_empty() {
            return Err(refuse(format!(
                "no voter would remain (the voters are {voters:?})"
            )));
        }
        if let Err(why) = quorum_of(&config, answering) {
            return Err(refuse(format!(
                "removing {:?} would leave {why}",
                &remove[..=step]
            )));
        }
    }
    let stop: Vec<u64> = pods
        .iter()
        .rev()
        .copied()
        .filter(|id| *id >= target)
        .collect();
    let transfer_to = match members.leader {
        Some(leader) if leader >= target => config.intersection(answering).next().copied(),
        _ => None,
    };
    Ok(ScalePlan::Down {
        transfer_to,
        remove,
        stop,
    })
}

/// The refusal for starting ordinals whose data survived a scale-down
/// (`retained`: ordinal and its volume's name), or `None` if there are none.
pub fn retained_refusal(target: i64, retained: &[(u64, String)]) -> Option<CtlError> {
    if retained.is_empty() {
        return None;
    }
    let list: Vec<String> = retained
        .iter()
        .map(|(id, what)| format!("node {id}: {what}"))
        .collect();
    Some(CtlError::new(
        Exit::BadInput,
        format!(
            "refusing to scale to {target}: the data of removed members is still there ({}); \
             a node started on it would come back as a member that was removed and never rejoin. \
             Pass --delete-data to delete it before the nodes start (they then join empty), \
             or delete it yourself; nothing changed",
            list.join("; ")
        ),
    ))
}

/// How `scale` behaves.
#[derive(Debug, Clone)]
pub struct ScaleOptions {
    /// Delete removed members' data volumes (down), and volumes left by an
    /// earlier scale-down on the new ordinals (up).
    pub delete_data: bool,
    /// How long one new node may take to become a voter.
    pub join_limit: Duration,
}

/// One thing `scale` did, `at` seconds after it began.
#[derive(Debug, Clone, Serialize)]
pub struct Step {
    pub at_seconds: f64,
    pub node: u64,
    pub action: String,
}

/// What `scale` did.
#[derive(Debug, Clone, Serialize)]
pub struct Scaled {
    pub platform: String,
    pub from: u64,
    pub to: u64,
    pub plan: ScalePlan,
    pub steps: Vec<Step>,
    /// Data volumes of removed members left in place.
    pub retained: Vec<String>,
    pub seconds: f64,
}

/// Records and prints (stderr) the steps of one scale.
struct Log {
    start: Instant,
    steps: Vec<Step>,
}

impl Log {
    fn step(&mut self, node: u64, action: String) {
        let at = self.start.elapsed().as_secs_f64();
        eprintln!("[{at:>6.1}s] node {node}: {action}");
        self.steps.push(Step {
            at_seconds: at,
            node,
            action,
        });
    }
}

/// The nodes that answer a status request now.
async fn answering(client: &Client) -> BTreeSet<u64> {
    client
        .status_all()
        .await
        .into_iter()
        .filter_map(|(_, a)| a.ok().map(|s| s.id))
        .collect()
}

/// Runs the whole scale of `platform` to `target` pods.
pub async fn scale<P: Platform>(
    platform: &P,
    client: &Client,
    target: i64,
    options: &ScaleOptions,
) -> Result<Scaled, CtlError> {
    let pods: BTreeSet<u64> = platform.pods().await?.iter().map(|p| p.id).collect();
    let current = pods.iter().next_back().map_or(0, |last| last + 1);
    let members = client.members().await?;
    let plan = plan(&pods, target, &members, &answering(client).await)?;
    let mut log = Log {
        start: Instant::now(),
        steps: Vec::new(),
    };
    let mut retained = Vec::new();
    match &plan {
        ScalePlan::Nothing => {}
        ScalePlan::Up { start } => {
            let listed: BTreeSet<u64> = members.members.iter().map(|m| m.id).collect();
            let mut old = Vec::new();
            for &id in start.iter().filter(|id| !listed.contains(id)) {
                if let Some(what) = platform.retained_data(id).await? {
                    old.push((id, what));
                }
            }
            if !options.delete_data
                && let Some(refusal) = retained_refusal(target, &old)
            {
                return Err(refusal);
            }
            for &id in start {
                if let Some((_, what)) = old.iter().find(|(o, _)| *o == id) {
                    platform.delete_data(id).await?;
                    log.step(id, format!("deleted the old data ({what}), --delete-data"));
                }
                platform.start_pod(id).await?;
                log.step(id, "pod started; joining as a learner".into());
                wait_voter(client, id, options.join_limit, &mut log).await?;
            }
        }
        ScalePlan::Down {
            transfer_to,
            remove,
            stop,
        } => {
            if let Some(to) = transfer_to {
                client.transfer_leader(*to).await?;
                log.step(
                    *to,
                    "leadership moved here (the leader is being removed)".into(),
                );
            }
            for &id in remove {
                move_leadership_off(client, id, remove, &mut log).await?;
                client.remove_member(id).await?;
                log.step(id, "member removed".into());
                if stop.contains(&id) {
                    stop_pod(platform, id, options, &mut log, &mut retained).await?;
                }
            }
            for &id in stop.iter().filter(|id| !remove.contains(id)) {
                stop_pod(platform, id, options, &mut log, &mut retained).await?;
            }
        }
    }
    let to = match plan {
        ScalePlan::Nothing => current,
        _ => target as u64,
    };
    Ok(Scaled {
        platform: platform.kind().to_string(),
        from: current,
        to,
        plan,
        steps: log.steps,
        retained,
        seconds: log.start.elapsed().as_secs_f64(),
    })
}

/// If node `id` leads now (a leader can be elected among the members that
/// go while the scale runs), hands leadership to a member that stays.
async fn move_leadership_off(
    client: &Client,
    id: u64,
    going: &[u64],
    log: &mut Log,
) -> Result<(), CtlError> {
    let members = client.members().await?;
    if members.leader != Some(id) {
        return Ok(());
    }
    let live = answering(client).await;
    let to = voters(&members)
        .into_iter()
        .find(|v| !going.contains(v) && live.contains(v))
        .ok_or_else(|| {
            CtlError::new(
                Exit::Unhealthy,
                format!("node {id} leads and no voter that stays answers to take over"),
            )
        })?;
    client.transfer_leader(to).await?;
    log.step(to, format!("leadership moved here from node {id}"));
    Ok(())
}

async fn stop_pod<P: Platform>(
    platform: &P,
    id: u64,
    options: &ScaleOptions,
    log: &mut Log,
    retained: &mut Vec<String>,
) -> Result<(), CtlError> {
    platform.stop_pod(id).await?;
    log.step(id, "pod stopped and removed".into());
    let Some(what) = platform.retained_data(id).await? else {
        return Ok(());
    };
    if options.delete_data {
        platform.delete_data(id).await?;
        log.step(id, format!("data deleted ({what}), --delete-data"));
    } else {
        log.step(
            id,
            format!("data kept ({what}); a later scale-up must not reuse it (see --delete-data)"),
        );
        retained.push(what);
    }
    Ok(())
}

/// Waits until node `id` is a voter, logging when it shows up as a learner.
async fn wait_voter(
    client: &Client,
    id: u64,
    limit: Duration,
    log: &mut Log,
) -> Result<(), CtlError> {
    let start = Instant::now();
    let mut learner = false;
    loop {
        // Unreachable or leaderless for a moment: asked again.
        if let Ok(members) = client.members().await {
            match members.members.iter().find(|m| m.id == id) {
                Some(m) if m.voter => {
                    log.step(
                        id,
                        format!(
                            "voter ({:.1}s after its start)",
                            start.elapsed().as_secs_f64()
                        ),
                    );
                    return Ok(());
                }
                Some(_) if !learner => {
                    learner = true;
                    log.step(id, "learner, catching up".into());
                }
                _ => {}
            }
        }
        if start.elapsed() > limit {
            return Err(CtlError::new(
                Exit::Unhealthy,
                format!(
                    "node {id} is not a voter {}s after its pod started ({}); the scale stopped there, \
                     with nodes up to {id} started: see node {id}'s log",
                    limit.as_secs(),
                    if learner {
                        "it joined as a learner but was not promoted"
                    } else {
                        "it never joined"
                    }
                ),
            ));
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// `raftctl scale N` on `platform`, whose cluster answers at `endpoints`:
/// scales, prints what it did.
pub async fn command(
    platform: &impl Platform,
    endpoints: Vec<String>,
    args: &ScaleArgs,
    options: ClientOptions,
    output: Output,
) -> Result<(), CtlError> {
    let client = Client::lazy(endpoints, options)?;
    let scaled = scale(
        platform,
        &client,
        args.replicas,
        &ScaleOptions {
            delete_data: args.delete_data,
            join_limit: args.join_timeout,
        },
    )
    .await?;
    match output {
        Output::Table => {
            print!("{}", summary(&scaled));
            Ok(())
        }
        format => crate::ctl::output::print_structured(format, &scaled),
    }
}

/// The table-format summary of a scale.
pub fn summary(scaled: &Scaled) -> String {
    let mut text = match &scaled.plan {
        ScalePlan::Nothing => format!(
            "{} cluster already has {} members; nothing to do\n",
            scaled.platform, scaled.to
        ),
        _ => format!(
            "scaled the {} cluster from {} to {} members in {:.1}s\n",
            scaled.platform, scaled.from, scaled.to, scaled.seconds
        ),
    };
    for what in &scaled.retained {
        text.push_str(&format!(
            "kept {what}: a later scale-up refuses to start on it; `raftctl scale --delete-data` deletes it then\n"
        ));
    }
    text
}

#[cfg(test)]
mod tests;
