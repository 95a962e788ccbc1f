//! Scaling on Docker: a new ordinal's container is made exactly as `raftctl
//! deploy --platform docker` made the others — the same pod template (its
//! image, namespace and founding member count read back from an existing
//! container), its own named volume, the same template label — so a later
//! deploy sees it as its own. Scaling down stops and removes the container;
//! its volume stays unless the caller deletes it.

use std::collections::BTreeMap;

use super::deploy::{ensure_container, ensure_volume};
use super::run::{self, Layout};
use super::{Docker, docker, inspect};
use crate::ctl::exit::{CtlError, Exit};
use k8s_openapi::api::apps::v1::StatefulSet;

use crate::ctl::platform::pod::{self, Values};

/// What a container of the cluster says about the template it came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template {
    pub image: String,
    pub namespace: String,
    /// RAFTKV_REPLICAS: the founding member count of the first deploy.
    pub founders: i32,
}

/// Reads the template from `docker inspect` output: the image on the first
/// line, then one `KEY=VALUE` environment entry per line.
pub fn parse_template(container: &str, text: &str) -> Result<Template, CtlError> {
    let mut lines = text.lines();
    let image = lines.next().unwrap_or("").trim().to_string();
    let env: BTreeMap<&str, &str> = lines.filter_map(|l| l.trim().split_once('=')).collect();
    let missing = |what: &str| {
        CtlError::error(format!(
            "container {container} has no {what}: it was not made by `raftctl deploy --platform docker`"
        ))
    };
    if image.is_empty() {
        return Err(missing("image"));
    }
    let founders = env
        .get("RAFTKV_REPLICAS")
        .ok_or_else(|| missing("RAFTKV_REPLICAS"))?
        .parse()
        .map_err(|_| missing("numeric RAFTKV_REPLICAS"))?;
    Ok(Template {
        image,
        namespace: env
            .get("RAFTKV_NAMESPACE")
            .ok_or_else(|| missing("RAFTKV_NAMESPACE"))?
            .to_string(),
        founders,
    })
}

impl Docker {
    /// The template of the cluster's lowest-ordinal container.
    pub(super) async fn template(&self) -> Result<Template, CtlError> {
        use crate::ctl::platform::Platform;
        let pods = self.pods().await?;
        let first = pods.first().ok_or_else(|| {
            CtlError::new(
                Exit::Unreachable,
                format!("no Docker container named {}-N", self.name),
            )
        })?;
        let format = "{{.Config.Image}}\n{{range .Config.Env}}{{println .}}{{end}}";
        let text = docker(&["container", "inspect", "-f", format, &first.name]).await?;
        parse_template(&first.name, &text)
    }

    /// The layout and StatefulSet the cluster's containers come from.
    async fn statefulset(&self) -> Result<(Layout, StatefulSet), CtlError> {
        let template = self.template().await?;
        let layout = Layout {
            name: self.name.clone(),
            namespace: template.namespace.clone(),
        };
        let sts = pod::statefulset(&Values {
            name: self.name.clone(),
            namespace: template.namespace,
            replicas: template.founders,
            image: template.image,
            // Not part of the pod template (Docker volumes have no size).
            storage_size: "1Gi".into(),
            storage_class: None,
            tls: None,
        });
        Ok((layout, sts))
    }

    /// The named volumes of ordinal `id` (one per volume claim).
    fn volumes(&self, id: u64) -> Vec<String> {
        let layout = Layout {
            name: self.name.clone(),
            namespace: String::new(),
        };
        let sts = pod::statefulset(&Values {
            name: self.name.clone(),
            namespace: String::new(),
            replicas: 1,
            image: String::new(),
            storage_size: "1Gi".into(),
            storage_class: None,
            tls: None,
        });
        run::claim_names(&sts)
            .iter()
            .map(|claim| layout.claim_volume(claim, id))
            .collect()
    }

    pub(super) async fn start(&self, id: u64) -> Result<(), CtlError> {
        let (layout, sts) = self.statefulset().await?;
        for claim in run::claim_names(&sts) {
            ensure_volume(&layout, &layout.claim_volume(&claim, id)).await?;
        }
        let args = run::run_args(&layout, &sts, id)?;
        ensure_container(&layout, args, id).await?;
        Ok(())
    }

    pub(super) async fn stop(&self, id: u64) -> Result<(), CtlError> {
        let name = format!("{}-{id}", self.name);
        if inspect("container", &name, "{{.Id}}").await?.is_none() {
            return Ok(());
        }
        // SIGTERM and the container's stop timeout (the pod's grace period).
        docker(&["stop", &name]).await?;
        docker(&["rm", &name]).await?;
        Ok(())
    }

    pub(super) async fn retained(&self, id: u64) -> Result<Option<String>, CtlError> {
        let mut found = Vec::new();
        for volume in self.volumes(id) {
            if inspect("volume", &volume, "{{.Name}}").await?.is_some() {
                found.push(format!("volume {volume}"));
            }
        }
        Ok((!found.is_empty()).then(|| found.join(", ")))
    }

    pub(super) async fn delete_volumes(&self, id: u64) -> Result<(), CtlError> {
        for volume in self.volumes(id) {
            if inspect("volume", &volume, "{{.Name}}").await?.is_some() {
                docker(&["volume", "rm", &volume]).await?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_template_is_read_back_from_a_container() {
        let text = "raftkv:t\nPOD_NAME=kv-0\nRAFTKV_NAMESPACE=ns\nRAFTKV_REPLICAS=3\nPATH=/bin\n";
        assert_eq!(
            parse_template("kv-0", text).unwrap(),
            Template {
                image: "raftkv:t".into(),
                namespace: "ns".into(),
                founders: 3
            }
        );
        let e = parse_template("kv-0", "raftkv:t\nRAFTKV_NAMESPACE=ns\n").unwrap_err();
        assert!(e.message.contains("no RAFTKV_REPLICAS"), "{e}");
    }

    #[test]
    fn each_ordinal_has_its_data_volume() {
        let d = Docker { name: "kv".into() };
        assert_eq!(d.volumes(3), vec!["kv-data-3".to_string()]);
    }
}
