//! CoreDNS's part, as much of it as the pods need: the names of the cluster DNS schema
//! (<https://github.com/kubernetes/dns/blob/master/docs/specification.md>) for
//! - a Service (not headless): `<svc>.<ns>.svc.cluster.local` → its address (see
//!   [`super::proxy`]);
//! - an endpoint of a headless Service that has a hostname (a pod with `hostname` and
//!   `subdomain`): `<hostname>.<svc>.<ns>.svc.cluster.local` → the pod's address, for
//!   ready endpoints, and not-ready ones when the Service publishes them.
//!
//! Answered over UDP on an address of the Services' namespace, which every pod's
//! `/etc/resolv.conf` names (with the search path the kubelet writes). Anything else is
//! NXDOMAIN at once: nothing leaves the cluster's network. hickory-proto parses and writes
//! the messages; the table is filled by the proxy's pass over Services and EndpointSlices.
use hickory_proto::op::{Message, MessageType, ResponseCode};
use hickory_proto::rr::{rdata::A, RData, Record, RecordType};
use std::collections::HashMap;
use std::net::Ipv4Addr;
use std::sync::{Arc, RwLock};

/// The cluster's domain.
pub const DOMAIN: &str = "cluster.local";
/// Seconds a pod's resolver may keep an answer (CoreDNS's default).
const TTL: u32 = 5;

/// Name (lower case, no trailing dot) → address.
#[derive(Default)]
pub struct Records(RwLock<HashMap<String, Ipv4Addr>>);

impl Records {
    pub fn replace(&self, records: HashMap<String, Ipv4Addr>) {
        *self.0.write().unwrap_or_else(|e| e.into_inner()) = records;
    }

    fn get(&self, name: &str) -> Option<Ipv4Addr> {
        self.0.read().unwrap_or_else(|e| e.into_inner()).get(name).copied()
    }
}

/// The `/etc/resolv.conf` of a pod in `namespace` (what the kubelet writes for
/// `dnsPolicy: ClusterFirst`).
pub fn resolv_conf(server: Ipv4Addr, namespace: &str) -> String {
    format!("nameserver {server}\nsearch {namespace}.svc.{DOMAIN} svc.{DOMAIN} {DOMAIN}\noptions ndots:5\n")
}

/// The answer to one query message (`None` for what is not a query).
fn answer(query: &[u8], records: &Records) -> Option<Vec<u8>> {
    let request = Message::from_vec(query).ok()?;
    if request.message_type() != MessageType::Query {
        return None;
    }
    let mut response = Message::new();
    response
        .set_id(request.id())
        .set_message_type(MessageType::Response)
        .set_op_code(request.op_code())
        .set_recursion_desired(request.recursion_desired())
        .set_recursion_available(false)
        .set_authoritative(true);
    let mut code = ResponseCode::NoError;
    for q in request.queries() {
        response.add_query(q.clone());
        let name = q.name().to_ascii().trim_end_matches('.').to_ascii_lowercase();
        match records.get(&name) {
            Some(ip) if q.query_type() == RecordType::A => {
                response.add_answer(Record::from_rdata(q.name().clone(), TTL, RData::A(A(ip))));
            }
            // The name exists, without records of that type (AAAA): NODATA.
            Some(_) => {}
            None => code = ResponseCode::NXDomain,
        }
    }
    response.set_response_code(code);
    response.to_vec().ok()
}

/// Serves `socket` until the task is aborted.
pub async fn serve(socket: tokio::net::UdpSocket, records: Arc<Records>) {
    let mut buf = vec![0u8; 4096];
    loop {
        let Ok((len, from)) = socket.recv_from(&mut buf).await else { continue };
        if let Some(reply) = answer(&buf[..len], &records) {
            let _ = socket.send_to(&reply, from).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hickory_proto::op::Query;
    use hickory_proto::rr::Name;

    fn ask(records: &Records, name: &str, kind: RecordType) -> Message {
        let mut q = Message::new();
        q.set_id(7).set_message_type(MessageType::Query).add_query(Query::query(Name::from_ascii(name).unwrap(), kind));
        Message::from_vec(&answer(&q.to_vec().unwrap(), records).unwrap()).unwrap()
    }

    #[test]
    fn pod_names_answer_a_and_nodata_others_nxdomain() {
        let records = Records::default();
        let name = "mail-1.mail-headless.ns.svc.cluster.local";
        records.replace(HashMap::from([(name.to_string(), Ipv4Addr::new(10, 244, 1, 5))]));
        let a = ask(&records, "Mail-1.mail-headless.ns.svc.cluster.local.", RecordType::A);
        assert_eq!(a.id(), 7);
        assert_eq!(a.response_code(), ResponseCode::NoError);
        assert_eq!(a.answers()[0].data(), &RData::A(A(Ipv4Addr::new(10, 244, 1, 5))));
        let aaaa = ask(&records, &format!("{name}."), RecordType::AAAA);
        assert_eq!((aaaa.response_code(), aaaa.answers().len()), (ResponseCode::NoError, 0));
        let other = ask(&records, "example.com.", RecordType::A);
        assert_eq!(other.response_code(), ResponseCode::NXDomain);
    }
}
