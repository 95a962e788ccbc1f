//! Which node to ask next: the remembered leader, else the configured
//! endpoints in turn.

/// Normalizes an address to `HOST:PORT` (drops an `http://` scheme and a
/// trailing slash); `None` when nothing is left.
pub(crate) fn normalize_addr(addr: &str) -> Option<String> {
    let addr = addr.trim();
    let addr = addr
        .strip_prefix("http://")
        .or_else(|| addr.strip_prefix("https://"))
        .unwrap_or(addr)
        .trim_end_matches('/');
    (!addr.is_empty()).then(|| addr.to_string())
}

/// Leader memory plus a rotation over the endpoints.
///
/// Invariant: `endpoints` is not empty and `next < endpoints.len()`.
#[derive(Debug)]
pub(crate) struct Router {
    endpoints: Vec<String>,
    leader: Option<String>,
    next: usize,
}

impl Router {
    pub(crate) fn new(endpoints: Vec<String>) -> Router {
        assert!(!endpoints.is_empty(), "a router needs an endpoint");
        Router {
            endpoints,
            leader: None,
            next: 0,
        }
    }

    pub(crate) fn endpoints(&self) -> &[String] {
        &self.endpoints
    }

    pub(crate) fn leader(&self) -> Option<&str> {
        self.leader.as_deref()
    }

    /// The node to ask: the leader if known, else the next endpoint.
    pub(crate) fn target(&self) -> String {
        self.leader
            .clone()
            .unwrap_or_else(|| self.endpoints[self.next].clone())
    }

    /// A leader-only request succeeded at `addr`, or a node named it leader.
    pub(crate) fn set_leader(&mut self, addr: &str) {
        self.leader = Some(addr.to_string());
    }

    /// `addr` did not answer or is no longer leader: stop preferring it and
    /// move the rotation past it.
    /// A remembered leader that is not an endpoint came from a redirect;
    /// when it fails the rotation moves on too, or the node that gave the
    /// hint would be asked again and give it again (endpoints behind NAT or
    /// port-forwards, whose nodes name addresses this client cannot reach).
    pub(crate) fn failed(&mut self, addr: &str) {
        let mut hinted = false;
        if self.leader.as_deref() == Some(addr) {
            self.leader = None;
            hinted = !self.endpoints.iter().any(|e| e == addr);
        }
        if hinted || self.endpoints[self.next] == addr {
            self.next = (self.next + 1) % self.endpoints.len();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn router() -> Router {
        Router::new(vec!["a:1".into(), "b:1".into(), "c:1".into()])
    }

    #[test]
    fn normalizes_addresses() {
        assert_eq!(normalize_addr(" http://h:1/ ").as_deref(), Some("h:1"));
        assert_eq!(normalize_addr("https://h:1").as_deref(), Some("h:1"));
        assert_eq!(normalize_addr("h:1").as_deref(), Some("h:1"));
        assert_eq!(normalize_addr("http://"), None);
        assert_eq!(normalize_addr(""), None);
    }

    #[test]
    fn rotates_over_endpoints_until_a_leader_is_known() {
        let mut r = router();
        assert_eq!(r.target(), "a:1");
        r.failed("a:1");
        assert_eq!(r.target(), "b:1");
        r.set_leader("z:9");
        assert_eq!(r.target(), "z:9");
        r.failed("z:9");
        assert_eq!(r.leader(), None);
        assert_eq!(r.target(), "c:1");
        r.failed("b:1");
        r.failed("c:1");
        assert_eq!(r.target(), "a:1");
    }

    #[test]
    fn an_unreachable_hint_moves_the_rotation_past_the_node_that_gave_it() {
        // Endpoints behind NAT or port-forwards: the nodes' redirects name
        // addresses this client cannot reach. Asking the same follower again
        // would only repeat its redirect, so the next endpoint is asked.
        let mut r = router();
        r.set_leader("pod-2.svc:1");
        r.failed("pod-2.svc:1");
        assert_eq!(r.target(), "b:1");
        r.set_leader("pod-2.svc:1");
        r.failed("pod-2.svc:1");
        assert_eq!(r.target(), "c:1");
    }

    #[test]
    fn a_failed_leader_that_is_also_an_endpoint_is_skipped() {
        let mut r = router();
        r.set_leader("a:1");
        r.failed("a:1");
        assert_eq!(r.target(), "b:1");
    }

    #[test]
    fn failure_of_another_node_keeps_the_leader() {
        let mut r = router();
        r.set_leader("b:1");
        r.failed("a:1");
        assert_eq!(r.target(), "b:1");
    }
}
