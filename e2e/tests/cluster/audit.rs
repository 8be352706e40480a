//! What the operator asked of the API server over the whole run, from the audit log: no
//! request refused (403) for its ServiceAccount, and its request rate.
use e2e::cluster::audit;
use e2e::scenario::{Suite, OPERATOR_USER};
use futures::future::BoxFuture;
use futures::FutureExt;
use std::sync::Arc;

pub fn operator_requests(suite: Arc<Suite>) -> BoxFuture<'static, ()> {
    async move {
        let entries = suite.cluster.audit();
        let operator: Vec<&audit::Entry> = audit::by_user(&entries, OPERATOR_USER).collect();
        assert!(!operator.is_empty(), "the audit log has the operator's requests");
        let refused: Vec<String> = operator
            .iter()
            .filter(|e| e.forbidden_by_rbac())
            .map(|e| format!("{} {}", e.verb, e.request_uri))
            .collect();
        assert!(refused.is_empty(), "requests of the operator refused by RBAC: {refused:?}");
        let used = audit::used_permissions(operator.iter().copied());
        println!("the operator used {} permissions in {} requests", used.len(), operator.len());
    }
    .boxed()
}
