//! The Kubernetes objects of a raftkv cluster, as typed k8s-openapi values:
//! what `raftctl manifests` prints and `raftctl deploy` applies. They mirror
//! the Helm chart (charts/raftkv; docs/kubernetes.md says why each choice):
//!
//! - StatefulSet `NAME`, Parallel pod management (peers must start together
//!   to bootstrap), one volume claim `data` per pod: the platform layer's
//!   (`platform::pod`), which Docker runs too;
//! - headless Service `NAME-headless` with publishNotReadyAddresses, so peers
//!   resolve each other before they are ready;
//! - client Service `NAME` (client and metrics ports);
//! - PodDisruptionBudget `NAME`: voluntary disruptions that keep a quorum.

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{Service, ServicePort, ServiceSpec};
use k8s_openapi::api::policy::v1::{PodDisruptionBudget, PodDisruptionBudgetSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use crate::ctl::platform::pod::{CLIENT_PORT, HTTP_PORT, PEER_PORT, Values, statefulset};

/// Every object, in apply order.
#[derive(Debug, Clone, PartialEq)]
pub struct Manifests {
    pub headless: Service,
    pub client: Service,
    pub budget: PodDisruptionBudget,
    pub statefulset: StatefulSet,
}

impl Manifests {
    pub fn new(values: &Values) -> Manifests {
        Manifests {
            headless: headless_service(values),
            client: client_service(values),
            budget: disruption_budget(values),
            statefulset: statefulset(values),
        }
    }

    /// The objects as YAML documents separated by `---`.
    pub fn to_yaml(&self) -> Result<String, serde_norway::Error> {
        let docs = [
            serde_norway::to_string(&self.headless)?,
            serde_norway::to_string(&self.client)?,
            serde_norway::to_string(&self.budget)?,
            serde_norway::to_string(&self.statefulset)?,
        ];
        Ok(docs.iter().map(|d| format!("---\n{d}")).collect())
    }
}

fn port(name: &str, number: i32) -> ServicePort {
    ServicePort {
        name: Some(name.into()),
        port: number,
        target_port: Some(IntOrString::String(name.into())),
        protocol: Some("TCP".into()),
        ..ServicePort::default()
    }
}

fn headless_service(v: &Values) -> Service {
    Service {
        metadata: v.meta(v.headless_service()),
        spec: Some(ServiceSpec {
            cluster_ip: Some("None".into()),
            publish_not_ready_addresses: Some(true),
            selector: Some(v.selector_labels()),
            ports: Some(vec![
                port("client", CLIENT_PORT),
                port("peer", PEER_PORT),
                port("http", HTTP_PORT),
            ]),
            ..ServiceSpec::default()
        }),
        ..Service::default()
    }
}

fn client_service(v: &Values) -> Service {
    Service {
        metadata: v.meta(v.name.clone()),
        spec: Some(ServiceSpec {
            type_: Some("ClusterIP".into()),
            selector: Some(v.selector_labels()),
            ports: Some(vec![port("client", CLIENT_PORT), port("http", HTTP_PORT)]),
            ..ServiceSpec::default()
        }),
        ..Service::default()
    }
}

/// The budget's `minAvailable`: Kubernetes rounds a percentage up, and
/// ceil(0.51 × n) is a quorum for every n (1 of 1, 2 of 3, 3 of 5, 4 of 7).
pub const QUORUM_PERCENT: &str = "51%";

fn disruption_budget(v: &Values) -> PodDisruptionBudget {
    PodDisruptionBudget {
        metadata: v.meta(v.name.clone()),
        spec: Some(PodDisruptionBudgetSpec {
            // As the chart: a percentage is rounded up to a quorum of the
            // StatefulSet's replica count of the moment, so the budget stays
            // right after `raftctl scale` (a count computed here would not).
            min_available: Some(IntOrString::String(QUORUM_PERCENT.into())),
            selector: Some(LabelSelector {
                match_labels: Some(v.selector_labels()),
                ..LabelSelector::default()
            }),
            ..PodDisruptionBudgetSpec::default()
        }),
        ..PodDisruptionBudget::default()
    }
}

#[cfg(test)]
mod tests;
