//! Scaling on Kubernetes: the platform operations `raftctl scale`
//! (`crate::ctl::platform::scale`, written once for every platform) needs
//! from a StatefulSet.
//!
//! A StatefulSet adds and removes pods only at the end of its ordinal
//! range, through spec.replicas: starting pod `n` sets replicas to `n + 1`,
//! stopping pod `n` sets it to `n`. spec.replicas is changed through the
//! scale subresource (a merge patch), the way `kubectl scale` does; the pod
//! template is never touched, so no existing pod restarts. A new pod is not
//! a founder (its ordinal is at or above RAFTKV_REPLICAS) and joins by
//! itself (RAFTKV_AUTO_JOIN). The volume claim `data-NAME-n` outlives the
//! pod (retention policy Retain): it is the retained data `scale` reports,
//! and deletes with `--delete-data`.

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::PersistentVolumeClaim;
use kube::Api;
use kube::api::{DeleteParams, Patch, PatchParams};

use super::errors::{api_error, is_not_found};
use super::{FIELD_MANAGER, KubePlatform};
use crate::ctl::exit::CtlError;

/// Sets spec.replicas through the scale subresource.
pub async fn patch_replicas(platform: &KubePlatform, replicas: i32) -> Result<(), CtlError> {
    let api: Api<StatefulSet> = Api::namespaced(platform.client.clone(), &platform.namespace);
    let patch = serde_json::json!({ "spec": { "replicas": replicas } });
    let params = PatchParams {
        field_manager: Some(FIELD_MANAGER.into()),
        ..PatchParams::default()
    };
    api.patch_scale(&platform.name, &params, &Patch::Merge(&patch))
        .await
        .map_err(|e| api_error(&format!("scale statefulset {}", platform.name), e))?;
    Ok(())
}

fn replicas(ordinal: u64) -> Result<i32, CtlError> {
    i32::try_from(ordinal).map_err(|_| CtlError::error(format!("ordinal {ordinal} is too large")))
}

impl KubePlatform {
    fn claims(&self) -> Api<PersistentVolumeClaim> {
        Api::namespaced(self.client.clone(), &self.namespace)
    }

    /// The volume claim of pod `ordinal` (claim template `data`).
    pub fn claim_name(&self, ordinal: u64) -> String {
        format!("data-{}-{ordinal}", self.name)
    }

    pub(super) async fn start_ordinal(&self, ordinal: u64) -> Result<(), CtlError> {
        patch_replicas(self, replicas(ordinal + 1)?).await
    }

    pub(super) async fn stop_ordinal(&self, ordinal: u64) -> Result<(), CtlError> {
        patch_replicas(self, replicas(ordinal)?).await
    }

    pub(super) async fn retained_claim(&self, ordinal: u64) -> Result<Option<String>, CtlError> {
        let name = self.claim_name(ordinal);
        let found = self.claims().get_opt(&name).await.map_err(|e| {
            api_error(
                &format!(
                    "get persistentvolumeclaim {name} in namespace {}",
                    self.namespace
                ),
                e,
            )
        })?;
        Ok(found.map(|_| format!("persistentvolumeclaim/{name}")))
    }

    pub(super) async fn delete_claim(&self, ordinal: u64) -> Result<(), CtlError> {
        let name = self.claim_name(ordinal);
        match self.claims().delete(&name, &DeleteParams::default()).await {
            Ok(_) => Ok(()),
            Err(e) if is_not_found(&e) => Ok(()),
            Err(e) => Err(api_error(
                &format!(
                    "delete persistentvolumeclaim {name} in namespace {}",
                    self.namespace
                ),
                e,
            )),
        }
    }
}

#[cfg(test)]
mod tests;
